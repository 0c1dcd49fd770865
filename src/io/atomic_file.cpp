#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.hpp"

namespace axl {

namespace {

std::string errno_text(int error) { return std::strerror(error); }

std::string parent_directory(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

// The pid keeps concurrent processes apart; the random part keeps threads (and a retry after
// a crash left a stale temp file) apart.
std::string temp_name_for(const std::string& path) {
    thread_local std::mt19937_64 generator{std::random_device{}()};
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(generator()));
    return cat(path, ".tmp.", ::getpid(), ".", suffix);
}

// Makes the rename itself survive a crash. Best effort: some filesystems cannot sync a
// directory, and by now the new file is already complete and in place.
void sync_directory(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
    constexpr int kAttempts = 16;
    for (int attempt = 0; attempt < kAttempts && fd_ < 0; ++attempt) {
        temp_path_ = temp_name_for(path_);
        fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ < 0 && errno != EEXIST)
            fail(AXL_ERR_IO, "cannot write ", path_, ": cannot create ", temp_path_, ": ",
                 errno_text(errno));
    }
    if (fd_ < 0) fail(AXL_ERR_IO, "cannot write ", path_, ": no free temporary file name");
}

AtomicFileWriter::~AtomicFileWriter() {
    if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
    temp_path_.clear();
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
    require(fd_ >= 0, AXL_ERR_INTERNAL, "write to ", path_, " after commit");
    auto bytes_left = static_cast<const char*>(data);
    while (bytes > 0) {
        ssize_t written = ::write(fd_, bytes_left, bytes);
        if (written < 0) {
            if (errno == EINTR) continue;
            fail(AXL_ERR_IO, "cannot write ", path_, ": ", errno_text(errno));
        }
        bytes_left += written;
        bytes -= static_cast<size_t>(written);
    }
}

void AtomicFileWriter::commit() {
    require(fd_ >= 0, AXL_ERR_INTERNAL, "commit of ", path_, " twice");
    if (::fsync(fd_) != 0) fail(AXL_ERR_IO, "cannot write ", path_, ": fsync: ", errno_text(errno));
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(AXL_ERR_IO, "cannot write ", path_, ": close: ", errno_text(errno));
    if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
        fail(AXL_ERR_IO, "cannot write ", path_, ": rename: ", errno_text(errno));
    committed_ = true;
    sync_directory(parent_directory(path_));
}

void write_file_atomic(const std::string& path, std::string_view contents) {
    AtomicFileWriter writer(path);
    writer.write(contents.data(), contents.size());
    writer.commit();
}

std::string read_text_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int error = errno;
        require(error != ENOENT, AXL_ERR_NOT_FOUND, "file not found: ", path);
        fail(AXL_ERR_IO, "cannot open ", path, ": ", errno_text(error));
    }
    std::string contents;
    char chunk[1 << 16];
    for (;;) {
        ssize_t got = ::read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int error = errno;
            ::close(fd);
            fail(AXL_ERR_IO, "cannot read ", path, ": ", errno_text(error));
        }
        if (got == 0) break;
        contents.append(chunk, static_cast<size_t>(got));
    }
    ::close(fd);
    return contents;
}

void make_directories(const std::string& path) {
    std::error_code error;
    std::filesystem::create_directories(path, error);
    if (error) fail(AXL_ERR_IO, "cannot create directory ", path, ": ", error.message());
    require(std::filesystem::is_directory(path, error), AXL_ERR_IO, "cannot create directory ",
            path, ": it exists and is not a directory");
}

}  // namespace axl
