// Errors inside the engine are C++ exceptions carrying an axl status code and a message that
// names the problem; src/api translates them into status codes at the C boundary.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "axl.h"

namespace axl {

class Error : public std::runtime_error {
public:
    Error(axl_status code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}
    axl_status code() const noexcept { return code_; }

private:
    axl_status code_;
};

// Concatenates any streamable values into one string: cat("tensor ", name, " has ", n, " dims").
template <typename... Parts>
std::string cat(Parts&&... parts) {
    std::ostringstream out;
    (out << ... << std::forward<Parts>(parts));
    return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(axl_status code, Parts&&... parts) {
    throw Error(code, cat(std::forward<Parts>(parts)...));
}

// Checks a condition that a caller's input or a file controls.
template <typename... Parts>
void require(bool condition, axl_status code, Parts&&... parts) {
    if (!condition) fail(code, std::forward<Parts>(parts)...);
}

}  // namespace axl
