#include "core/tensor.hpp"

#include <cstring>

#include "core/error.hpp"

namespace axl {

std::string shape_string(const Shape& shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(shape[i]);
    }
    return out + "]";
}

int64_t shape_numel(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Tensor Tensor::empty(const std::shared_ptr<HostAllocator>& allocator, DType dtype, Shape shape,
                     const char* what) {
    for (int64_t d : shape) require(d >= 0, AXL_ERR_SHAPE, "negative dimension in ", what);
    Tensor t;
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
    t.allocator_ = allocator;
    auto buffer = std::make_shared<Buffer>(allocator, t.nbytes(), what);
    t.data_ = buffer->data();
    t.owner_ = std::move(buffer);
    return t;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
    require(owner != nullptr, AXL_ERR_INTERNAL, "a tensor view needs an owner");
    Tensor t;
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
    t.data_ = const_cast<void*>(data);
    t.owner_ = std::move(owner);
    return t;
}

Tensor Tensor::zeros(const std::shared_ptr<HostAllocator>& allocator, DType dtype, Shape shape,
                     const char* what) {
    Tensor t = empty(allocator, dtype, std::move(shape), what);
    t.fill_zero();
    return t;
}

float* Tensor::f32() const {
    if (dtype_ != DType::F32) fail(AXL_ERR_INTERNAL, "expected an f32 tensor, got ", dtype_name(dtype_));
    return static_cast<float*>(data_);
}

Tensor Tensor::reshaped(Shape shape) const {
    require(shape_numel(shape) == numel(), AXL_ERR_SHAPE, "cannot reshape ", shape_string(shape_),
            " to ", shape_string(shape));
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
}

Tensor Tensor::clone(const std::shared_ptr<HostAllocator>& allocator) const {
    Tensor t = empty(allocator, dtype_, shape_, "tensor copy");
    std::memcpy(t.data_, data_, nbytes());
    return t;
}

void Tensor::fill_zero() const {
    if (data_ != nullptr) std::memset(data_, 0, nbytes());
}

}  // namespace axl
