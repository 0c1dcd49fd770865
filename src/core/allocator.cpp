#include "core/allocator.hpp"

#include <cstdlib>
#include <cstring>

#include "core/error.hpp"

namespace axl {

HostAllocator::HostAllocator(const axl_host_allocator* hooks) {
    if (hooks != nullptr) {
        size_t n = hooks->struct_size < sizeof hooks_ ? hooks->struct_size : sizeof hooks_;
        std::memcpy(&hooks_, hooks, n);
        hooks_.struct_size = sizeof hooks_;
        has_hooks_ = hooks_.allocate != nullptr && hooks_.deallocate != nullptr;
    }
}

void* HostAllocator::allocate(size_t bytes, const char* what) {
    if (bytes == 0) bytes = 1;  // a valid, unique pointer for empty tensors
    void* ptr = nullptr;
    if (has_hooks_) {
        ptr = hooks_.allocate(hooks_.user_data, bytes, kAlignment);
    } else {
        size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
        ptr = std::aligned_alloc(kAlignment, rounded);
    }
    if (ptr == nullptr)
        fail(AXL_ERR_OUT_OF_MEMORY, "out of host memory allocating ", bytes, " bytes for ", what);
    uint64_t now = current_.fetch_add(bytes) + bytes;
    uint64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return ptr;
}

void HostAllocator::deallocate(void* ptr, size_t bytes) noexcept {
    if (ptr == nullptr) return;
    if (bytes == 0) bytes = 1;
    current_.fetch_sub(bytes);
    if (has_hooks_)
        hooks_.deallocate(hooks_.user_data, ptr, bytes);
    else
        std::free(ptr);
}

Buffer::Buffer(std::shared_ptr<HostAllocator> allocator, size_t bytes, const char* what)
    : allocator_(std::move(allocator)), bytes_(bytes) {
    data_ = allocator_->allocate(bytes, what);
}

Buffer::~Buffer() { allocator_->deallocate(data_, bytes_); }

}  // namespace axl
