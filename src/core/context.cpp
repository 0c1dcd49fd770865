#include "core/context.hpp"

#include <omp.h>

#include <thread>

#include "core/error.hpp"
#ifdef AXL_HAVE_CUDA
#include "backend/cuda/runtime.hpp"
#endif

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
#ifdef AXL_HAVE_CUDA
            backend_ = cuda::device_count() > 0 ? AXL_BACKEND_CUDA : AXL_BACKEND_CPU;
#else
            backend_ = AXL_BACKEND_CPU;
#endif
            break;
        case AXL_BACKEND_CPU:
            backend_ = AXL_BACKEND_CPU;
            break;
        case AXL_BACKEND_CUDA:
#ifdef AXL_HAVE_CUDA
            backend_ = AXL_BACKEND_CUDA;
            break;
#else
            fail(AXL_ERR_UNSUPPORTED, "the CUDA backend is not available in this build of axl");
#endif
        default:
            fail(AXL_ERR_INVALID_ARGUMENT, "unknown backend ", options.backend);
    }
#ifdef AXL_HAVE_CUDA
    if (backend_ == AXL_BACKEND_CUDA)
        cuda_ = std::make_shared<cuda::Runtime>(options.device, options.cuda_stream,
                                                options.device_memory_budget);
#endif
}

#ifdef AXL_HAVE_CUDA
uint64_t Context::device_current_bytes() const {
    return cuda_ != nullptr ? cuda_->allocator().current_bytes() : 0;
}
uint64_t Context::device_peak_bytes() const {
    return cuda_ != nullptr ? cuda_->allocator().peak_bytes() : 0;
}
void Context::reset_device_peak() const {
    if (cuda_ != nullptr) cuda_->allocator().reset_peak();
}
void Context::set_device_memory_budget(uint64_t bytes) const {
    if (cuda_ != nullptr) cuda_->allocator().set_budget(bytes);
}
#else
uint64_t Context::device_current_bytes() const { return 0; }
uint64_t Context::device_peak_bytes() const { return 0; }
void Context::reset_device_peak() const {}
void Context::set_device_memory_budget(uint64_t) const {}
#endif

void Context::enter_thread() const { omp_set_num_threads(num_threads_); }

void Context::log(int32_t level, const std::string& message) const {
    if (log_fn_ != nullptr && level <= log_level_) log_fn_(log_user_data_, level, message.c_str());
}

}  // namespace axl
