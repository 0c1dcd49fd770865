// The quantized-model cache: a saved model maps back with the same weights (used in place, not
// copied) and the same logits; a damaged file fails naming what is wrong; a failed save leaves
// nothing behind.
#include "io/model_cache.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <unistd.h>

#include "quant_model_support.hpp"

namespace axl {
namespace {

using namespace quant_model_test;

std::vector<char> read_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::filesystem::path& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

uint64_t read_u64(const std::vector<char>& bytes, size_t at) {
    uint64_t value;
    std::memcpy(&value, bytes.data() + at, sizeof value);
    return value;
}

class ModelCacheTest : public ::testing::Test {
protected:
    void SetUp() override { axl_test::write_tiny_checkpoint(dir_.path(), tiny_options()); }
    std::filesystem::path cache_path() const { return dir_ / "model.axlc"; }
    axl_test::TempDir dir_{"model_cache"};
};

void expect_same_weights(const Model& a, const Model& b) {
    EXPECT_EQ(a.num_parameters, b.num_parameters);
    EXPECT_EQ(a.weight_bytes_by_format, b.weight_bytes_by_format);
    EXPECT_EQ(a.config_json, b.config_json);
    EXPECT_EQ(a.quant.format, b.quant.format);
    EXPECT_EQ(a.quant.double_quant, b.quant.double_quant);
    const auto la = a.decoder_linears(), lb = b.decoder_linears();
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) {
        ASSERT_EQ(la[i]->is_quantized(), lb[i]->is_quantized());
        if (!la[i]->is_quantized()) continue;
        const QuantizedTensor &qa = *la[i]->quantized, &qb = *lb[i]->quantized;
        EXPECT_EQ(qa.packed, qb.packed);
        EXPECT_EQ(qa.scales, qb.scales);
        EXPECT_EQ(qa.zeros, qb.zeros);
        EXPECT_EQ(qa.scale_codes, qb.scale_codes);
        EXPECT_EQ(qa.tensor_scale, qb.tensor_scale);
        ASSERT_EQ(qa.double_quant.has_value(), qb.double_quant.has_value());
        if (qa.double_quant) {
            EXPECT_EQ(qa.double_quant->codes, qb.double_quant->codes);
            EXPECT_EQ(qa.double_quant->absmax, qb.double_quant->absmax);
            EXPECT_EQ(qa.double_quant->offset, qb.double_quant->offset);
        }
    }
}

TEST_F(ModelCacheTest, RoundTripsEveryFormatWithTheSameLogits) {
    const std::vector<ModelQuantConfig> configs = {
        quant_config(AXL_QUANT_NONE),        quant_config(AXL_QUANT_NF4, 64, true),
        quant_config(AXL_QUANT_FP4, 128),    quant_config(AXL_QUANT_INT4_GROUP, 64),
        quant_config(AXL_QUANT_INT8_ROW),    quant_config(AXL_QUANT_INT8_CHAN),
        quant_config(AXL_QUANT_FP8_E4M3),    quant_config(AXL_QUANT_NVFP4)};
    for (const ModelQuantConfig& config : configs) {
        SCOPED_TRACE(describe(config));
        const auto original = load(dir_.path(), config);
        save_model_cache(*original, cache_path().string());
        const auto cached = load_model_cache(test_context(), cache_path().string(), {});
        expect_same_weights(*original, *cached);
        const std::vector<float> want = logits_of(*original), got = logits_of(*cached);
        EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
    }
}

TEST_F(ModelCacheTest, WeightsPointIntoTheMappingWhichTheModelKeepsAlive) {
    auto context = test_context();
    save_model_cache(*load(dir_.path(), quant_config(AXL_QUANT_NF4)), cache_path().string());
    const uint64_t before = context->host_allocator()->current_bytes();
    auto cached = load_model_cache(context, cache_path().string(), {});
    EXPECT_EQ(context->host_allocator()->current_bytes(), before) << "a cache load copies no weights";
    const QuantizedTensor& q = *cached->layers[0].q_proj.quantized;
    EXPECT_TRUE(q.packed.is_view());
    EXPECT_TRUE(q.scales.is_view());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(q.packed.data()) % 64, 0u);
    // The file may go: the mapping lives as long as the model.
    std::filesystem::remove(cache_path());
    EXPECT_NO_THROW(logits_of(*cached));
}

TEST_F(ModelCacheTest, CorruptDataFailsNamingTheTensor) {
    const auto original = load(dir_.path(), quant_config(AXL_QUANT_INT4_GROUP));
    save_model_cache(*original, cache_path().string());
    std::vector<char> bytes = read_bytes(cache_path());
    const uint64_t data_offset = read_u64(bytes, 24);
    // The first run of the data section is the embedding table.
    bytes[data_offset + 5] ^= 0x10;
    write_bytes(cache_path(), bytes);
    expect_error([&] { load_model_cache(test_context(), cache_path().string(), {}); }, AXL_ERR_FORMAT,
                 "checksum mismatch in tensor 'model.embed_tokens.weight'");
    // The last byte belongs to the last tensor written (the LM head).
    bytes[data_offset + 5] ^= 0x10;
    bytes.back() ^= 0x01;
    write_bytes(cache_path(), bytes);
    expect_error([&] { load_model_cache(test_context(), cache_path().string(), {}); }, AXL_ERR_FORMAT,
                 "checksum mismatch in tensor 'lm_head.weight'");
}

TEST_F(ModelCacheTest, CorruptMetadataTruncationAndVersionsAreClearErrors) {
    save_model_cache(*load(dir_.path(), quant_config(AXL_QUANT_NF4)), cache_path().string());
    const std::vector<char> good = read_bytes(cache_path());
    auto load_cache = [&] { load_model_cache(test_context(), cache_path().string(), {}); };

    std::vector<char> bytes = good;
    bytes[40] ^= 0x01;  // inside the flatbuffer
    write_bytes(cache_path(), bytes);
    expect_error(load_cache, AXL_ERR_FORMAT, "checksum mismatch in the model cache's metadata");

    bytes = good;
    bytes.resize(bytes.size() - 100);
    write_bytes(cache_path(), bytes);
    expect_error(load_cache, AXL_ERR_FORMAT, "truncated");

    bytes = good;
    bytes[8] = 2;  // layout version
    write_bytes(cache_path(), bytes);
    expect_error(load_cache, AXL_ERR_UNSUPPORTED, "layout version 2");

    bytes = good;
    bytes[0] = 'X';
    write_bytes(cache_path(), bytes);
    expect_error(load_cache, AXL_ERR_FORMAT, "not an axl model cache");

    write_bytes(cache_path(), {});
    expect_error(load_cache, AXL_ERR_FORMAT, "not an axl model cache");
    expect_error([&] { load_model_cache(test_context(), (dir_ / "absent.axlc").string(), {}); },
                 AXL_ERR_NOT_FOUND, "absent.axlc");
}

TEST_F(ModelCacheTest, AQuantConfigThatContradictsTheCacheFails) {
    save_model_cache(*load(dir_.path(), quant_config(AXL_QUANT_NF4)), cache_path().string());
    LoadOptions options;
    options.quant = quant_config(AXL_QUANT_INT4_GROUP);
    expect_error([&] { load_model_cache(test_context(), cache_path().string(), options); },
                 AXL_ERR_INVALID_ARGUMENT, "holds weights quantized as nf4");
    options.quant = quant_config(AXL_QUANT_NF4, 128);
    expect_error([&] { load_model_cache(test_context(), cache_path().string(), options); },
                 AXL_ERR_INVALID_ARGUMENT, "stored in blocks of 64");
    options.quant = quant_config(AXL_QUANT_NF4);
    EXPECT_NO_THROW(load_model_cache(test_context(), cache_path().string(), options));
}

TEST_F(ModelCacheTest, AFailedSaveLeavesNoFile) {
    const auto model = load(dir_.path(), quant_config(AXL_QUANT_NF4));
    const std::filesystem::path target = dir_ / "missing_dir" / "model.axlc";
    expect_error([&] { save_model_cache(*model, target.string()); }, AXL_ERR_IO, "model.axlc");
    EXPECT_FALSE(std::filesystem::exists(target));
    // Over an existing cache, a save that fails part way leaves the old file as it was.
    save_model_cache(*model, cache_path().string());
    const std::vector<char> before = read_bytes(cache_path());
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    if (::access(dir_.path().c_str(), W_OK) != 0) {
        expect_error([&] { save_model_cache(*model, cache_path().string()); }, AXL_ERR_IO, "model.axlc");
    }
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::owner_all);
    EXPECT_EQ(read_bytes(cache_path()), before);
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path()))
        EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace axl
