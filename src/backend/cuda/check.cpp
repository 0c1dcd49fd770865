#include "backend/cuda/check.hpp"

#include <cublasLt.h>

#include <string_view>

namespace axl::cuda {

namespace {

// The path from the repository root on (src/..., kernels/...), which is what a report needs.
const char* short_path(const char* file) {
    const std::string_view path(file);
    for (const char* root : {"/src/", "/kernels/", "/tests/"}) {
        const size_t at = path.rfind(root);
        if (at != std::string_view::npos) return file + at + 1;
    }
    return file;
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
    const bool out_of_memory = status == cudaErrorMemoryAllocation;
    if (out_of_memory) cudaGetLastError();  // not sticky: clear it so the context stays usable
    throw Error(out_of_memory ? AXL_ERR_OUT_OF_MEMORY : AXL_ERR_BACKEND,
                cat("CUDA error ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ") in ",
                    call, " at ", short_path(file), ":", line));
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
    const auto cublas_status = static_cast<cublasStatus_t>(status);
    throw Error(cublas_status == CUBLAS_STATUS_ALLOC_FAILED ? AXL_ERR_OUT_OF_MEMORY : AXL_ERR_BACKEND,
                cat("cuBLAS error ", cublasLtGetStatusName(cublas_status), " (",
                    cublasLtGetStatusString(cublas_status), ") in ", call, " at ", short_path(file), ":",
                    line));
}

}  // namespace axl::cuda
