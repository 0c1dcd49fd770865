// Files are written to a temporary name beside the target and renamed over it, so a reader
// never sees a partial file and a failure leaves the old file (or nothing) in place.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace axl {

// Writes `contents` to `path` atomically. Throws Error(AXL_ERR_IO) naming the path.
void write_file_atomic(const std::string& path, std::string_view contents);

// Reads a whole (small) file. Throws Error(AXL_ERR_IO) / Error(AXL_ERR_NOT_FOUND) naming it.
std::string read_text_file(const std::string& path);

// Creates a directory and its parents if missing. Throws Error(AXL_ERR_IO).
void make_directories(const std::string& path);

// Streams a file too large to hold in memory to `<path>.tmp.<pid>.<random>`; commit() syncs it
// and renames it over `path`. Destroyed without a successful commit() (an exception on the way),
// it removes the temporary file. Every failure throws Error(AXL_ERR_IO) naming `path`.
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::string path);
    ~AtomicFileWriter();
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(const void* data, size_t bytes);
    void commit();

private:
    void discard() noexcept;

    std::string path_;
    std::string temp_path_;
    int fd_ = -1;
    bool committed_ = false;
};

}  // namespace axl
