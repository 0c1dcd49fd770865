#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/atomic_file.hpp"

namespace axl {

namespace {

using Json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit
constexpr const char* kMetadataKey = "__metadata__";

// The reference implementation's dtype enum, in increasing-alignment order. Its writer sorts
// by this rank, and a name listed here that axl has no DType for makes a valid file axl cannot
// read (UNSUPPORTED) rather than a corrupt one (FORMAT).
constexpr const char* kReferenceDTypes[] = {
    "BOOL", "F4",  "F6_E2M3", "F6_E3M2", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
    "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32",
    "U32", "F32", "C64", "F64", "I64", "U64"};

int reference_dtype_rank(std::string_view name) {
    for (size_t i = 0; i < std::size(kReferenceDTypes); ++i)
        if (name == kReferenceDTypes[i]) return static_cast<int>(i);
    return -1;
}

uint64_t read_u64_le(const unsigned char* bytes) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
    return value;
}

void write_u64_le(uint64_t value, unsigned char* bytes) {
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(value >> (8 * i));
}

std::string join_path(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// False only when the path (or a directory on it) does not exist.
bool path_exists(const std::string& path) {
    struct stat info;
    if (::stat(path.c_str(), &info) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    fail(AXL_ERR_IO, "cannot access ", path, ": ", std::strerror(errno));
}

// nlohmann keeps the last of two equal keys without a word; in a header that would let two
// readers disagree about which bytes a tensor name means, so a repeated key is an error.
Json parse_json_rejecting_duplicates(std::string_view text, const std::string& what) {
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    auto track_keys = [&](int, Json::parse_event_t event, Json& parsed) {
        if (event == Json::parse_event_t::object_start) {
            open_objects.emplace_back();
        } else if (event == Json::parse_event_t::object_end) {
            open_objects.pop_back();
        } else if (event == Json::parse_event_t::key && duplicate.empty()) {
            const auto& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second) duplicate = key;
        }
        return true;
    };
    // nlohmann stops at a NUL byte as if the input ended there, which would accept
    // `{...}\0garbage`; JSON text never holds a raw NUL.
    size_t nul = text.find('\0');
    require(nul == std::string_view::npos, AXL_ERR_FORMAT, what,
            " is not valid JSON: NUL byte at offset ", nul);
    Json value;
    try {
        value = Json::parse(text.begin(), text.end(), track_keys);
    } catch (const Json::exception& e) {
        fail(AXL_ERR_FORMAT, what, " is not valid JSON: ", e.what());
    }
    require(duplicate.empty(), AXL_ERR_FORMAT, what, " has the duplicate key '", duplicate, "'");
    return value;
}

// One header entry before the offsets are checked against each other.
struct HeaderEntry {
    TensorInfo info;
    uint64_t begin = 0;
    uint64_t end = 0;
};

// Reads data_offsets[i] or shape[i]: a JSON integer that must not be negative.
uint64_t read_count(const Json& value, const std::string& where, const char* field) {
    require(value.is_number_integer(), AXL_ERR_FORMAT, where, ": ", field,
            " must hold integers, got ", value.dump());
    require(value.is_number_unsigned() || value.get<int64_t>() >= 0, AXL_ERR_FORMAT, where,
            ": negative value ", value.dump(), " in ", field);
    return value.get<uint64_t>();
}

HeaderEntry parse_entry(const std::string& path, const std::string& name, const Json& value) {
    const std::string where = cat(path, ": tensor '", name, "'");
    require(value.is_object(), AXL_ERR_FORMAT, where, ": entry must be a JSON object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
        require(value.contains(field), AXL_ERR_FORMAT, where, ": missing '", field, "'");

    const Json& dtype = value["dtype"];
    require(dtype.is_string(), AXL_ERR_FORMAT, where, ": 'dtype' must be a string");
    const auto& dtype_text = dtype.get_ref<const std::string&>();
    HeaderEntry entry;
    entry.info.name = name;
    entry.info.file = path;
    if (!dtype_from_safetensors(dtype_text, &entry.info.dtype) || dtype_size(entry.info.dtype) == 0) {
        require(reference_dtype_rank(dtype_text) < 0, AXL_ERR_UNSUPPORTED, where, " has dtype ",
                dtype_text, ", which axl cannot read");
        fail(AXL_ERR_FORMAT, where, ": unknown dtype '", dtype_text, "'");
    }

    const Json& shape = value["shape"];
    require(shape.is_array(), AXL_ERR_FORMAT, where, ": 'shape' must be an array");
    uint64_t numel = 1;
    bool overflow = false;
    for (const Json& dim : shape) {
        uint64_t extent = read_count(dim, where, "shape");
        overflow |= extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        overflow |= __builtin_mul_overflow(numel, extent, &numel);
        entry.info.shape.push_back(static_cast<int64_t>(extent));
    }
    const char* dtype_label = dtype_safetensors_name(entry.info.dtype);
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, dtype_size(entry.info.dtype), &nbytes);
    require(!overflow, AXL_ERR_FORMAT, where, ": shape ", shape.dump(), " x ", dtype_label,
            " overflows a 64-bit byte count");
    entry.info.nbytes = nbytes;

    const Json& offsets = value["data_offsets"];
    require(offsets.is_array() && offsets.size() == 2, AXL_ERR_FORMAT, where,
            ": 'data_offsets' must be an array [begin, end]");
    entry.begin = read_count(offsets[0], where, "data_offsets");
    entry.end = read_count(offsets[1], where, "data_offsets");
    require(entry.end >= entry.begin, AXL_ERR_FORMAT, where, ": data_offsets end ", entry.end,
            " is before begin ", entry.begin, " (invalid offset)");
    require(entry.end - entry.begin == nbytes, AXL_ERR_FORMAT, where, ": shape ",
            shape_string(entry.info.shape), " x ", dtype_label, " needs ", nbytes,
            " bytes but data_offsets span ", entry.end - entry.begin);
    return entry;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const Json& value) {
    std::map<std::string, std::string> metadata;
    if (value.is_null()) return metadata;  // the reference reader takes null as "no metadata"
    require(value.is_object(), AXL_ERR_FORMAT, path, ": __metadata__ must be an object of strings");
    for (const auto& [key, text] : value.items()) {
        require(text.is_string(), AXL_ERR_FORMAT, path, ": __metadata__ value of '", key,
                "' must be a string, got ", text.dump());
        metadata[key] = text.get<std::string>();
    }
    return metadata;
}

// Checks that the tensors tile the data section exactly: sorted by offset, the first begins at
// 0, each begins where the previous ends, and the last ends at the end of the file.
void check_tiling(const std::string& path, std::vector<const HeaderEntry*> entries,
                  uint64_t data_bytes) {
    for (const HeaderEntry* entry : entries)
        require(entry->end <= data_bytes, AXL_ERR_FORMAT, path, ": tensor '", entry->info.name,
                "': data_offsets [", entry->begin, ", ", entry->end,
                "] out of range: the data section has ", data_bytes, " bytes");
    std::sort(entries.begin(), entries.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
        return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
    });
    uint64_t covered = 0;
    const HeaderEntry* previous = nullptr;
    for (const HeaderEntry* entry : entries) {
        if (previous == nullptr) {
            require(entry->begin == 0, AXL_ERR_FORMAT, path, ": gap of ", entry->begin,
                    " bytes at the start of the data section before tensor '", entry->info.name,
                    "' (the first tensor must begin at offset 0)");
        } else {
            require(entry->begin >= covered, AXL_ERR_FORMAT, path, ": tensor '", entry->info.name,
                    "' (data_offsets [", entry->begin, ", ", entry->end, "]) overlaps tensor '",
                    previous->info.name, "' (data_offsets [", previous->begin, ", ",
                    previous->end, "])");
            require(entry->begin == covered, AXL_ERR_FORMAT, path, ": gap of ",
                    entry->begin - covered, " bytes between tensor '", previous->info.name,
                    "' (ends at ", covered, ") and tensor '", entry->info.name, "' (begins at ",
                    entry->begin, ")");
        }
        covered = entry->end;
        previous = entry;
    }
    require(covered == data_bytes, AXL_ERR_FORMAT, path, ": ", data_bytes - covered,
            " trailing bytes after the last tensor (tensors end at data offset ", covered,
            ", the data section has ", data_bytes, " bytes)");
}

// Validates the mapped file `bytes[0, size)` and fills the tensor and metadata tables.
void parse_mapped_file(const std::string& path, const unsigned char* bytes, uint64_t size,
                       std::map<std::string, TensorInfo>* tensors,
                       std::map<std::string, std::string>* metadata) {
    const uint64_t header_bytes = read_u64_le(bytes);
    require(header_bytes <= kMaxHeaderBytes, AXL_ERR_FORMAT, path, ": header length ",
            header_bytes, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
    require(header_bytes <= size - 8, AXL_ERR_FORMAT, path, ": header length ", header_bytes,
            " runs past the end of the file (", size, " bytes)");
    std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), header_bytes);
    const Json header = parse_json_rejecting_duplicates(header_text, cat(path, ": header"));
    require(header.is_object(), AXL_ERR_FORMAT, path, ": header must be a JSON object");

    std::vector<HeaderEntry> entries;
    entries.reserve(header.size());
    for (const auto& [name, value] : header.items()) {
        if (name == kMetadataKey)
            *metadata = parse_metadata(path, value);
        else
            entries.push_back(parse_entry(path, name, value));
    }

    const uint64_t data_start = 8 + header_bytes;
    std::vector<const HeaderEntry*> by_offset;
    for (const HeaderEntry& entry : entries) by_offset.push_back(&entry);
    check_tiling(path, std::move(by_offset), size - data_start);

    for (HeaderEntry& entry : entries) {
        entry.info.data = bytes + data_start + entry.begin;
        std::string name = entry.info.name;
        tensors->emplace(std::move(name), std::move(entry.info));
    }
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int error = errno;
        require(error != ENOENT, AXL_ERR_NOT_FOUND, "safetensors file not found: ", path);
        fail(AXL_ERR_IO, "cannot open ", path, ": ", std::strerror(error));
    }
    struct stat info;
    if (::fstat(fd, &info) != 0) {
        int error = errno;
        ::close(fd);
        fail(AXL_ERR_IO, "cannot read ", path, ": ", std::strerror(error));
    }
    if (!S_ISREG(info.st_mode)) {
        ::close(fd);
        fail(AXL_ERR_IO, "cannot read ", path, ": not a regular file");
    }
    const uint64_t size = static_cast<uint64_t>(info.st_size);
    if (size < 8) {
        ::close(fd);
        fail(AXL_ERR_FORMAT, path, ": file is truncated: ", size,
             " bytes is too short for the 8-byte header length");
    }
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_error = errno;
    ::close(fd);  // the mapping keeps its own reference to the file
    require(mapping != MAP_FAILED, AXL_ERR_IO, "cannot map ", path, ": ", std::strerror(map_error));
    mapping_ = mapping;
    mapping_size_ = size;
    try {
        parse_mapped_file(path_, static_cast<const unsigned char*>(mapping_), size, &tensors_,
                          &metadata_);
    } catch (...) {
        ::munmap(mapping_, mapping_size_);  // the destructor does not run for a throwing constructor
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

namespace {

// model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file}}.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
    const Json index = parse_json_rejecting_duplicates(read_text_file(index_path), index_path);
    require(index.is_object(), AXL_ERR_FORMAT, index_path, " must hold a JSON object");
    auto weight_map = index.find("weight_map");
    require(weight_map != index.end() && weight_map->is_object(), AXL_ERR_FORMAT, index_path,
            " has no 'weight_map' object");
    require(!weight_map->empty(), AXL_ERR_FORMAT, index_path, ": 'weight_map' lists no tensors");
    std::map<std::string, std::string> shard_of;
    for (const auto& [tensor, shard] : weight_map->items()) {
        require(shard.is_string(), AXL_ERR_FORMAT, index_path, ": weight_map entry of '", tensor,
                "' must be a file name string");
        const auto& file = shard.get_ref<const std::string&>();
        // Shards live beside the index; a path that leaves the directory is a corrupt index.
        require(!file.empty() && file.front() != '/' && file.find("..") == std::string::npos,
                AXL_ERR_FORMAT, index_path, ": weight_map entry of '", tensor,
                "' names an invalid shard file '", file, "'");
        shard_of[tensor] = file;
    }
    return shard_of;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
    const std::string index_path = join_path(dir, "model.safetensors.index.json");
    const std::string single_path = join_path(dir, "model.safetensors");

    if (!path_exists(index_path)) {
        require(path_exists(single_path), AXL_ERR_NOT_FOUND, "no checkpoint in ", dir,
                ": neither ", single_path, " nor ", index_path, " was found");
        files_.push_back(std::make_unique<SafetensorsFile>(single_path));
        for (const auto& [name, info] : files_.back()->tensors()) index_.emplace(name, &info);
        return;
    }

    const std::map<std::string, std::string> shard_of = read_weight_map(index_path);
    std::map<std::string, const SafetensorsFile*> shards;
    for (const auto& [tensor, shard] : shard_of) {
        if (shards.count(shard)) continue;
        const std::string shard_path = join_path(dir, shard);
        require(path_exists(shard_path), AXL_ERR_NOT_FOUND, "shard file ", shard_path,
                " listed in ", index_path, " does not exist");
        files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
        shards[shard] = files_.back().get();
    }
    for (const auto& [tensor, shard] : shard_of) {
        const TensorInfo* info = shards.at(shard)->find(tensor);
        require(info != nullptr, AXL_ERR_FORMAT, index_path, " maps tensor '", tensor,
                "' to shard ", shard, ", but that shard does not contain it");
        index_.emplace(tensor, info);
    }
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
    const TensorInfo* info = find(name);
    require(info != nullptr, AXL_ERR_NOT_FOUND, "tensor '", name, "' not found in checkpoint ",
            dir_);
    return *info;
}

std::vector<std::string> Checkpoint::names() const {
    std::vector<std::string> out;
    out.reserve(index_.size());
    for (const auto& [name, info] : index_) out.push_back(name);
    return out;
}

namespace {

uint64_t checked_nbytes(const StreamedTensor& tensor, const std::string& path) {
    const std::string where = cat("cannot write ", path, ": tensor '", tensor.name, "'");
    const size_t element_size = dtype_size(tensor.dtype);
    require(element_size > 0, AXL_ERR_INVALID_ARGUMENT, where, " has dtype ",
            dtype_name(tensor.dtype), ", which safetensors cannot hold");
    uint64_t bytes = element_size;
    for (int64_t extent : tensor.shape) {
        require(extent >= 0, AXL_ERR_INVALID_ARGUMENT, where, " has a negative dimension in ",
                shape_string(tensor.shape));
        require(!__builtin_mul_overflow(bytes, static_cast<uint64_t>(extent), &bytes),
                AXL_ERR_INVALID_ARGUMENT, where, " is too large: ", shape_string(tensor.shape));
    }
    require(bytes == 0 || tensor.produce != nullptr, AXL_ERR_INVALID_ARGUMENT, where, " has no data");
    return bytes;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::vector<StreamedTensor> streamed;
    streamed.reserve(tensors.size());
    for (const NamedTensor& tensor : tensors) {
        StreamedTensor t{tensor.name, tensor.dtype, tensor.shape, nullptr};
        if (tensor.data != nullptr) t.produce = [data = tensor.data] { return data; };
        streamed.push_back(std::move(t));
    }
    write_safetensors_streamed(path, streamed, metadata);
}

void write_safetensors_streamed(const std::string& path, const std::vector<StreamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata) {
    // The reference writer's order: descending dtype alignment, then name. Aligned data then
    // follows from the 8-byte-aligned data section, and files match byte for byte.
    std::vector<const StreamedTensor*> order;
    for (const StreamedTensor& tensor : tensors) order.push_back(&tensor);
    std::sort(order.begin(), order.end(), [](const StreamedTensor* a, const StreamedTensor* b) {
        int rank_a = reference_dtype_rank(dtype_safetensors_name(a->dtype));
        int rank_b = reference_dtype_rank(dtype_safetensors_name(b->dtype));
        return rank_a != rank_b ? rank_a > rank_b : a->name < b->name;
    });

    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header[kMetadataKey] = metadata;
    std::vector<uint64_t> sizes;
    uint64_t offset = 0;
    for (const StreamedTensor* tensor : order) {
        require(tensor->name != kMetadataKey && !header.contains(tensor->name),
                AXL_ERR_INVALID_ARGUMENT, "cannot write ", path, ": tensor name '", tensor->name,
                "' is used twice or reserved");
        uint64_t bytes = checked_nbytes(*tensor, path);
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = dtype_safetensors_name(tensor->dtype);
        entry["shape"] = tensor->shape;
        entry["data_offsets"] = nlohmann::ordered_json::array({offset, offset + bytes});
        header[tensor->name] = std::move(entry);
        sizes.push_back(bytes);
        offset += bytes;
    }
    std::string header_text;
    try {
        header_text = header.dump();
    } catch (const nlohmann::json::exception& e) {
        fail(AXL_ERR_INVALID_ARGUMENT, "cannot write ", path,
             ": tensor names and metadata must be valid UTF-8 (", e.what(), ")");
    }
    header_text.append((8 - header_text.size() % 8) % 8, ' ');

    unsigned char length[8];
    write_u64_le(header_text.size(), length);
    AtomicFileWriter writer(path);
    writer.write(length, sizeof length);
    writer.write(header_text.data(), header_text.size());
    for (size_t i = 0; i < order.size(); ++i) {
        if (sizes[i] == 0) continue;
        const void* data = order[i]->produce();
        require(data != nullptr, AXL_ERR_INTERNAL, "cannot write ", path, ": tensor '", order[i]->name,
                "' produced no data");
        writer.write(data, sizes[i]);
    }
    writer.commit();
}

void release_mapped_pages(const TensorInfo& info) {
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = reinterpret_cast<uintptr_t>(info.data);
    const uintptr_t first = (begin + page - 1) / page * page;
    const uintptr_t last = (begin + info.nbytes) / page * page;
    // Advice only: a failure leaves the pages resident, which costs memory but not correctness.
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void prefetch_mapped_pages(const TensorInfo& info) {
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = reinterpret_cast<uintptr_t>(info.data) / page * page;
    const uintptr_t end = reinterpret_cast<uintptr_t>(info.data) + info.nbytes;
    // Advice only, like release_mapped_pages.
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
}

Tensor read_as_f32(const TensorInfo& info, const Shape& expected_shape,
                   const std::shared_ptr<HostAllocator>& allocator) {
    require(info.shape == expected_shape, AXL_ERR_SHAPE, "tensor '", info.name, "' in ", info.file,
            " has shape ", shape_string(info.shape), " but ", shape_string(expected_shape),
            " was expected");
    const DType dtype = info.dtype;
    require(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16 ||
                dtype == DType::F64,
            AXL_ERR_UNSUPPORTED, "tensor '", info.name, "' in ", info.file, " has dtype ",
            dtype_safetensors_name(dtype), "; only F32, BF16, F16 and F64 convert to f32");
    Tensor out = Tensor::empty(allocator, DType::F32, info.shape, info.name.c_str());
    const size_t count = static_cast<size_t>(out.numel());
    const size_t element_size = dtype_size(dtype);
    if (reinterpret_cast<uintptr_t>(info.data) % element_size == 0) {
        convert_to_f32(info.data, dtype, out.f32(), count);
        return out;
    }
    // A writer that did not pad its header leaves elements unaligned: convert through an
    // aligned bounce buffer instead of reading misaligned floats.
    alignas(8) unsigned char bounce[1 << 14];
    const size_t per_chunk = sizeof bounce / element_size;
    auto source = static_cast<const unsigned char*>(info.data);
    for (size_t done = 0; done < count; done += per_chunk) {
        size_t n = std::min(per_chunk, count - done);
        std::memcpy(bounce, source + done * element_size, n * element_size);
        convert_to_f32(bounce, dtype, out.f32() + done, n);
    }
    return out;
}

}  // namespace axl
