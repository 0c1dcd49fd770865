// The C boundary: every exported function runs its body inside `guarded`, which turns any
// C++ exception into a status code and records the message for the thread and the handle.
#pragma once

#include <omp.h>

#include <cstring>
#include <new>
#include <string>

#include "api/handles.hpp"
#include "core/error.hpp"

namespace axl {

// Records a failure of `function` and returns `code`.
axl_status record_failure(ErrorSlot* slot, axl_status code, const char* function,
                          const char* message) noexcept;

// Restores the calling thread's OpenMP thread count on the way out: Context::enter_thread
// sets it for axl's parallel regions, and the host application's own setting must survive.
class HostThreadCountGuard {
public:
    HostThreadCountGuard() noexcept : saved_(omp_get_max_threads()) {}
    ~HostThreadCountGuard() {
        if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
    }

private:
    int saved_;
};

template <typename Body>
axl_status guarded(ErrorSlot* slot, const char* function, Body&& body) noexcept {
    HostThreadCountGuard thread_count_guard;
    try {
        body();
        return AXL_OK;
    } catch (const Error& error) {
        return record_failure(slot, error.code(), function, error.what());
    } catch (const std::bad_alloc&) {
        return record_failure(slot, AXL_ERR_OUT_OF_MEMORY, function, "out of host memory");
    } catch (const std::exception& error) {
        return record_failure(slot, AXL_ERR_INTERNAL, function, error.what());
    } catch (...) {
        return record_failure(slot, AXL_ERR_INTERNAL, function, "unknown exception");
    }
}

template <typename Handle>
ErrorSlot* slot_of(Handle* handle) {
    return handle != nullptr ? &const_cast<ErrorSlot&>(handle->error) : nullptr;
}

template <typename T>
void require_arg(const T* pointer, const char* name) {
    if (pointer == nullptr) fail(AXL_ERR_INVALID_ARGUMENT, name, " is NULL");
}

// Reads a caller's size-prefixed struct: starts from `defaults` and takes the bytes the
// caller's struct_size covers (fields are only appended, so an older, shorter struct is fine).
template <typename T>
T read_struct(const T* in, const T& defaults, const char* name) {
    T out = defaults;
    if (in == nullptr) return out;
    require(in->struct_size >= sizeof(uint32_t), AXL_ERR_INVALID_ARGUMENT, name,
            "->struct_size is ", in->struct_size, "; initialise the struct with its *_init function");
    size_t n = in->struct_size < sizeof(T) ? in->struct_size : sizeof(T);
    std::memcpy(&out, in, n);
    out.struct_size = sizeof(T);
    return out;
}

// Writes a result into a caller's size-prefixed struct, only the bytes its struct_size covers.
template <typename T>
void write_struct(T* out, const T& value, const char* name) {
    require(out->struct_size >= sizeof(uint32_t), AXL_ERR_INVALID_ARGUMENT, name,
            "->struct_size is ", out->struct_size, "; initialise the struct with its *_init function");
    size_t n = out->struct_size < sizeof(T) ? out->struct_size : sizeof(T);
    uint32_t caller_size = out->struct_size;
    std::memcpy(out, &value, n);
    out->struct_size = caller_size;
}

// The *_init functions: defaults into a caller struct of `size` bytes.
template <typename T>
void init_struct(T* out, size_t size, const T& defaults, const char* name) {
    require(out != nullptr, AXL_ERR_INVALID_ARGUMENT, name, " is NULL");
    require(size >= sizeof(uint32_t), AXL_ERR_INVALID_ARGUMENT, "struct_size ", size,
            " is too small for ", name);
    size_t n = size < sizeof(T) ? size : sizeof(T);
    std::memset(static_cast<void*>(out), 0, size);
    std::memcpy(static_cast<void*>(out), &defaults, n);
    out->struct_size = static_cast<uint32_t>(size);
}

}  // namespace axl
