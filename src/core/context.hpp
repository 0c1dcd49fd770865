// The engine side of an axl_context: allocator, thread count, logging, backend choice.
#pragma once

#include <memory>
#include <string>

#include "axl.h"
#include "core/allocator.hpp"

namespace axl {

class Context {
public:
    explicit Context(const axl_context_options& options);

    const std::shared_ptr<HostAllocator>& host_allocator() const { return host_allocator_; }
    int num_threads() const { return num_threads_; }
    int32_t backend() const { return backend_; }

    // Makes the calling thread use this context's thread count in parallel regions.
    void enter_thread() const;

    void log(int32_t level, const std::string& message) const;

private:
    std::shared_ptr<HostAllocator> host_allocator_;
    int num_threads_ = 1;
    int32_t backend_ = AXL_BACKEND_CPU;
    int32_t log_level_ = AXL_LOG_WARN;
    axl_log_fn log_fn_ = nullptr;
    void* log_user_data_ = nullptr;
};

}  // namespace axl
