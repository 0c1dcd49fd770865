// CUDA and cuBLAS failures as axl errors. Every runtime call goes through AXL_CUDA_CHECK and
// every launch is followed by AXL_CUDA_CHECK_LAUNCH, so a failure surfaces as
// Error(AXL_ERR_BACKEND) carrying CUDA's own error name and text, the call and its file:line;
// an allocation failure is Error(AXL_ERR_OUT_OF_MEMORY) instead.
#pragma once

#include <cuda_runtime_api.h>

#include "core/error.hpp"

namespace axl::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
// cublasStatus_t travels as an int so that this header needs no cuBLAS header.
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
    if (status != cudaSuccess) throw_cuda_error(status, call, file, line);
}

inline void check_cublas(int status, const char* call, const char* file, int line) {
    if (status != 0) throw_cublas_error(status, call, file, line);
}

}  // namespace axl::cuda

#define AXL_CUDA_CHECK(call) ::axl::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define AXL_CUBLAS_CHECK(call) ::axl::cuda::check_cublas(static_cast<int>(call), #call, __FILE__, __LINE__)
// After a kernel launch: a bad launch configuration (or an earlier asynchronous fault) shows here.
#define AXL_CUDA_CHECK_LAUNCH(kernel_name) \
    ::axl::cuda::check_cuda(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)
