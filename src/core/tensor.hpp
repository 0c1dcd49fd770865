// A tensor: a dtype, a shape (row-major, contiguous) and the buffer that holds its elements.
// Copies share the buffer (like torch views of a whole tensor); clone() copies the elements.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.hpp"
#include "core/dtype.hpp"

namespace axl {

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
public:
    Tensor() = default;

    // Allocates an uninitialised tensor through `allocator`; `what` names it in OOM errors.
    static Tensor empty(const std::shared_ptr<HostAllocator>& allocator, DType dtype, Shape shape,
                        const char* what = "tensor");
    static Tensor zeros(const std::shared_ptr<HostAllocator>& allocator, DType dtype, Shape shape,
                        const char* what = "tensor");
    // Wraps read-only memory owned elsewhere (a mapped cache file) without copying; `owner`
    // keeps it alive as long as the tensor or a copy of it lives. Never write through data().
    static Tensor view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

    bool defined() const { return owner_ != nullptr; }
    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
    int rank() const { return static_cast<int>(shape_.size()); }
    int64_t numel() const { return shape_numel(shape_); }
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

    void* data() const { return data_; }
    template <typename T>
    T* data_as() const { return static_cast<T*>(data_); }
    float* f32() const;  // checks the dtype is F32

    // Same elements, new shape of the same element count.
    Tensor reshaped(Shape shape) const;
    Tensor clone(const std::shared_ptr<HostAllocator>& allocator) const;
    void fill_zero() const;
    const std::shared_ptr<HostAllocator>& allocator() const { return allocator_; }

private:
    DType dtype_ = DType::F32;
    Shape shape_;
    std::shared_ptr<const void> owner_;  // the Buffer, or what keeps a view's memory alive
    std::shared_ptr<HostAllocator> allocator_;
    void* data_ = nullptr;
};

}  // namespace axl
