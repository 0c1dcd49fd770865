#include "backend/cuda/device.hpp"

#include "backend/cuda/check.hpp"

namespace axl::cuda {

int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // no driver or no device: not an error for the caller
        return 0;
    }
    return count;
}

Device::Device(int index, void* caller_stream) : index_(index) {
    const int count = device_count();
    require(index >= 0 && index < count, AXL_ERR_INVALID_ARGUMENT, "CUDA device ", index,
            " does not exist (", count, " device", count == 1 ? "" : "s", " visible)");
    AXL_CUDA_CHECK(cudaSetDevice(index));
    cudaDeviceProp properties{};
    AXL_CUDA_CHECK(cudaGetDeviceProperties(&properties, index));
    name_ = properties.name;
    multiprocessors_ = properties.multiProcessorCount;
    max_shared_memory_per_block_ = properties.sharedMemPerBlockOptin;

    if (caller_stream != nullptr) {
        stream_ = static_cast<cudaStream_t>(caller_stream);
        int stream_device = -1;
        AXL_CUDA_CHECK(cudaStreamGetDevice(stream_, &stream_device));
        require(stream_device == index, AXL_ERR_INVALID_ARGUMENT, "the caller's CUDA stream belongs to device ",
                stream_device, ", not to the context's device ", index);
    } else {
        AXL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        owns_stream_ = true;
    }
}

Device::~Device() {
    if (owns_stream_) {
        cudaSetDevice(index_);
        cudaStreamSynchronize(stream_);
        cudaStreamDestroy(stream_);
    }
}

void Device::make_current() const { AXL_CUDA_CHECK(cudaSetDevice(index_)); }

void Device::synchronize() const { AXL_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace axl::cuda
