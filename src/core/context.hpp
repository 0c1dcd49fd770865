// The engine side of an axl_context: allocator, thread count, logging, backend choice.
#pragma once

#include <memory>
#include <string>

#include "axl.h"
#include "core/allocator.hpp"

namespace axl {

namespace cuda {
class Runtime;
}

class Context {
public:
    explicit Context(const axl_context_options& options);

    const std::shared_ptr<HostAllocator>& host_allocator() const { return host_allocator_; }
    int num_threads() const { return num_threads_; }
    int32_t backend() const { return backend_; }

    // The CUDA device, stream, allocator and GEMM handle; null unless backend() is CUDA.
    cuda::Runtime* cuda() const { return cuda_.get(); }
    // Device memory in use and its peak (0 without a CUDA backend), and the budget
    // (axl_context_options::device_memory_budget; 0 = no limit) that later allocations obey.
    uint64_t device_current_bytes() const;
    uint64_t device_peak_bytes() const;
    void reset_device_peak() const;
    void set_device_memory_budget(uint64_t bytes) const;

    // Makes the calling thread use this context's thread count in parallel regions.
    void enter_thread() const;

    void log(int32_t level, const std::string& message) const;

private:
    std::shared_ptr<HostAllocator> host_allocator_;
    int num_threads_ = 1;
    int32_t backend_ = AXL_BACKEND_CPU;
    std::shared_ptr<cuda::Runtime> cuda_;
    int32_t log_level_ = AXL_LOG_WARN;
    axl_log_fn log_fn_ = nullptr;
    void* log_user_data_ = nullptr;
};

}  // namespace axl
