// A CUDA device and the stream axl's work is ordered on: the caller's (axl_context_options::
// cuda_stream) or one of our own. CUDA's current device is per host thread, so every entry
// point that launches work calls make_current() first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace axl::cuda {

// The number of usable CUDA devices; 0 (never an error) when there is no driver or no device,
// as on the CPU-only machines.
int device_count();

class Device {
public:
    // Selects device `index`: Error(AXL_ERR_INVALID_ARGUMENT) when there is no such device,
    // Error(AXL_ERR_BACKEND) when CUDA fails. `caller_stream` is a cudaStream_t of that device,
    // used as it is and never destroyed; null creates a non-blocking stream owned here.
    Device(int index, void* caller_stream);
    ~Device();
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    int index() const { return index_; }
    cudaStream_t stream() const { return stream_; }
    bool owns_stream() const { return owns_stream_; }
    const std::string& name() const { return name_; }
    int multiprocessors() const { return multiprocessors_; }
    // Largest dynamic shared memory one block can opt into (cudaFuncSetAttribute).
    size_t max_shared_memory_per_block() const { return max_shared_memory_per_block_; }

    void make_current() const;
    // Waits for the work queued on the stream; an asynchronous fault surfaces here as an Error.
    void synchronize() const;

private:
    int index_ = 0;
    cudaStream_t stream_ = nullptr;
    bool owns_stream_ = false;
    std::string name_;
    int multiprocessors_ = 0;
    size_t max_shared_memory_per_block_ = 0;
};

}  // namespace axl::cuda
