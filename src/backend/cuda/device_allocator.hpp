// Device memory of the engine: a stream-ordered caching allocator with current/peak statistics
// and a caller-set budget (axl_context_options::device_memory_budget).
//
// Blocks come from a private CUDA memory pool through cudaMallocFromPoolAsync/cudaFreeAsync on
// the device's stream: a freed block is reusable at once by work queued later on that stream
// (stream order makes that safe without a synchronization), and the pool keeps freed memory
// cached instead of returning it to the driver, so steady-state training allocates nothing
// from the driver. Memory is counted in requested bytes, like the host allocator.
//
// The budget caps the bytes live at once: an allocation that would go over it fails with
// Error(AXL_ERR_OUT_OF_MEMORY) naming what was being allocated, before touching the device;
// the pool's cache is trimmed to the budget whenever the stream synchronizes. A real device
// OOM is retried once after returning the whole cache to the driver.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

namespace axl::cuda {

class DeviceAllocator {
public:
    // `budget_bytes` 0: no limit other than the device's memory.
    DeviceAllocator(int device, cudaStream_t stream, uint64_t budget_bytes);
    ~DeviceAllocator();
    DeviceAllocator(const DeviceAllocator&) = delete;
    DeviceAllocator& operator=(const DeviceAllocator&) = delete;

    // Ordered on stream(): usable by work queued on it after this call. Never returns null for
    // bytes > 0; `what` names the buffer in the OOM message.
    void* allocate(size_t bytes, const char* what);
    // Ordered on stream(): the block is reused only by work queued after this call. `bytes` is
    // what was asked for at allocation.
    void deallocate(void* ptr, size_t bytes) noexcept;

    uint64_t current_bytes() const;
    uint64_t peak_bytes() const;
    void reset_peak();
    uint64_t budget_bytes() const;
    void set_budget(uint64_t budget_bytes);
    // Bytes the pool holds from the driver: live blocks plus the cache.
    uint64_t reserved_bytes() const;
    // Synchronizes the stream and returns every cached (free) block to the driver.
    void release_cached();

    cudaStream_t stream() const { return stream_; }

private:
    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cudaMemPool_t pool_ = nullptr;
    mutable std::mutex mutex_;
    uint64_t budget_ = 0;
    uint64_t current_ = 0;
    uint64_t peak_ = 0;
};

// One owned device block, returned to its allocator (stream-ordered) on destruction.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(DeviceAllocator& allocator, size_t bytes, const char* what);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& other) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* data() const { return data_; }
    template <typename T>
    T* as() const { return static_cast<T*>(data_); }
    size_t size() const { return bytes_; }

private:
    void reset() noexcept;

    DeviceAllocator* allocator_ = nullptr;
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

}  // namespace axl::cuda
