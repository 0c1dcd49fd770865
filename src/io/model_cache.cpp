#include "io/model_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/crc32c.hpp"
#include "io/model_cache_generated.h"
#include "model/model_config.hpp"
#include "quant/quantize.hpp"

namespace axl {

namespace {

constexpr std::array<char, 8> kMagic = {'A', 'X', 'L', 'C', 'A', 'C', 'H', 'E'};
constexpr uint64_t kPreambleSize = 32;
constexpr uint64_t kDataAlignment = 4096;  // the data section starts on a page: mapped in place
constexpr uint64_t kBlobAlignment = 64;    // every run starts on a cache line

uint64_t align_up(uint64_t value, uint64_t alignment) {
    return (value + alignment - 1) / alignment * alignment;
}

template <typename T>
void put_le(unsigned char* out, T value) {
    for (size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
}

template <typename T>
T get_le(const unsigned char* in) {
    T value = 0;
    for (size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(in[i]) << (8 * i);
    return value;
}

// ---- Writing ------------------------------------------------------------------------------

// The runs of bytes of the data section, in file order, and their checksums.
class BlobPlan {
public:
    size_t add(const void* data, uint64_t size) {
        end_ = align_up(end_, kBlobAlignment);
        runs_.push_back({data, size, end_, 0});
        end_ += size;
        return runs_.size() - 1;
    }
    template <typename T>
    size_t add(const QuantArray<T>& array) {
        return add(array.data(), array.size() * sizeof(T));
    }

    void compute_checksums() {
        // Largest first, so the big embedding and LM-head runs do not finish last on one thread.
        std::vector<size_t> order(runs_.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return runs_[a].size > runs_[b].size; });
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t k = 0; k < order.size(); ++k) {
            Run& run = runs_[order[k]];
            run.crc = crc32c(run.data, run.size);
        }
    }

    cache::Blob blob(size_t index) const {
        const Run& run = runs_[index];
        return cache::Blob(run.offset, run.size, run.crc);
    }
    uint64_t data_size() const { return end_; }

    void write(AtomicFileWriter& writer) const {
        static const std::array<unsigned char, kBlobAlignment> zeros{};
        uint64_t position = 0;
        for (const Run& run : runs_) {
            writer.write(zeros.data(), run.offset - position);
            writer.write(run.data, run.size);
            position = run.offset + run.size;
        }
        writer.write(zeros.data(), end_ - position);
    }

private:
    struct Run {
        const void* data;
        uint64_t size;
        uint64_t offset;
        uint32_t crc;
    };
    std::vector<Run> runs_;
    uint64_t end_ = 0;
};

// Blob indices of one model tensor, registered before the checksums exist.
struct PlannedTensor {
    const NamedWeight* weight;
    size_t data = 0;
    size_t packed = 0, scales = 0, zeros = 0, scale_codes = 0;
    size_t dq_codes = 0, dq_absmax = 0, dq_code_map = 0;
};

PlannedTensor plan_tensor(const NamedWeight& weight, BlobPlan& plan) {
    PlannedTensor planned{&weight};
    const QuantizedTensor* q = weight.linear != nullptr ? weight.linear->quantized.get() : nullptr;
    if (q == nullptr) {
        const Tensor& t = weight.tensor != nullptr ? *weight.tensor : weight.linear->weight;
        planned.data = plan.add(t.data(), t.nbytes());
        return planned;
    }
    planned.packed = plan.add(q->packed);
    planned.scales = plan.add(q->scales);
    planned.zeros = plan.add(q->zeros);
    planned.scale_codes = plan.add(q->scale_codes);
    if (q->double_quant) {
        planned.dq_codes = plan.add(q->double_quant->codes);
        planned.dq_absmax = plan.add(q->double_quant->absmax);
        planned.dq_code_map = plan.add(q->double_quant->code_map);
    }
    return planned;
}

flatbuffers::Offset<cache::Tensor> build_tensor(flatbuffers::FlatBufferBuilder& fbb,
                                                const PlannedTensor& planned, const BlobPlan& plan) {
    const NamedWeight& weight = *planned.weight;
    const QuantizedTensor* q = weight.linear != nullptr ? weight.linear->quantized.get() : nullptr;
    if (q == nullptr) {
        const Tensor& t = weight.tensor != nullptr ? *weight.tensor : weight.linear->weight;
        const cache::Blob data = plan.blob(planned.data);
        return cache::CreateTensorDirect(fbb, weight.name.c_str(), static_cast<int32_t>(t.dtype()),
                                         &t.shape(), &data);
    }
    flatbuffers::Offset<cache::DoubleQuant> double_quant = 0;
    if (q->double_quant) {
        const cache::Blob codes = plan.blob(planned.dq_codes);
        const cache::Blob absmax = plan.blob(planned.dq_absmax);
        const cache::Blob code_map = plan.blob(planned.dq_code_map);
        double_quant = cache::CreateDoubleQuant(fbb, &codes, &absmax, &code_map, q->double_quant->offset);
    }
    const cache::Blob packed = plan.blob(planned.packed);
    const cache::Blob scales = plan.blob(planned.scales);
    const cache::Blob zeros = plan.blob(planned.zeros);
    const cache::Blob scale_codes = plan.blob(planned.scale_codes);
    auto quantized = cache::CreateQuantizedWeight(
        fbb, static_cast<int32_t>(q->format), q->rows, q->cols, q->block_size, q->block_rows,
        static_cast<int32_t>(q->weight_dtype), &packed, &scales, &zeros, &scale_codes,
        q->tensor_scale.has_value(), q->tensor_scale.value_or(0.0f), double_quant);
    const Shape shape{q->rows, q->cols};
    return cache::CreateTensorDirect(fbb, weight.name.c_str(), 0, &shape, nullptr, quantized);
}

flatbuffers::Offset<cache::QuantSettings> build_quant_settings(flatbuffers::FlatBufferBuilder& fbb,
                                                               const ModelQuantConfig& quant) {
    std::vector<flatbuffers::Offset<flatbuffers::String>> skip;
    for (const std::string& module : quant.skip_modules) skip.push_back(fbb.CreateString(module));
    const int32_t weight_dtype = quant.weight_dtype ? static_cast<int32_t>(*quant.weight_dtype) : -1;
    return cache::CreateQuantSettingsDirect(fbb, quant.format, quant.block_size, quant.double_quant,
                                            weight_dtype, &skip);
}

// ---- Reading ------------------------------------------------------------------------------

// A whole file mapped read-only; unmapped when the last tensor pointing into it goes.
class MappedFile {
public:
    explicit MappedFile(const std::string& path) : path_(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            const int error = errno;
            require(error != ENOENT, AXL_ERR_NOT_FOUND, "model cache not found: ", path);
            fail(AXL_ERR_IO, "cannot open model cache ", path, ": ", std::strerror(error));
        }
        struct stat info {};
        if (::fstat(fd, &info) != 0) {
            const int error = errno;
            ::close(fd);
            fail(AXL_ERR_IO, "cannot stat model cache ", path, ": ", std::strerror(error));
        }
        size_ = static_cast<uint64_t>(info.st_size);
        if (size_ > 0) {
            void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            const int error = errno;
            ::close(fd);
            require(mapping != MAP_FAILED, AXL_ERR_IO, "cannot map model cache ", path, ": ",
                    std::strerror(error));
            data_ = static_cast<const unsigned char*>(mapping);
        } else {
            ::close(fd);
        }
    }
    ~MappedFile() {
        if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const unsigned char* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const unsigned char* data_ = nullptr;
    uint64_t size_ = 0;
};

// The checked view of a mapped cache: preamble, metadata and data section.
class CacheReader {
public:
    explicit CacheReader(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
        const std::string& path = file_->path();
        const unsigned char* bytes = file_->data();
        require(file_->size() >= kPreambleSize && std::memcmp(bytes, kMagic.data(), kMagic.size()) == 0,
                AXL_ERR_FORMAT, path, " is not an axl model cache (no AXLCACHE preamble)");
        const auto layout = get_le<uint32_t>(bytes + 8);
        require(layout == kModelCacheLayoutVersion, AXL_ERR_UNSUPPORTED, path,
                " is a model cache of layout version ", layout, "; this axl reads version ",
                kModelCacheLayoutVersion, " (save the cache again)");
        const auto metadata_crc = get_le<uint32_t>(bytes + 12);
        const auto metadata_size = get_le<uint64_t>(bytes + 16);
        data_offset_ = get_le<uint64_t>(bytes + 24);
        require(metadata_size <= file_->size() - kPreambleSize && data_offset_ % kDataAlignment == 0 &&
                    data_offset_ >= kPreambleSize + metadata_size && data_offset_ <= file_->size(),
                AXL_ERR_FORMAT, path, ": the model cache is truncated or its preamble is corrupt");
        const unsigned char* metadata = bytes + kPreambleSize;
        require(crc32c(metadata, metadata_size) == metadata_crc, AXL_ERR_FORMAT, path,
                ": checksum mismatch in the model cache's metadata (the file is corrupt)");
        flatbuffers::Verifier verifier(metadata, metadata_size);
        require(cache::ModelCacheBufferHasIdentifier(metadata) && cache::VerifyModelCacheBuffer(verifier),
                AXL_ERR_FORMAT, path, ": the model cache's metadata is not a valid ModelCache flatbuffer");
        root_ = cache::GetModelCache(metadata);
        require(root_->schema_version() == kModelCacheSchemaVersion, AXL_ERR_UNSUPPORTED, path,
                " is a model cache of schema version ", root_->schema_version(), "; this axl reads ",
                kModelCacheSchemaVersion, " (save the cache again)");
        data_size_ = root_->data_size();
        require(data_size_ <= file_->size() - data_offset_, AXL_ERR_FORMAT, path,
                ": the model cache is truncated (its data section needs ", data_size_, " bytes, the file has ",
                file_->size() - data_offset_, ")");
        for (const cache::Tensor* tensor : *root_->tensors()) {
            require(tensors_.emplace(tensor->name()->str(), tensor).second, AXL_ERR_FORMAT, path,
                    ": tensor '", tensor->name()->str(), "' appears twice in the model cache");
        }
    }

    const cache::ModelCache& root() const { return *root_; }
    const std::shared_ptr<const MappedFile>& file() const { return file_; }

    const cache::Tensor& tensor(const std::string& name) const {
        auto it = tensors_.find(name);
        require(it != tensors_.end(), AXL_ERR_FORMAT, file_->path(), ": the model cache has no tensor '",
                name, "' that its config implies");
        return *it->second;
    }

    // Checks that a blob lies in the data section on its alignment.
    void check_bounds(const cache::Blob* blob, const std::string& tensor, const char* part) const {
        require(blob != nullptr, AXL_ERR_FORMAT, file_->path(), ": tensor '", tensor, "' has no ", part,
                " in the model cache");
        require(blob->offset() % kBlobAlignment == 0 && blob->offset() <= data_size_ &&
                    blob->size() <= data_size_ - blob->offset(),
                AXL_ERR_FORMAT, file_->path(), ": tensor '", tensor, "' (", part,
                ") lies outside the model cache's data section");
    }

    const unsigned char* bytes(const cache::Blob& blob) const {
        return file_->data() + data_offset_ + blob.offset();
    }

    template <typename T>
    QuantArray<T> array(const cache::Blob* blob, const std::string& tensor, const char* part) const {
        check_bounds(blob, tensor, part);
        require(blob->size() % sizeof(T) == 0, AXL_ERR_FORMAT, file_->path(), ": tensor '", tensor,
                "' (", part, ") has ", blob->size(), " bytes, not a whole number of elements");
        if (blob->size() == 0) return {};
        return QuantArray<T>::view(reinterpret_cast<const T*>(bytes(*blob)), blob->size() / sizeof(T), file_);
    }

    // Verifies every blob's bounds and CRC-32C; names the first tensor that fails.
    void verify_checksums() const {
        struct Check {
            const cache::Blob* blob;
            const cache::Tensor* tensor;
            const char* part;
        };
        std::vector<Check> checks;
        auto add = [&](const cache::Blob* blob, const cache::Tensor* tensor, const char* part) {
            if (blob == nullptr) return;
            check_bounds(blob, tensor->name()->str(), part);
            checks.push_back({blob, tensor, part});
        };
        for (const cache::Tensor* tensor : *root_->tensors()) {
            add(tensor->data(), tensor, "data");
            if (const cache::QuantizedWeight* q = tensor->quantized()) {
                add(q->packed(), tensor, "codes");
                add(q->scales(), tensor, "scales");
                add(q->zeros(), tensor, "zero points");
                add(q->scale_codes(), tensor, "block scales");
                if (const cache::DoubleQuant* dq = q->double_quant()) {
                    add(dq->codes(), tensor, "double-quant codes");
                    add(dq->absmax(), tensor, "nested absmax");
                    add(dq->code_map(), tensor, "nested code map");
                }
            }
        }
        std::vector<size_t> order(checks.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(),
                  [&](size_t a, size_t b) { return checks[a].blob->size() > checks[b].blob->size(); });
        std::vector<char> bad(checks.size(), 0);
        ::madvise(const_cast<unsigned char*>(file_->data()) + data_offset_, data_size_, MADV_WILLNEED);
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t k = 0; k < order.size(); ++k) {
            const Check& check = checks[order[k]];
            bad[order[k]] = crc32c(bytes(*check.blob), check.blob->size()) != check.blob->crc32c();
        }
        for (size_t i = 0; i < checks.size(); ++i)
            require(!bad[i], AXL_ERR_FORMAT, file_->path(), ": checksum mismatch in tensor '",
                    checks[i].tensor->name()->str(), "' (", checks[i].part, "); the model cache is corrupt");
    }

private:
    std::shared_ptr<const MappedFile> file_;
    const cache::ModelCache* root_ = nullptr;
    uint64_t data_offset_ = 0;
    uint64_t data_size_ = 0;
    std::map<std::string, const cache::Tensor*> tensors_;
};

DType cached_dtype(int32_t value, const std::string& path, const std::string& tensor) {
    require(value >= static_cast<int32_t>(DType::F32) && value <= static_cast<int32_t>(DType::F8_E5M2),
            AXL_ERR_FORMAT, path, ": tensor '", tensor, "' has an unknown dtype ", value);
    return static_cast<DType>(value);
}

Shape cached_shape(const cache::Tensor& tensor) {
    Shape shape;
    if (tensor.shape() != nullptr) shape.assign(tensor.shape()->begin(), tensor.shape()->end());
    return shape;
}

ModelQuantConfig cached_quant_settings(const cache::ModelCache& root) {
    ModelQuantConfig quant;
    if (const cache::QuantSettings* s = root.quant()) {
        quant.format = s->format();
        quant.block_size = s->block_size();
        quant.double_quant = s->double_quant();
        if (s->weight_dtype() >= 0) quant.weight_dtype = static_cast<DType>(s->weight_dtype());
        if (s->skip_modules() != nullptr)
            for (const flatbuffers::String* module : *s->skip_modules()) quant.skip_modules.push_back(module->str());
    }
    return quant;
}

class CacheSource : public WeightSource {
public:
    CacheSource(const CacheReader& reader, const ModelQuantConfig& requested)
        : reader_(reader), requested_(requested) {}

    Tensor load_f32(const std::string& name, const Shape& shape) override {
        const cache::Tensor& entry = reader_.tensor(name);
        require(entry.quantized() == nullptr && entry.dtype() == static_cast<int32_t>(DType::F32),
                AXL_ERR_FORMAT, path(), ": tensor '", name, "' must be an f32 tensor in the model cache");
        return plain(entry, name, shape);
    }

    void load_linear_weight(Linear& linear, bool) override {
        const std::string name = linear.name + ".weight";
        const Shape shape{linear.out_features, linear.in_features};
        const cache::Tensor& entry = reader_.tensor(name);
        const cache::QuantizedWeight* stored = entry.quantized();
        if (stored == nullptr) {
            const DType dtype = cached_dtype(entry.dtype(), path(), name);
            require(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16, AXL_ERR_FORMAT,
                    path(), ": tensor '", name, "' has dtype ", dtype_name(dtype), " in the model cache");
            linear.weight = plain(entry, name, shape);
            return;
        }
        QuantizedTensor q;
        QuantFormat format;
        require(quant_format_from_int(stored->format(), &format), AXL_ERR_FORMAT, path(), ": tensor '",
                name, "' has an unknown quant format ", stored->format());
        q.format = format;
        q.rows = stored->rows();
        q.cols = stored->cols();
        q.block_size = stored->block_size();
        q.block_rows = stored->block_rows();
        q.weight_dtype = cached_dtype(stored->weight_dtype(), path(), name);
        require(Shape{q.rows, q.cols} == shape, AXL_ERR_FORMAT, path(), ": tensor '", name, "' is [",
                q.rows, ", ", q.cols, "] in the model cache but the config implies ", shape_string(shape));
        q.packed = reader_.array<uint8_t>(stored->packed(), name, "codes");
        q.scales = reader_.array<float>(stored->scales(), name, "scales");
        q.zeros = reader_.array<float>(stored->zeros(), name, "zero points");
        q.scale_codes = reader_.array<uint8_t>(stored->scale_codes(), name, "block scales");
        if (stored->has_tensor_scale()) q.tensor_scale = stored->tensor_scale();
        if (const cache::DoubleQuant* dq = stored->double_quant()) {
            DoubleQuantStats stats;
            stats.codes = reader_.array<uint8_t>(dq->codes(), name, "double-quant codes");
            stats.absmax = reader_.array<float>(dq->absmax(), name, "nested absmax");
            stats.code_map = reader_.array<float>(dq->code_map(), name, "nested code map");
            stats.offset = dq->offset();
            q.double_quant = std::move(stats);
        }
        try {
            check_quantized_tensor(q);
        } catch (const Error& e) {
            fail(AXL_ERR_FORMAT, path(), ": tensor '", name, "' in the model cache: ", e.what());
        }
        require(!keeps_full_precision(requested_, linear.name), AXL_ERR_INVALID_ARGUMENT,
                "the quant config keeps '", linear.name, "' in full precision but the model cache ",
                path(), " stores it quantized");
        check_requested_block_size(requested_, q, name);
        linear.quantized = std::make_shared<const QuantizedTensor>(std::move(q));
    }

private:
    const std::string& path() const { return reader_.file()->path(); }

    Tensor plain(const cache::Tensor& entry, const std::string& name, const Shape& shape) {
        require(cached_shape(entry) == shape, AXL_ERR_FORMAT, path(), ": tensor '", name, "' has shape ",
                shape_string(cached_shape(entry)), " in the model cache but the config implies ",
                shape_string(shape));
        const DType dtype = cached_dtype(entry.dtype(), path(), name);
        reader_.check_bounds(entry.data(), name, "data");
        require(entry.data()->size() == static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype),
                AXL_ERR_FORMAT, path(), ": tensor '", name, "' has ", entry.data()->size(),
                " bytes in the model cache, its shape and dtype need ",
                static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype));
        return Tensor::view(dtype, shape, reader_.bytes(*entry.data()), reader_.file());
    }

    const CacheReader& reader_;
    const ModelQuantConfig& requested_;
};

void check_requested_format(const ModelQuantConfig& requested, const ModelQuantConfig& cached,
                            const std::string& path) {
    if (!requested.quantizes()) return;
    require(requested.format == cached.format, AXL_ERR_INVALID_ARGUMENT, "the model cache ", path,
            " holds weights quantized as ", describe(cached), " but the quant config asks for ",
            describe(requested), "; pass no quant config (or the cache's format) to load it");
    require(!requested.double_quant || cached.double_quant, AXL_ERR_INVALID_ARGUMENT,
            "the quant config asks for double quantization but the model cache ", path, " holds ",
            describe(cached));
}

}  // namespace

// The Blob struct's size is part of the file format.
static_assert(sizeof(cache::Blob) == 24, "Blob layout is part of the file format");

void save_model_cache(const Model& model, const std::string& path) {
    const std::vector<NamedWeight> weights = model_weights(model);
    BlobPlan plan;
    std::vector<PlannedTensor> planned;
    planned.reserve(weights.size());
    for (const NamedWeight& weight : weights) planned.push_back(plan_tensor(weight, plan));
    plan.compute_checksums();

    flatbuffers::FlatBufferBuilder fbb(1 << 16);
    std::vector<flatbuffers::Offset<cache::Tensor>> tensors;
    tensors.reserve(planned.size());
    for (const PlannedTensor& p : planned) tensors.push_back(build_tensor(fbb, p, plan));
    const auto quant = build_quant_settings(fbb, model.quant);
    const std::string producer = std::string("axl ") + axl_version_string();
    const auto root = cache::CreateModelCacheDirect(fbb, kModelCacheSchemaVersion, producer.c_str(),
                                                    model.config_json.c_str(), quant,
                                                    plan.data_size(), &tensors);
    cache::FinishModelCacheBuffer(fbb, root);

    const uint64_t metadata_size = fbb.GetSize();
    const uint64_t data_offset = align_up(kPreambleSize + metadata_size, kDataAlignment);
    std::array<unsigned char, kPreambleSize> preamble{};
    std::memcpy(preamble.data(), kMagic.data(), kMagic.size());
    put_le<uint32_t>(preamble.data() + 8, kModelCacheLayoutVersion);
    put_le<uint32_t>(preamble.data() + 12, crc32c(fbb.GetBufferPointer(), metadata_size));
    put_le<uint64_t>(preamble.data() + 16, metadata_size);
    put_le<uint64_t>(preamble.data() + 24, data_offset);

    AtomicFileWriter writer(path);
    writer.write(preamble.data(), preamble.size());
    writer.write(fbb.GetBufferPointer(), metadata_size);
    const std::vector<unsigned char> padding(data_offset - kPreambleSize - metadata_size, 0);
    writer.write(padding.data(), padding.size());
    plan.write(writer);
    writer.commit();
}

std::shared_ptr<Model> load_model_cache(const std::shared_ptr<Context>& context, const std::string& path,
                                        const LoadOptions& options) {
    validate_model_quant_config(options.quant);
    CacheReader reader(std::make_shared<const MappedFile>(path));
    reader.verify_checksums();

    auto model = std::make_shared<Model>();
    model->context = context;
    model->config_json = reader.root().config_json()->str();
    model->config = parse_model_config(model->config_json, path + " (config.json in the model cache)");
    model->quant = cached_quant_settings(reader.root());
    check_requested_format(options.quant, model->quant, path);
    CacheSource source(reader, options.quant);
    build_model(*model, source, options);
    return model;
}

}  // namespace axl
