// Compares every format with the reference library, from the file tests/oracle/quant_oracle.py
// writes (AXL_QUANT_ORACLE names it). Each case is checked both ways:
//   quantize: our packed codes and statistics equal the reference's bit for bit;
//   dequantize: our dequantization of the reference's stored data equals the reference's own.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "quant/double_quant.hpp"
#include "quant/nf4_fp4.hpp"
#include "quant/quantize.hpp"
#include "quant_test_support.hpp"

namespace axl {
namespace {

struct OracleCase {
    std::string name;
    nlohmann::json params;
};

const SafetensorsFile* oracle_file() {
    static std::unique_ptr<SafetensorsFile> file = [] {
        const char* path = std::getenv("AXL_QUANT_ORACLE");
        return path && *path ? std::make_unique<SafetensorsFile>(path) : nullptr;
    }();
    return file.get();
}

#define SKIP_WITHOUT_ORACLE()                                                                     \
    if (!oracle_file())                                                                           \
    GTEST_SKIP() << "AXL_QUANT_ORACLE is not set; run tests/oracle/quant_oracle.py --out FILE "  \
                    "with the oracle venv and point AXL_QUANT_ORACLE at FILE"

// The cases whose params.format is one of `formats`.
std::vector<OracleCase> cases(std::initializer_list<const char*> formats) {
    std::vector<OracleCase> found;
    for (const auto& [key, value] : oracle_file()->metadata()) {
        if (key.rfind("case:", 0) != 0) continue;
        OracleCase c{key.substr(5), nlohmann::json::parse(value)};
        for (const char* format : formats)
            if (c.params.at("format") == format) found.push_back(c);
    }
    EXPECT_FALSE(found.empty()) << "the oracle file has no case of these formats";
    return found;
}

const TensorInfo& tensor(const OracleCase& c, const std::string& key) {
    const TensorInfo* info = oracle_file()->find(c.name + "." + key);
    if (!info) throw std::runtime_error("oracle file lacks " + c.name + "." + key);
    return *info;
}

bool has_tensor(const OracleCase& c, const std::string& key) { return oracle_file()->find(c.name + "." + key); }

std::vector<float> floats(const TensorInfo& info) {
    EXPECT_EQ(info.dtype, DType::F32) << info.name;
    std::vector<float> values(info.nbytes / sizeof(float));
    std::memcpy(values.data(), info.data, info.nbytes);
    return values;
}

std::vector<uint8_t> bytes(const TensorInfo& info) {
    EXPECT_EQ(dtype_size(info.dtype), 1u) << info.name;
    const auto* data = static_cast<const uint8_t*>(info.data);
    return std::vector<uint8_t>(data, data + info.nbytes);
}

// Equal bit for bit (so -0 != +0, and NaN == NaN of the same payload).
::testing::AssertionResult bits_equal(std::span<const float> ours, std::span<const float> reference) {
    if (ours.size() != reference.size())
        return ::testing::AssertionFailure() << "sizes " << ours.size() << " vs " << reference.size();
    int64_t mismatches = 0, first = -1;
    for (size_t i = 0; i < ours.size(); ++i) {
        if (quant_test::float_bits(ours[i]) != quant_test::float_bits(reference[i])) {
            if (first < 0) first = static_cast<int64_t>(i);
            ++mismatches;
        }
    }
    if (mismatches == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << mismatches << " of " << ours.size() << " differ; first at " << first
                                         << ": ours " << ours[first] << " reference " << reference[first];
}

::testing::AssertionResult bytes_equal(std::span<const uint8_t> ours, std::span<const uint8_t> reference) {
    if (ours.size() != reference.size())
        return ::testing::AssertionFailure() << "sizes " << ours.size() << " vs " << reference.size();
    int64_t mismatches = 0, first = -1;
    for (size_t i = 0; i < ours.size(); ++i) {
        if (ours[i] != reference[i]) {
            if (first < 0) first = static_cast<int64_t>(i);
            ++mismatches;
        }
    }
    if (mismatches == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << mismatches << " of " << ours.size() << " bytes differ; first at "
                                         << first << ": ours " << int(ours[first]) << " reference "
                                         << int(reference[first]);
}

QuantFormat format_of(const OracleCase& c) {
    static const std::map<std::string, QuantFormat> kFormats = {
        {"nf4", QuantFormat::NF4},           {"fp4", QuantFormat::FP4},
        {"int8_row", QuantFormat::Int8Row},  {"int4_group", QuantFormat::Int4Group},
        {"int8_channel", QuantFormat::Int8Channel}, {"fp8_e4m3", QuantFormat::Fp8E4M3},
        {"nvfp4", QuantFormat::NVFP4},       {"mxfp4", QuantFormat::MXFP4}};
    return kFormats.at(c.params.at("format").get<std::string>());
}

QuantConfig config_of(const OracleCase& c) {
    QuantConfig config;
    config.format = format_of(c);
    config.block_size = c.params.at("block_size").get<int64_t>();
    config.double_quant = c.params.value("double_quant", false);
    config.expert_tensor = true;
    config.nvfp4_tensor_scale = c.params.value("tensor_scale", false);
    config.weight_dtype = c.params.at("weight_dtype") == "bf16" ? DType::BF16 : DType::F32;
    return config;
}

struct OracleInput {
    std::vector<float> values;
    int64_t rows = 0;
    int64_t cols = 0;
};

OracleInput input_of(const OracleCase& c) {
    const TensorInfo& info = tensor(c, "input");
    return {floats(info), info.shape.at(0), info.shape.at(1)};
}

// The reference's stored data as a QuantizedTensor, to dequantize it ourselves.
QuantizedTensor reference_tensor(const OracleCase& c) {
    const OracleInput in = input_of(c);
    const QuantConfig config = config_of(c);
    QuantizedTensor q;
    q.format = config.format;
    q.rows = in.rows;
    q.cols = in.cols;
    q.block_size = resolve_block_size(config.format, config.block_size, in.cols);
    q.weight_dtype = config.weight_dtype;
    q.packed = bytes(tensor(c, "packed"));
    if (has_tensor(c, "absmax")) q.scales = floats(tensor(c, "absmax"));
    if (has_tensor(c, "scales")) q.scales = floats(tensor(c, "scales"));
    if (has_tensor(c, "zeros")) q.zeros = floats(tensor(c, "zeros"));
    if (has_tensor(c, "scale_codes")) q.scale_codes = bytes(tensor(c, "scale_codes"));
    if (has_tensor(c, "tensor_scale")) q.tensor_scale = floats(tensor(c, "tensor_scale")).at(0);
    if (has_tensor(c, "dq_codes")) {
        DoubleQuantStats stats;
        stats.codes = bytes(tensor(c, "dq_codes"));
        stats.absmax = floats(tensor(c, "nested_absmax"));
        stats.code_map = floats(tensor(c, "nested_code"));
        stats.offset = floats(tensor(c, "offset")).at(0);
        q.double_quant = stats;
    }
    return q;
}

void expect_dequantize_matches(const OracleCase& c) {
    const QuantizedTensor q = reference_tensor(c);
    std::vector<float> ours(q.numel());
    dequantize(q, ours.data());
    EXPECT_TRUE(bits_equal(ours, floats(tensor(c, "dequant")))) << "dequantize";
}

// Quantizes the case's input and compares whatever statistics the reference stored.
void expect_quantize_matches(const OracleCase& c) {
    const OracleInput in = input_of(c);
    const QuantizedTensor ours = quantize(in.values.data(), in.rows, in.cols, config_of(c));
    EXPECT_TRUE(bytes_equal(ours.packed, bytes(tensor(c, "packed")))) << "packed codes";
    if (has_tensor(c, "absmax")) {
        EXPECT_TRUE(bits_equal(ours.scales, floats(tensor(c, "absmax")))) << "absmax";
    }
    if (has_tensor(c, "scales")) {
        EXPECT_TRUE(bits_equal(ours.scales, floats(tensor(c, "scales")))) << "scales";
    }
    if (has_tensor(c, "zeros")) {
        EXPECT_TRUE(bits_equal(ours.zeros, floats(tensor(c, "zeros")))) << "zeros";
    }
    if (has_tensor(c, "scale_codes")) {
        EXPECT_TRUE(bytes_equal(ours.scale_codes, bytes(tensor(c, "scale_codes")))) << "block scales";
    }
    if (has_tensor(c, "tensor_scale")) {
        ASSERT_TRUE(ours.tensor_scale.has_value());
        EXPECT_TRUE(bits_equal(std::vector<float>{*ours.tensor_scale}, floats(tensor(c, "tensor_scale")))) << "per-tensor scale";
    }
}

TEST(QuantOracle, Bnb4BitCodeTablesAreBitsandbytes) {
    SKIP_WITHOUT_ORACLE();
    for (const OracleCase& c : cases({"nf4", "fp4"})) {
        SCOPED_TRACE(c.name);
        const float* table = bnb_4bit_code_table(format_of(c));
        EXPECT_TRUE(bits_equal(std::vector<float>(table, table + 16), floats(tensor(c, "code"))));
    }
}

TEST(QuantOracle, Bnb4BitIsByteIdentical) {
    SKIP_WITHOUT_ORACLE();
    for (const OracleCase& c : cases({"nf4", "fp4"})) {
        SCOPED_TRACE(c.name);
        if (c.params.at("double_quant").get<bool>()) continue;  // next test
        expect_quantize_matches(c);
        expect_dequantize_matches(c);
    }
}

TEST(QuantOracle, Bnb4BitDoubleQuantIsByteIdentical) {
    SKIP_WITHOUT_ORACLE();
    for (const OracleCase& c : cases({"nf4", "fp4"})) {
        if (!c.params.at("double_quant").get<bool>()) continue;
        SCOPED_TRACE(c.name);
        const OracleInput in = input_of(c);
        QuantConfig single = config_of(c);
        single.double_quant = false;
        const QuantizedTensor first_level = quantize(in.values.data(), in.rows, in.cols, single);
        EXPECT_TRUE(bytes_equal(first_level.packed, bytes(tensor(c, "packed"))));

        // torch's f32 mean sums in a machine-dependent order; ours may differ in the last bit.
        const float reference_offset = floats(tensor(c, "offset")).at(0);
        const float our_offset = absmax_mean(first_level.scales);
        EXPECT_LE(std::fabs(our_offset - reference_offset), std::fabs(reference_offset) * 1.2e-7f)
            << "ours " << our_offset << " reference " << reference_offset;

        // Given the same offset, the 8-bit statistics are identical.
        const DoubleQuantStats stats = double_quantize_absmax(first_level.scales, reference_offset);
        EXPECT_TRUE(bytes_equal(stats.codes, bytes(tensor(c, "dq_codes")))) << "absmax codes";
        EXPECT_TRUE(bits_equal(stats.absmax, floats(tensor(c, "nested_absmax")))) << "nested absmax";
        EXPECT_TRUE(bits_equal(stats.code_map, floats(tensor(c, "nested_code")))) << "dynamic map";

        expect_dequantize_matches(c);
    }
}

TEST(QuantOracle, DynamicMapTiesMatchQuantizeBlockwise) {
    SKIP_WITHOUT_ORACLE();
    for (const OracleCase& c : cases({"dynamic_map"})) {
        SCOPED_TRACE(c.name);
        EXPECT_TRUE(bits_equal(dynamic_code_map(), floats(tensor(c, "code")))) << "dynamic map";
        const DoubleQuantStats stats = double_quantize_absmax(floats(tensor(c, "input")), 0.0f);
        EXPECT_TRUE(bytes_equal(stats.codes, bytes(tensor(c, "codes"))));
        EXPECT_TRUE(bits_equal(stats.absmax, floats(tensor(c, "absmax"))));
    }
}

TEST(QuantOracle, Int8RowIsByteIdentical) {
    SKIP_WITHOUT_ORACLE();
    for (const OracleCase& c : cases({"int8_row"})) {
        SCOPED_TRACE(c.name);
        expect_quantize_matches(c);
        expect_dequantize_matches(c);
    }
}

TEST(QuantOracle, TorchaoFormatsAreValueIdentical) {
    SKIP_WITHOUT_ORACLE();
    for (const OracleCase& c : cases({"int4_group", "int8_channel", "fp8_e4m3", "nvfp4", "mxfp4"})) {
        SCOPED_TRACE(c.name);
        expect_quantize_matches(c);
        expect_dequantize_matches(c);
    }
}

}  // namespace
}  // namespace axl
