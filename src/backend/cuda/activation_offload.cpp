#include "backend/cuda/activation_offload.hpp"

#include <utility>

#include "backend/cuda/check.hpp"
#include "core/error.hpp"

namespace axl::cuda {

namespace {

cudaEvent_t new_event() {
    cudaEvent_t event = nullptr;
    AXL_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
}

}  // namespace

ActivationOffload::ActivationOffload(Runtime& runtime) : runtime_(runtime) {
    runtime_.device().make_current();
    AXL_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    try {
        compute_reached_ = new_event();
        copies_queued_ = new_event();
    } catch (...) {
        if (compute_reached_ != nullptr) cudaEventDestroy(compute_reached_);
        cudaStreamDestroy(copy_stream_);
        throw;
    }
}

ActivationOffload::~ActivationOffload() {
    cudaSetDevice(runtime_.device().index());
    // A failed step may have left transfers to or from the host buffers in flight.
    cudaStreamSynchronize(copy_stream_);
    for (PinnedBuffer& buffer : host_) cudaFreeHost(buffer.data);
    for (cudaEvent_t event : transferred_) cudaEventDestroy(event);
    cudaEventDestroy(copies_queued_);
    cudaEventDestroy(compute_reached_);
    cudaStreamDestroy(copy_stream_);
}

void ActivationOffload::reserve(int count, size_t bytes) {
    bool synchronized = false;
    for (int i = 0; i < count; ++i) {
        if (i < static_cast<int>(host_.size()) && host_[i].bytes >= bytes) continue;
        if (!synchronized) {
            AXL_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
            synchronized = true;
        }
        if (i == static_cast<int>(host_.size())) host_.emplace_back();
        PinnedBuffer& buffer = host_[i];
        if (buffer.data != nullptr) AXL_CUDA_CHECK(cudaFreeHost(std::exchange(buffer.data, nullptr)));
        buffer.bytes = 0;
        const cudaError_t status = cudaHostAlloc(&buffer.data, bytes, cudaHostAllocDefault);
        if (status != cudaSuccess) {
            cudaGetLastError();
            buffer.data = nullptr;
            fail(AXL_ERR_OUT_OF_MEMORY, "out of pinned host memory allocating ", bytes,
                 " bytes for the offloaded input of layer ", i, " (", cudaGetErrorString(status), ")");
        }
        buffer.bytes = bytes;
    }
    while (static_cast<int>(transferred_.size()) < count) transferred_.push_back(new_event());
}

OffloadedCheckpoints::OffloadedCheckpoints(ActivationOffload& offload, int count, size_t bytes)
    : offload_(offload), compute_(offload.runtime_.device().stream()), bytes_(bytes) {
    offload_.reserve(count, bytes);
    outgoing_.resize(count);
    incoming_.resize(count);
}

OffloadedCheckpoints::~OffloadedCheckpoints() {
    cudaEventRecord(offload_.copies_queued_, offload_.copy_stream_);
    cudaStreamWaitEvent(compute_, offload_.copies_queued_, 0);
    // outgoing_ and incoming_ are freed after this body, ordered after that wait.
}

void OffloadedCheckpoints::copy_stream_waits_for_compute() {
    AXL_CUDA_CHECK(cudaEventRecord(offload_.compute_reached_, compute_));
    AXL_CUDA_CHECK(cudaStreamWaitEvent(offload_.copy_stream_, offload_.compute_reached_, 0));
}

const bf16* OffloadedCheckpoints::store(int index, DeviceBuffer input) {
    require(input.size() == bytes_, AXL_ERR_INTERNAL, "checkpoint ", index, " has ", input.size(),
            " bytes, not ", bytes_);
    DeviceBuffer& held = outgoing_.at(index);
    held = std::move(input);
    copy_stream_waits_for_compute();
    AXL_CUDA_CHECK(cudaMemcpyAsync(offload_.host_[index].data, held.data(), bytes_, cudaMemcpyDeviceToHost,
                                   offload_.copy_stream_));
    AXL_CUDA_CHECK(cudaEventRecord(offload_.transferred_[index], offload_.copy_stream_));
    return held.as<bf16>();
}

void OffloadedCheckpoints::release(int index) {
    AXL_CUDA_CHECK(cudaStreamWaitEvent(compute_, offload_.transferred_.at(index), 0));
    outgoing_[index] = DeviceBuffer();
}

void OffloadedCheckpoints::prefetch(int index) {
    DeviceBuffer& held = incoming_.at(index);
    if (held.data() != nullptr) return;
    held = DeviceBuffer(offload_.runtime_.allocator(), bytes_, "layer input fetched from the host");
    copy_stream_waits_for_compute();
    AXL_CUDA_CHECK(cudaMemcpyAsync(held.data(), offload_.host_[index].data, bytes_, cudaMemcpyHostToDevice,
                                   offload_.copy_stream_));
    AXL_CUDA_CHECK(cudaEventRecord(offload_.transferred_[index], offload_.copy_stream_));
}

DeviceBuffer OffloadedCheckpoints::fetch(int index) {
    prefetch(index);
    AXL_CUDA_CHECK(cudaStreamWaitEvent(compute_, offload_.transferred_[index], 0));
    return std::move(incoming_[index]);
}

}  // namespace axl::cuda
