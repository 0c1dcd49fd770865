// Files are written to a temporary name beside the target and renamed over it, so a reader
// never sees a partial file and a failure leaves the old file (or nothing) in place.
#pragma once

#include <string>
#include <string_view>

namespace axl {

// Writes `contents` to `path` atomically. Throws Error(AXL_ERR_IO) naming the path.
void write_file_atomic(const std::string& path, std::string_view contents);

// Reads a whole (small) file. Throws Error(AXL_ERR_IO) / Error(AXL_ERR_NOT_FOUND) naming it.
std::string read_text_file(const std::string& path);

// Creates a directory and its parents if missing. Throws Error(AXL_ERR_IO).
void make_directories(const std::string& path);

}  // namespace axl
