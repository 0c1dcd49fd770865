// safetensors files: a validating, memory-mapped reader (one file or a sharded checkpoint)
// and an atomic writer. Rules follow the reference implementation (see docs/formats.md §6):
// header length bounded, offsets contiguous and in range, shape x dtype == byte length.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace axl {

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    const void* data = nullptr;  // points into the mapping
    size_t nbytes = 0;
    std::string file;            // the file it lives in (for error messages)
};

// One mapped safetensors file. Throws Error(AXL_ERR_NOT_FOUND) if it does not exist,
// Error(AXL_ERR_IO) if it cannot be opened/mapped, Error(AXL_ERR_FORMAT) naming the file and the
// problem if anything in it is invalid, and Error(AXL_ERR_UNSUPPORTED) for a valid safetensors
// dtype that axl has no DType for (U16, U32, U64, C64, F4, F6_*, F8_E8M0, *FNUZ).
// TensorInfo::data is aligned to its element size only if the writer aligned it (axl's and the
// reference writer do); read it through memcpy or read_as_f32 when unsure.
class SafetensorsFile {
public:
    explicit SafetensorsFile(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const TensorInfo* find(const std::string& name) const;  // null if absent

private:
    std::string path_;
    void* mapping_ = nullptr;
    size_t mapping_size_ = 0;
    std::map<std::string, TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

// A checkpoint: model.safetensors, or the shards listed by model.safetensors.index.json
// (every shard named by the index must exist; a tensor the index maps to a shard must be in it).
class Checkpoint {
public:
    // `dir` holds model.safetensors or model.safetensors.index.json.
    explicit Checkpoint(const std::string& dir);

    // Throws Error(AXL_ERR_NOT_FOUND) naming the tensor and the checkpoint if absent.
    const TensorInfo& get(const std::string& name) const;
    const TensorInfo* find(const std::string& name) const;
    std::vector<std::string> names() const;

private:
    std::string dir_;
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::map<std::string, const TensorInfo*> index_;
};

// Writes tensors (f32/bf16/f16/int) to `path` atomically (temp file + rename), with optional
// string metadata. Tensors are written sorted as the reference writer does, header padded
// to 8 bytes. Throws Error(AXL_ERR_IO) on failure, leaving no partial file at `path`.
struct NamedTensor {
    std::string name;
    DType dtype;
    Shape shape;
    const void* data;
};
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

// The same for files larger than memory: each tensor's bytes are produced only when the writer
// reaches it (in the file's order); `produce` returns them, valid until it is called again.
struct StreamedTensor {
    std::string name;
    DType dtype;
    Shape shape;
    std::function<const void*()> produce;
};
void write_safetensors_streamed(const std::string& path, const std::vector<StreamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata);

// Drops the mapped pages that lie wholly inside `info`'s bytes from this process (the file stays
// in the page cache; a later read maps them again). A loader calls it after converting each
// tensor, so reading a whole checkpoint never holds more than about one tensor resident.
void release_mapped_pages(const TensorInfo& info);
// Asks the kernel to start reading `info`'s bytes now (MADV_WILLNEED), ahead of their use.
void prefetch_mapped_pages(const TensorInfo& info);

// Reads a tensor of any float dtype into a new f32 tensor, checking its shape.
Tensor read_as_f32(const TensorInfo& info, const Shape& expected_shape,
                   const std::shared_ptr<HostAllocator>& allocator);

}  // namespace axl
