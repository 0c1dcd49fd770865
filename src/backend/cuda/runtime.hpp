// The CUDA side of a context (AXL_BACKEND_CUDA): the device and its stream, the caching
// allocator with its budget, the cuBLASLt handle, and the device mirrors of the models trained
// on it. Created by Context; everything that runs on the device reaches it through
// Context::cuda().
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "backend/cuda/blas_lt.hpp"
#include "backend/cuda/device.hpp"
#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/step_profile.hpp"

namespace axl {
struct Model;
}

namespace axl::cuda {

class DeviceModel;

class Runtime {
public:
    // device_index / caller_stream / budget_bytes: axl_context_options' device, cuda_stream and
    // device_memory_budget.
    Runtime(int device_index, void* caller_stream, uint64_t budget_bytes);
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    Device& device() { return device_; }
    DeviceAllocator& allocator() { return allocator_; }
    BlasLt& blas() { return blas_; }
    // Per-op device time of the steps on this runtime (off unless a benchmark turns it on).
    StepProfile& profile() { return profile_; }

    // The device copy of `model`'s frozen weights, uploaded on first use and shared by every
    // trainer of the model; released once the model is gone (at the next lookup).
    std::shared_ptr<DeviceModel> model_mirror(const std::shared_ptr<const Model>& model);

private:
    struct Mirror {
        std::weak_ptr<const Model> model;
        std::shared_ptr<DeviceModel> mirror;
    };

    Device device_;
    DeviceAllocator allocator_;
    BlasLt blas_;
    StepProfile profile_;
    std::mutex mirrors_mutex_;
    std::unordered_map<const Model*, Mirror> mirrors_;
};

}  // namespace axl::cuda
