#include "backend/cuda/device_allocator.hpp"

#include <limits>
#include <utility>

#include "backend/cuda/check.hpp"

namespace axl::cuda {

namespace {

// What the pool may keep cached past a synchronization: all of it without a budget.
uint64_t release_threshold(uint64_t budget) {
    return budget == 0 ? std::numeric_limits<uint64_t>::max() : budget;
}

}  // namespace

DeviceAllocator::DeviceAllocator(int device, cudaStream_t stream, uint64_t budget_bytes)
    : device_(device), stream_(stream), budget_(budget_bytes) {
    cudaMemPoolProps properties{};
    properties.allocType = cudaMemAllocationTypePinned;
    properties.handleTypes = cudaMemHandleTypeNone;
    properties.location.type = cudaMemLocationTypeDevice;
    properties.location.id = device;
    AXL_CUDA_CHECK(cudaMemPoolCreate(&pool_, &properties));
    uint64_t threshold = release_threshold(budget_);
    AXL_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
}

DeviceAllocator::~DeviceAllocator() {
    // Blocks freed on the stream may still be in use by queued work: drain it first.
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    cudaMemPoolDestroy(pool_);
}

void* DeviceAllocator::allocate(size_t bytes, const char* what) {
    if (bytes == 0) bytes = 1;  // a distinct, valid pointer for empty tensors
    {
        std::lock_guard<std::mutex> lock(mutex_);
        require(budget_ == 0 || current_ + bytes <= budget_, AXL_ERR_OUT_OF_MEMORY,
                "device memory budget of ", budget_, " bytes exceeded allocating ", bytes, " bytes for ",
                what, " (", current_, " bytes in use)");
        current_ += bytes;  // reserved now so that concurrent callers see it; undone on failure
        if (current_ > peak_) peak_ = current_;
    }
    void* ptr = nullptr;
    cudaError_t status = cudaMallocFromPoolAsync(&ptr, bytes, pool_, stream_);
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        // The cache may hold what we need in blocks of the wrong size: give it back and retry.
        if (cudaStreamSynchronize(stream_) == cudaSuccess && cudaMemPoolTrimTo(pool_, 0) == cudaSuccess)
            status = cudaMallocFromPoolAsync(&ptr, bytes, pool_, stream_);
    }
    if (status != cudaSuccess) {
        uint64_t in_use = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            current_ -= bytes;
            in_use = current_;
        }
        if (status == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            size_t free_bytes = 0, total_bytes = 0;
            cudaMemGetInfo(&free_bytes, &total_bytes);
            fail(AXL_ERR_OUT_OF_MEMORY, "out of device memory allocating ", bytes, " bytes for ", what, " (",
                 in_use, " bytes in use by axl, ", free_bytes, " of ", total_bytes, " free on device ", device_, ")");
        }
        AXL_CUDA_CHECK(status);
    }
    return ptr;
}

void DeviceAllocator::deallocate(void* ptr, size_t bytes) noexcept {
    if (ptr == nullptr) return;
    if (bytes == 0) bytes = 1;
    cudaFreeAsync(ptr, stream_);
    std::lock_guard<std::mutex> lock(mutex_);
    current_ -= bytes;
}

uint64_t DeviceAllocator::current_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
}

uint64_t DeviceAllocator::peak_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
}

void DeviceAllocator::reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = current_;
}

uint64_t DeviceAllocator::budget_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return budget_;
}

void DeviceAllocator::set_budget(uint64_t budget_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    budget_ = budget_bytes;
    uint64_t threshold = release_threshold(budget_);
    AXL_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
}

uint64_t DeviceAllocator::reserved_bytes() const {
    uint64_t reserved = 0;
    AXL_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved));
    return reserved;
}

void DeviceAllocator::release_cached() {
    AXL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    AXL_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
}

DeviceBuffer::DeviceBuffer(DeviceAllocator& allocator, size_t bytes, const char* what)
    : allocator_(&allocator), data_(allocator.allocate(bytes, what)), bytes_(bytes) {}

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : allocator_(std::exchange(other.allocator_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
        reset();
        allocator_ = std::exchange(other.allocator_, nullptr);
        data_ = std::exchange(other.data_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
}

void DeviceBuffer::reset() noexcept {
    if (allocator_ != nullptr && data_ != nullptr) allocator_->deallocate(data_, bytes_);
    allocator_ = nullptr;
    data_ = nullptr;
    bytes_ = 0;
}

}  // namespace axl::cuda
