#include "api/guard.hpp"

namespace axl {

namespace {

struct ThreadError {
    axl_status code = AXL_OK;
    std::string message;
};

ThreadError& thread_error() {
    thread_local ThreadError error;
    return error;
}

}  // namespace

axl_status record_failure(ErrorSlot* slot, axl_status code, const char* function,
                          const char* message) noexcept {
    try {
        std::string text = std::string(function) + ": " + message;
        ThreadError& error = thread_error();
        error.code = code;
        error.message = text;
        if (slot != nullptr) slot->set(text);
    } catch (...) {
        // Out of memory while recording the message: the code alone still tells the caller.
    }
    return code;
}

}  // namespace axl

extern "C" {

AXL_API const char* axl_last_error(void) { return axl::thread_error().message.c_str(); }

AXL_API axl_status axl_last_error_code(void) { return axl::thread_error().code; }

AXL_API const char* axl_status_string(axl_status status) {
    switch (status) {
        case AXL_OK: return "ok";
        case AXL_ERR_INVALID_ARGUMENT: return "invalid argument";
        case AXL_ERR_OUT_OF_MEMORY: return "out of memory";
        case AXL_ERR_IO: return "i/o error";
        case AXL_ERR_FORMAT: return "malformed file";
        case AXL_ERR_UNSUPPORTED: return "unsupported";
        case AXL_ERR_NOT_FOUND: return "not found";
        case AXL_ERR_SHAPE: return "shape mismatch";
        case AXL_ERR_NUMERIC: return "non-finite loss or gradient";
        case AXL_ERR_CANCELLED: return "cancelled";
        case AXL_ERR_BACKEND: return "backend failure";
        case AXL_ERR_STATE: return "invalid state";
        case AXL_ERR_INTERNAL: return "internal error";
        default: return "unknown status";
    }
}

AXL_API uint32_t axl_version(void) { return AXL_VERSION_NUMBER; }

AXL_API const char* axl_version_string(void) {
#define AXL_STRINGIFY_(x) #x
#define AXL_STRINGIFY(x) AXL_STRINGIFY_(x)
    return AXL_STRINGIFY(AXL_VERSION_MAJOR) "." AXL_STRINGIFY(AXL_VERSION_MINOR) "." AXL_STRINGIFY(
        AXL_VERSION_PATCH);
}

}  // extern "C"
