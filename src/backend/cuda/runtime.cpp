#include "backend/cuda/runtime.hpp"

#include "backend/cuda/device_model.hpp"

namespace axl::cuda {

namespace {

// Selects the device before the allocator and cuBLASLt create anything on it.
const Device& made_current(const Device& device) {
    device.make_current();
    return device;
}

}  // namespace

Runtime::Runtime(int device_index, void* caller_stream, uint64_t budget_bytes)
    : device_(device_index, caller_stream),
      allocator_(made_current(device_).index(), device_.stream(), budget_bytes),
      blas_(allocator_) {}

Runtime::~Runtime() {
    device_.make_current();
    mirrors_.clear();
}

std::shared_ptr<DeviceModel> Runtime::model_mirror(const std::shared_ptr<const Model>& model) {
    std::lock_guard<std::mutex> lock(mirrors_mutex_);
    for (auto it = mirrors_.begin(); it != mirrors_.end();)
        it = it->second.model.expired() ? mirrors_.erase(it) : std::next(it);
    Mirror& entry = mirrors_[model.get()];
    if (entry.mirror == nullptr) {
        entry.mirror = std::make_shared<DeviceModel>(*model, *this);
        entry.model = model;
    }
    return entry.mirror;
}

}  // namespace axl::cuda
