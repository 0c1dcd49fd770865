// Checkpoints saved already quantized, in transformers' key layout: bitsandbytes 4-bit (with its
// quant-state tensors) and 8-bit, fine-grained fp8 (tile scales), gpt-oss MXFP4 experts. The
// files are written here from axl's own quantize() (bnb_model_oracle.py checks the layout
// against files transformers writes); each bad quant state must fail naming the tensor.
#include "model/checkpoint_quant.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "lora/lora_linear.hpp"
#include "quant/minifloat.hpp"
#include "quant/nf4_fp4.hpp"
#include "quant/quantize.hpp"
#include "quant_model_support.hpp"

namespace axl {
namespace {

using namespace quant_model_test;
using Json = nlohmann::json;

// A tensor with its own bytes, for writing test checkpoints.
struct OwnedTensor {
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
};
using TensorMap = std::map<std::string, OwnedTensor>;

template <typename T>
OwnedTensor owned(DType dtype, Shape shape, const T* data, size_t count) {
    OwnedTensor t{dtype, std::move(shape), std::vector<uint8_t>(count * sizeof(T))};
    std::memcpy(t.bytes.data(), data, t.bytes.size());
    return t;
}
template <typename T>
OwnedTensor owned(DType dtype, Shape shape, std::span<const T> values) {
    return owned(dtype, std::move(shape), values.data(), values.size());
}

// Turns a plain checkpoint into a quantized one: `quantize_linear` replaces each decoder
// linear's weight by the tensors it returns; `edit` may then break the result.
class QuantizedCheckpoint {
public:
    using LinearWriter = std::function<void(const std::string& module, const Tensor& weight, TensorMap& out)>;

    QuantizedCheckpoint(const std::filesystem::path& plain, const std::filesystem::path& out, Json quantization,
                        const LinearWriter& quantize_linear) {
        Checkpoint checkpoint(plain.string());
        Json config = Json::parse(read_text_file((plain / "config.json").string()));
        config["quantization_config"] = std::move(quantization);
        config_ = config.dump(2);
        auto allocator = std::make_shared<HostAllocator>(nullptr);
        for (const std::string& name : checkpoint.names()) {
            const TensorInfo& info = checkpoint.get(name);
            const bool decoder_linear = name.find("_proj.weight") != std::string::npos;
            if (!decoder_linear) {
                tensors_[name] = owned(info.dtype, info.shape, static_cast<const uint8_t*>(info.data), info.nbytes);
                continue;
            }
            const Tensor weight = read_as_f32(info, info.shape, allocator);
            quantize_linear(name.substr(0, name.size() - 7), weight, tensors_);
        }
        out_ = out;
    }

    TensorMap& tensors() { return tensors_; }

    void write() const {
        std::filesystem::create_directories(out_);
        write_file_atomic((out_ / "config.json").string(), config_);
        std::vector<NamedTensor> named;
        for (const auto& [name, t] : tensors_) named.push_back({name, t.dtype, t.shape, t.bytes.data()});
        write_safetensors((out_ / "model.safetensors").string(), named, {{"format", "pt"}});
    }

private:
    std::string config_;
    TensorMap tensors_;
    std::filesystem::path out_;
};

QuantizedTensor quantize_weight(const Tensor& weight, QuantFormat format, bool double_quant = false) {
    QuantConfig config;
    config.format = format;
    config.double_quant = double_quant;
    return quantize(weight.f32(), weight.dim(0), weight.dim(1), config);
}

// bitsandbytes 4-bit as transformers saves Linear4bit (QuantState.as_dict(packed=True)).
void write_bnb_4bit(const std::string& module, const Tensor& weight, TensorMap& out, QuantFormat format,
                    bool double_quant) {
    const QuantizedTensor q = quantize_weight(weight, format, double_quant);
    const std::string w = module + ".weight";
    out[w] = owned<uint8_t>(DType::U8, {static_cast<int64_t>(q.packed.size()), 1}, q.packed);
    out[w + ".quant_map"] = owned(DType::F32, {16}, bnb_4bit_code_table(format), 16);
    Json state = {{"quant_type", quant_format_name(format)},
                  {"blocksize", q.block_size},
                  {"dtype", "float32"},
                  {"shape", {q.rows, q.cols}}};
    if (q.double_quant) {
        const DoubleQuantStats& dq = *q.double_quant;
        out[w + ".absmax"] = owned<uint8_t>(DType::U8, {static_cast<int64_t>(dq.codes.size())}, dq.codes);
        out[w + ".nested_absmax"] = owned<float>(DType::F32, {static_cast<int64_t>(dq.absmax.size())}, dq.absmax);
        out[w + ".nested_quant_map"] = owned<float>(DType::F32, {256}, dq.code_map);
        state["nested_blocksize"] = 256;
        state["nested_dtype"] = "float32";
        state["nested_offset"] = static_cast<double>(dq.offset);
    } else {
        out[w + ".absmax"] = owned<float>(DType::F32, {static_cast<int64_t>(q.scales.size())}, q.scales);
    }
    const std::string text = state.dump();
    out[w + ".quant_state.bitsandbytes__" + quant_format_name(format)] =
        owned(DType::U8, {static_cast<int64_t>(text.size())}, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

Json bnb_4bit_config(const char* type, bool double_quant) {
    return {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"load_in_8bit", false},
            {"bnb_4bit_quant_type", type}, {"bnb_4bit_use_double_quant", double_quant},
            {"llm_int8_skip_modules", nullptr}};
}

class CheckpointQuantTest : public ::testing::Test {
protected:
    void SetUp() override { axl_test::write_tiny_checkpoint(plain_.path(), tiny_options()); }

    QuantizedCheckpoint bnb_nf4() {
        return QuantizedCheckpoint(plain_.path(), quantized_.path(), bnb_4bit_config("nf4", true),
                                   [](const std::string& m, const Tensor& w, TensorMap& out) {
                                       write_bnb_4bit(m, w, out, QuantFormat::NF4, true);
                                   });
    }

    axl_test::TempDir plain_{"ckpt_plain"};
    axl_test::TempDir quantized_{"ckpt_quantized"};
};

TEST_F(CheckpointQuantTest, Bnb4BitLoadsAsQuantizeOnLoadOfThePlainCheckpoint) {
    for (bool double_quant : {false, true}) {
        for (QuantFormat format : {QuantFormat::NF4, QuantFormat::FP4}) {
            SCOPED_TRACE(cat(quant_format_name(format), double_quant ? " + double quant" : ""));
            QuantizedCheckpoint(plain_.path(), quantized_.path(),
                                bnb_4bit_config(quant_format_name(format), double_quant),
                                [&](const std::string& m, const Tensor& w, TensorMap& out) {
                                    write_bnb_4bit(m, w, out, format, double_quant);
                                })
                .write();
            const auto loaded = load(quantized_.path());
            const auto reference =
                load(plain_.path(), quant_config(static_cast<int32_t>(format), 0, double_quant));
            EXPECT_EQ(loaded->quant.format, static_cast<int32_t>(format));
            EXPECT_EQ(loaded->quant.double_quant, double_quant);
            for (const Linear* linear : loaded->decoder_linears()) ASSERT_TRUE(linear->is_quantized());
            EXPECT_EQ(loaded->weight_bytes_by_format[static_cast<int>(format)],
                      reference->weight_bytes_by_format[static_cast<int>(format)]);
            const std::vector<float> got = logits_of(*loaded), want = logits_of(*reference);
            EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
        }
    }
}

TEST_F(CheckpointQuantTest, Bnb4BitWithTheSameFormatRequestedLoadsAndAContradictionFails) {
    bnb_nf4().write();
    EXPECT_NO_THROW(load(quantized_.path(), quant_config(AXL_QUANT_NF4, 64, true)));
    expect_error([&] { load(quantized_.path(), quant_config(AXL_QUANT_INT4_GROUP)); },
                 AXL_ERR_INVALID_ARGUMENT, "already quantized (bitsandbytes nf4");
    expect_error([&] { load(quantized_.path(), quant_config(AXL_QUANT_NF4, 128)); },
                 AXL_ERR_INVALID_ARGUMENT, "stored in blocks of 64");
    ModelQuantConfig skip = quant_config(AXL_QUANT_NONE);
    skip.skip_modules = {"up_proj"};
    expect_error([&] { load(quantized_.path(), skip); }, AXL_ERR_INVALID_ARGUMENT,
                 "keeps 'model.layers.0.mlp.up_proj' in full precision");
}

TEST_F(CheckpointQuantTest, Bnb4BitMissingOrMisshapenQuantStateFailsNamingTheTensor) {
    const std::string w = "model.layers.0.self_attn.k_proj.weight";
    struct Case {
        const char* what;
        std::function<void(TensorMap&)> edit;
        axl_status code;
        std::string fragment;
    };
    const std::vector<Case> cases = {
        {"no quant state", [&](TensorMap& t) { t.erase(w + ".quant_state.bitsandbytes__nf4"); },
         AXL_ERR_NOT_FOUND, w + ".quant_state.bitsandbytes__nf4"},
        {"no absmax", [&](TensorMap& t) { t.erase(w + ".absmax"); }, AXL_ERR_NOT_FOUND, w + ".absmax"},
        {"no nested absmax", [&](TensorMap& t) { t.erase(w + ".nested_absmax"); }, AXL_ERR_NOT_FOUND,
         w + ".nested_absmax"},
        {"no code table", [&](TensorMap& t) { t.erase(w + ".quant_map"); }, AXL_ERR_NOT_FOUND, w + ".quant_map"},
        {"short absmax", [&](TensorMap& t) { auto& a = t[w + ".absmax"]; a.bytes.pop_back(); a.shape[0] -= 1; },
         AXL_ERR_SHAPE, w + ".absmax"},
        {"short codes", [&](TensorMap& t) { auto& a = t[w]; a.bytes.resize(a.bytes.size() - 2); a.shape[0] -= 2; },
         AXL_ERR_SHAPE, w},
        {"long nested map",
         [&](TensorMap& t) { auto& a = t[w + ".nested_quant_map"]; a.bytes.resize(a.bytes.size() + 4); a.shape[0] += 1; },
         AXL_ERR_SHAPE, w + ".nested_quant_map"},
        {"wrong code table", [&](TensorMap& t) { t[w + ".quant_map"].bytes[0] ^= 1; }, AXL_ERR_FORMAT,
         "code table"},
        {"state with another shape",
         [&](TensorMap& t) {
             auto& s = t[w + ".quant_state.bitsandbytes__nf4"];
             Json state = Json::parse(std::string(s.bytes.begin(), s.bytes.end()));
             state["shape"] = {32, 128};
             const std::string text = state.dump();
             s.bytes.assign(text.begin(), text.end());
             s.shape = {static_cast<int64_t>(text.size())};
         },
         AXL_ERR_SHAPE, w + ".quant_state.bitsandbytes__nf4"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        QuantizedCheckpoint checkpoint = bnb_nf4();
        c.edit(checkpoint.tensors());
        checkpoint.write();
        expect_error([&] { load(quantized_.path()); }, c.code, c.fragment);
    }
}

TEST_F(CheckpointQuantTest, Bnb8BitLoadsAsInt8RowQuantization) {
    auto write_int8 = [](const std::string& m, const Tensor& w, TensorMap& out) {
        const QuantizedTensor q = quantize_weight(w, QuantFormat::Int8Row);
        out[m + ".weight"] = owned<uint8_t>(DType::I8, {q.rows, q.cols}, q.packed);
        out[m + ".SCB"] = owned<float>(DType::F32, {q.rows}, q.scales);
        const uint8_t row_major = 0;
        out[m + ".weight_format"] = owned(DType::U8, {}, &row_major, 1);
    };
    const Json config = {{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}, {"load_in_4bit", false}};
    QuantizedCheckpoint(plain_.path(), quantized_.path(), config, write_int8).write();
    const auto loaded = load(quantized_.path());
    const auto reference = load(plain_.path(), quant_config(AXL_QUANT_INT8_ROW));
    const std::vector<float> got = logits_of(*loaded), want = logits_of(*reference);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);

    QuantizedCheckpoint broken(plain_.path(), quantized_.path(), config, write_int8);
    auto& scb = broken.tensors()["model.layers.1.mlp.down_proj.SCB"];
    scb.bytes.resize(scb.bytes.size() - 4);
    scb.shape[0] -= 1;
    broken.write();
    expect_error([&] { load(quantized_.path()); }, AXL_ERR_SHAPE, "model.layers.1.mlp.down_proj.SCB");
}

TEST_F(CheckpointQuantTest, Fp8WithTileScalesDequantizesPerTile) {
    constexpr int64_t kTileRows = 64, kTileCols = 96;  // edge tiles are partial in every weight
    auto write_fp8 = [](const std::string& m, const Tensor& w, TensorMap& out) {
        const int64_t rows = w.dim(0), cols = w.dim(1);
        const int64_t tile_rows = (rows + kTileRows - 1) / kTileRows, tile_cols = (cols + kTileCols - 1) / kTileCols;
        std::vector<float> scales(tile_rows * tile_cols, 0.0f);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
                float& s = scales[(r / kTileRows) * tile_cols + c / kTileCols];
                s = std::max(s, std::fabs(w.f32()[r * cols + c]) / kE4M3Max);
            }
        std::vector<uint8_t> codes(rows * cols);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c)
                codes[r * cols + c] = encode_e4m3(w.f32()[r * cols + c] / scales[(r / kTileRows) * tile_cols + c / kTileCols]);
        out[m + ".weight"] = owned<uint8_t>(DType::F8_E4M3, {rows, cols}, codes);
        out[m + ".weight_scale_inv"] = owned<float>(DType::F32, {tile_rows, tile_cols}, scales);
    };
    const Json config = {{"quant_method", "fp8"}, {"activation_scheme", "dynamic"},
                         {"weight_block_size", {kTileRows, kTileCols}}};
    QuantizedCheckpoint checkpoint(plain_.path(), quantized_.path(), config, write_fp8);
    checkpoint.write();
    const auto model = load(quantized_.path());
    EXPECT_EQ(model->quant.format, AXL_QUANT_FP8_E4M3);
    for (const Linear* linear : model->decoder_linears()) {
        ASSERT_TRUE(linear->is_quantized());
        const QuantizedTensor& q = *linear->quantized;
        const OwnedTensor& scales = checkpoint.tensors()[linear->name + ".weight_scale_inv"];
        const auto* scale = reinterpret_cast<const float*>(scales.bytes.data());
        const Tensor w = linear_weight_f32(*linear, model->context->host_allocator());
        for (int64_t r = 0; r < q.rows; ++r)
            for (int64_t c = 0; c < q.cols; ++c)
                ASSERT_EQ(w.f32()[r * q.cols + c],
                          decode_e4m3(q.packed[r * q.cols + c]) * scale[(r / kTileRows) * scales.shape[1] + c / kTileCols])
                    << linear->name << " [" << r << ", " << c << "]";
    }

    QuantizedCheckpoint broken(plain_.path(), quantized_.path(), config, write_fp8);
    broken.tensors().erase("model.layers.0.mlp.gate_proj.weight_scale_inv");
    broken.write();
    expect_error([&] { load(quantized_.path()); }, AXL_ERR_NOT_FOUND, "model.layers.0.mlp.gate_proj.weight_scale_inv");
}

TEST_F(CheckpointQuantTest, UnknownQuantMethodIsUnsupported) {
    QuantizedCheckpoint(plain_.path(), quantized_.path(), {{"quant_method", "gptq"}, {"bits", 4}},
                        [](const std::string& m, const Tensor& w, TensorMap& out) {
                            out[m + ".weight"] = owned<float>(DType::F32, w.shape(), w.f32(), w.numel());
                        })
        .write();
    expect_error([&] { load(quantized_.path()); }, AXL_ERR_UNSUPPORTED, "'gptq'");
}

TEST_F(CheckpointQuantTest, Mxfp4ExpertsReadAsGptOssStoresThem) {
    // Two experts of [64, 128] in gpt-oss' layout: blocks [E, N, K/32, 16], scales [E, N, K/32].
    constexpr int64_t kExperts = 2, kOut = 64, kIn = 128;
    std::vector<float> weight(kExperts * kOut * kIn);
    for (size_t i = 0; i < weight.size(); ++i) weight[i] = std::sin(0.37f * static_cast<float>(i)) * (1 + i % 7);
    QuantConfig config;
    config.format = QuantFormat::MXFP4;
    config.expert_tensor = true;
    const QuantizedTensor expected = quantize(weight.data(), kExperts * kOut, kIn, config);
    const std::string prefix = "model.layers.0.mlp.experts.gate_up_proj";
    std::vector<NamedTensor> tensors = {
        {prefix + "_blocks", DType::U8, {kExperts, kOut, kIn / 32, 16}, expected.packed.data()},
        {prefix + "_scales", DType::U8, {kExperts, kOut, kIn / 32}, expected.scale_codes.data()}};
    write_safetensors((quantized_.path() / "model.safetensors").string(), tensors, {});
    {
        Checkpoint checkpoint(quantized_.path().string());
        const QuantizedTensor q = read_mxfp4_experts(checkpoint, prefix);
        EXPECT_EQ(q.rows, kExperts * kOut);
        EXPECT_EQ(q.cols, kIn);
        EXPECT_EQ(q.packed, expected.packed);
        EXPECT_EQ(q.scale_codes, expected.scale_codes);
    }
    tensors[1].shape = {kExperts, kOut, kIn / 32 - 1};
    write_safetensors((quantized_.path() / "model.safetensors").string(), tensors, {});
    Checkpoint checkpoint(quantized_.path().string());
    expect_error([&] { read_mxfp4_experts(checkpoint, prefix); }, AXL_ERR_SHAPE, prefix + "_scales");
}

}  // namespace
}  // namespace axl
