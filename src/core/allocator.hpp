// Host memory of the engine: every large buffer goes through the caller's hooks (or aligned
// malloc) and is counted, so the context can report current and peak bytes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "axl.h"

namespace axl {

class HostAllocator {
public:
    // `hooks` may be null (aligned malloc). The hooks struct is copied.
    explicit HostAllocator(const axl_host_allocator* hooks);

    // Throws Error(AXL_ERR_OUT_OF_MEMORY) naming `what` when the allocation fails.
    void* allocate(size_t bytes, const char* what);
    void deallocate(void* ptr, size_t bytes) noexcept;

    uint64_t current_bytes() const { return current_.load(); }
    uint64_t peak_bytes() const { return peak_.load(); }
    void reset_peak() { peak_.store(current_.load()); }

    static constexpr size_t kAlignment = 64;

private:
    axl_host_allocator hooks_{};
    bool has_hooks_ = false;
    std::atomic<uint64_t> current_{0};
    std::atomic<uint64_t> peak_{0};
};

// An owned block of host memory; returns itself to its allocator on destruction.
class Buffer {
public:
    Buffer(std::shared_ptr<HostAllocator> allocator, size_t bytes, const char* what);
    ~Buffer();
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    void* data() const { return data_; }
    size_t size() const { return bytes_; }

private:
    std::shared_ptr<HostAllocator> allocator_;
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

}  // namespace axl
