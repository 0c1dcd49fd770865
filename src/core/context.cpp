#include "core/context.hpp"

#include <omp.h>

#include <thread>

#include "core/error.hpp"

namespace axl {

Context::Context(const axl_context_options& options)
    : host_allocator_(std::make_shared<HostAllocator>(options.host_allocator)),
      log_level_(options.log_level),
      log_fn_(options.log_fn),
      log_user_data_(options.log_user_data) {
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    num_threads_ = options.num_threads > 0 ? options.num_threads : (cores > 0 ? cores : 1);
    switch (options.backend) {
        case AXL_BACKEND_AUTO:
        case AXL_BACKEND_CPU:
            backend_ = AXL_BACKEND_CPU;
            break;
        case AXL_BACKEND_CUDA:
            fail(AXL_ERR_UNSUPPORTED, "the CUDA backend is not available in this build of axl");
        default:
            fail(AXL_ERR_INVALID_ARGUMENT, "unknown backend ", options.backend);
    }
}

void Context::enter_thread() const { omp_set_num_threads(num_threads_); }

void Context::log(int32_t level, const std::string& message) const {
    if (log_fn_ != nullptr && level <= log_level_) log_fn_(log_user_data_, level, message.c_str());
}

}  // namespace axl
