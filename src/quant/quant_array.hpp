// The storage of a quantized tensor's codes and statistics: either a vector it owns (what the
// quantizers produce) or a view of memory owned elsewhere and kept alive through `owner` (a block
// of the context's allocator, a mapped cache file), so a cache maps back without a copy.
// Reading never copies; the first write to a view copies it into a vector it then owns.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace axl {

template <typename T>
class QuantArray {
public:
    using value_type = T;
    using iterator = T*;
    using const_iterator = const T*;

    QuantArray() = default;
    QuantArray(std::vector<T> values) : owned_(std::move(values)) { refresh(); }
    QuantArray(std::initializer_list<T> values) : owned_(values) { refresh(); }

    // `size` elements at `data`, valid for as long as `owner` lives (never null).
    static QuantArray view(const T* data, size_t size, std::shared_ptr<const void> owner) {
        QuantArray array;
        array.owner_ = std::move(owner);
        array.data_ = data;
        array.size_ = size;
        return array;
    }

    QuantArray(const QuantArray& other) : owned_(other.owned_), owner_(other.owner_) {
        adopt_pointer(other);
    }
    QuantArray(QuantArray&& other) noexcept
        : owned_(std::move(other.owned_)), owner_(std::move(other.owner_)) {
        adopt_pointer(other);
        other.reset_pointer();
    }
    QuantArray& operator=(const QuantArray& other) {
        if (this != &other) {
            owned_ = other.owned_;
            owner_ = other.owner_;
            adopt_pointer(other);
        }
        return *this;
    }
    QuantArray& operator=(QuantArray&& other) noexcept {
        if (this != &other) {
            owned_ = std::move(other.owned_);
            owner_ = std::move(other.owner_);
            adopt_pointer(other);
            other.reset_pointer();
        }
        return *this;
    }

    bool is_view() const { return owner_ != nullptr; }
    // What keeps a view's memory alive (null for an owned vector).
    const std::shared_ptr<const void>& owner() const { return owner_; }

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const T* data() const { return data_; }
    const T& operator[](size_t i) const { return data_[i]; }
    const T* begin() const { return data_; }
    const T* end() const { return data_ + size_; }
    operator std::span<const T>() const { return {data_, size_}; }

    T* data() { return own(); }
    T& operator[](size_t i) { return own()[i]; }
    T* begin() { return own(); }
    T* end() { return own() + size_; }

    void resize(size_t count) { mutate([&] { owned_.resize(count); }); }
    void resize(size_t count, const T& value) { mutate([&] { owned_.resize(count, value); }); }
    void assign(size_t count, const T& value) { mutate([&] { owned_.assign(count, value); }); }
    template <typename It>
    void assign(It first, It last) {
        std::vector<T> values(first, last);
        mutate([&] { owned_ = std::move(values); });
    }
    void clear() { mutate([&] { owned_.clear(); }); }
    void push_back(const T& value) { mutate([&] { owned_.push_back(value); }); }
    void pop_back() { mutate([&] { owned_.pop_back(); }); }

    friend bool operator==(const QuantArray& a, const QuantArray& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end());
    }
    friend bool operator==(const QuantArray& a, const std::vector<T>& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end());
    }

private:
    // Turns a view into an owned copy; returns the writable data.
    T* own() {
        if (owner_ != nullptr) {
            owned_.assign(data_, data_ + size_);
            owner_.reset();
            refresh();
        }
        return owned_.data();
    }
    template <typename F>
    void mutate(F&& change) {
        own();
        change();
        refresh();
    }
    void refresh() {
        data_ = owned_.data();
        size_ = owned_.size();
    }
    void adopt_pointer(const QuantArray& other) {
        if (owner_ != nullptr) {
            data_ = other.data_;
            size_ = other.size_;
        } else {
            refresh();
        }
    }
    void reset_pointer() {
        owned_.clear();
        owner_.reset();
        refresh();
    }

    std::vector<T> owned_;
    std::shared_ptr<const void> owner_;
    const T* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace axl
