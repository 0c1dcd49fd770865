// Activation offload (AXL_CHECKPOINT_LAYERS_OFFLOAD): the layer inputs that gradient
// checkpointing keeps between forward and backward go to pinned host memory during the forward
// and come back one layer ahead of the backward, on a copy stream of their own, so that the
// transfers overlap the compute and a step's device memory does not grow with the layer count.
//
// Ordering, all on the device (no host waits inside a step):
//  - a transfer starts only after the compute stream has reached the point where its device
//    buffer is ready (an event recorded on the compute stream, waited by the copy stream): the
//    input just written by the previous layer, or a block just taken from the stream-ordered
//    allocator, which may be a block the compute stream used until then;
//  - a device buffer the copy stream touches goes back to the allocator (cudaFreeAsync on the
//    compute stream) only after the compute stream has waited for that transfer's event, and a
//    fetched input is read only after the same wait;
//  - every transfer is on one stream, so the host buffer of a checkpoint is written by the next
//    step's forward only after this step's backward has read it, even after a failed step.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/ops.hpp"
#include "backend/cuda/runtime.hpp"

namespace axl::cuda {

// What a trainer keeps from step to step: the copy stream, the events and the pinned host
// buffers, grown to the largest pass seen and reused by the later ones; freed with it.
class ActivationOffload {
public:
    explicit ActivationOffload(Runtime& runtime);
    ~ActivationOffload();
    ActivationOffload(const ActivationOffload&) = delete;
    ActivationOffload& operator=(const ActivationOffload&) = delete;

private:
    friend class OffloadedCheckpoints;

    struct PinnedBuffer {
        void* data = nullptr;
        size_t bytes = 0;
    };

    // At least `count` host buffers of `bytes` each, and as many transfer events. Growing waits
    // for the copy stream first (a failed step may have left transfers in flight): it happens at
    // the first pass and when a pass is larger than any before, never inside a pass.
    void reserve(int count, size_t bytes);

    Runtime& runtime_;
    cudaStream_t copy_stream_ = nullptr;
    cudaEvent_t compute_reached_ = nullptr;  // recorded on the compute stream, waited by the copy stream
    cudaEvent_t copies_queued_ = nullptr;    // recorded on the copy stream, waited by the compute stream
    std::vector<cudaEvent_t> transferred_;   // per checkpoint: its latest transfer is done
    std::vector<PinnedBuffer> host_;         // per checkpoint
};

// One pass's checkpoints 0..count-1 (the inputs of the layers offloaded), `bytes` each.
class OffloadedCheckpoints {
public:
    OffloadedCheckpoints(ActivationOffload& offload, int count, size_t bytes);
    // Makes the compute stream wait for every transfer queued, then frees the device buffers
    // still held: on every path, a failure part-way included, no block goes back to the
    // allocator while a transfer may still read or write it.
    ~OffloadedCheckpoints();
    OffloadedCheckpoints(const OffloadedCheckpoints&) = delete;
    OffloadedCheckpoints& operator=(const OffloadedCheckpoints&) = delete;

    int count() const { return static_cast<int>(outgoing_.size()); }

    // Forward: takes over checkpoint `index` (just written on the compute stream) and starts its
    // copy to the host. The caller reads it through the returned pointer until release(index).
    const bf16* store(int index, DeviceBuffer input);
    // Forward, once the work reading the checkpoint is queued: frees its device buffer, in
    // compute-stream order after its copy to the host.
    void release(int index);
    // Backward: starts copying checkpoint `index` back into a new device buffer (no-op if
    // started already). Queue it one layer ahead so that the copy overlaps that layer's work.
    void prefetch(int index);
    // Backward: checkpoint `index` on the device, readable by the work queued on the compute
    // stream from now on (prefetched now if it was not).
    DeviceBuffer fetch(int index);

private:
    // The copy stream waits for the compute stream's work queued so far.
    void copy_stream_waits_for_compute();

    ActivationOffload& offload_;
    cudaStream_t compute_ = nullptr;
    size_t bytes_ = 0;
    std::vector<DeviceBuffer> outgoing_;  // forward: being copied to the host
    std::vector<DeviceBuffer> incoming_;  // backward: being copied back
};

}  // namespace axl::cuda
