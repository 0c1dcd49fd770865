#include "model/checkpoint_quant.hpp"

#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "quant/double_quant.hpp"
#include "quant/nf4_fp4.hpp"
#include "quant/quantize.hpp"

namespace axl {

namespace {

using Json = nlohmann::json;

constexpr const char* kBnbQuantStatePrefix = ".quant_state.bitsandbytes__";

std::vector<std::string> string_list(const Json& config, const char* key, const std::string& source) {
    std::vector<std::string> out;
    if (!config.contains(key) || config[key].is_null()) return out;
    require(config[key].is_array(), AXL_ERR_FORMAT, source, ": quantization_config.", key,
            " must be a list of module names");
    for (const Json& item : config[key]) {
        require(item.is_string(), AXL_ERR_FORMAT, source, ": quantization_config.", key,
                " must be a list of module names");
        out.push_back(item.get<std::string>());
    }
    return out;
}

bool flag(const Json& config, const char* key) {
    return config.contains(key) && config[key].is_boolean() && config[key].get<bool>();
}

const TensorInfo& quant_state_tensor(const Checkpoint& checkpoint, const std::string& name,
                                     const std::string& weight, const char* what) {
    const TensorInfo* info = checkpoint.find(name);
    require(info != nullptr, AXL_ERR_NOT_FOUND, "quant-state tensor '", name, "' (", what,
            " of the quantized weight '", weight, "') is missing from the checkpoint");
    return *info;
}

void require_dtype(const TensorInfo& info, DType dtype, const char* what) {
    require(info.dtype == dtype, AXL_ERR_FORMAT, "tensor '", info.name, "' (", what, ") has dtype ",
            dtype_name(info.dtype), ", expected ", dtype_name(dtype));
}

void require_count(const TensorInfo& info, int64_t expected, const char* what) {
    const int64_t count = shape_numel(info.shape);
    require(count == expected, AXL_ERR_SHAPE, "tensor '", info.name, "' (", what, ") has ", count,
            " elements (shape ", shape_string(info.shape), "), expected ", expected);
}

template <typename T>
QuantArray<T> copy_array(const TensorInfo& info) {
    std::vector<T> values(info.nbytes / sizeof(T));
    std::memcpy(values.data(), info.data, values.size() * sizeof(T));
    return QuantArray<T>(std::move(values));
}

// A float tensor of any float dtype as f32 values.
QuantArray<float> float_array(const TensorInfo& info, const char* what) {
    require(info.dtype == DType::F32 || info.dtype == DType::BF16 || info.dtype == DType::F16,
            AXL_ERR_FORMAT, "tensor '", info.name, "' (", what, ") has dtype ",
            dtype_name(info.dtype), ", expected a float dtype");
    std::vector<float> values(static_cast<size_t>(shape_numel(info.shape)));
    if (info.dtype == DType::F32) {
        std::memcpy(values.data(), info.data, info.nbytes);
    } else {
        std::vector<uint16_t> raw(values.size());
        std::memcpy(raw.data(), info.data, info.nbytes);
        convert_to_f32(raw.data(), info.dtype, values.data(), values.size());
    }
    return QuantArray<float>(std::move(values));
}

DType torch_dtype_named(const std::string& name, const std::string& where) {
    if (name == "float32") return DType::F32;
    if (name == "bfloat16") return DType::BF16;
    if (name == "float16") return DType::F16;
    fail(AXL_ERR_FORMAT, where, ": dtype '", name, "' is not float32, bfloat16 or float16");
}

Json parse_bnb_quant_state(const TensorInfo& info) {
    require_dtype(info, DType::U8, "bitsandbytes quant state");
    const auto* bytes = static_cast<const char*>(info.data);
    try {
        Json state = Json::parse(bytes, bytes + info.nbytes);
        require(state.is_object(), AXL_ERR_FORMAT, "tensor '", info.name,
                "' (bitsandbytes quant state) is not a JSON object");
        return state;
    } catch (const Json::exception& e) {
        fail(AXL_ERR_FORMAT, "tensor '", info.name, "' (bitsandbytes quant state) is not valid JSON: ",
             e.what());
    }
}

template <typename T>
T state_field(const Json& state, const char* key, const TensorInfo& info) {
    require(state.contains(key), AXL_ERR_FORMAT, "tensor '", info.name,
            "' (bitsandbytes quant state) has no '", key, "'");
    try {
        return state[key].get<T>();
    } catch (const Json::exception&) {
        fail(AXL_ERR_FORMAT, "tensor '", info.name, "' (bitsandbytes quant state): '", key,
             "' has the wrong type");
    }
}

QuantizedTensor read_bnb_4bit(const Checkpoint& checkpoint, const CheckpointQuant& quant,
                              const TensorInfo& weight, int64_t rows, int64_t cols) {
    const std::string& name = weight.name;
    const TensorInfo* state_info = nullptr;
    QuantFormat format = QuantFormat::NF4;
    for (QuantFormat candidate : {QuantFormat::NF4, QuantFormat::FP4}) {
        const TensorInfo* found =
            checkpoint.find(name + kBnbQuantStatePrefix + quant_format_name(candidate));
        if (found != nullptr) {
            state_info = found;
            format = candidate;
        }
    }
    require(state_info != nullptr, AXL_ERR_NOT_FOUND, "quant-state tensor '", name,
            kBnbQuantStatePrefix, quant_format_name(static_cast<QuantFormat>(quant.format)),
            "' (the quant state of the bitsandbytes 4-bit weight '", name,
            "') is missing from the checkpoint");
    require(static_cast<int32_t>(format) == quant.format, AXL_ERR_FORMAT, "tensor '", name,
            "' is bitsandbytes ", quant_format_name(format), " but config.json says ",
            quant.description);
    const Json state = parse_bnb_quant_state(*state_info);
    require(state_field<std::string>(state, "quant_type", *state_info) == quant_format_name(format),
            AXL_ERR_FORMAT, "tensor '", state_info->name, "' names quant_type '",
            state_field<std::string>(state, "quant_type", *state_info), "'");
    const auto shape = state_field<std::vector<int64_t>>(state, "shape", *state_info);
    require(shape == std::vector<int64_t>{rows, cols}, AXL_ERR_SHAPE, "tensor '", state_info->name,
            "' gives the weight shape ", shape_string(shape), " but the config implies [", rows,
            ", ", cols, "]");

    QuantizedTensor q;
    q.format = format;
    q.rows = rows;
    q.cols = cols;
    q.block_size = state_field<int64_t>(state, "blocksize", *state_info);
    q.weight_dtype = torch_dtype_named(state_field<std::string>(state, "dtype", *state_info),
                                       "tensor '" + state_info->name + "'");
    validate_quant_shape(format, rows, cols, q.block_size, false);

    require_dtype(weight, DType::U8, "packed 4-bit codes");
    require_count(weight, packed_size_bytes(format, rows, cols), "packed 4-bit codes");
    q.packed = copy_array<uint8_t>(weight);

    const TensorInfo& quant_map = quant_state_tensor(checkpoint, name + ".quant_map", name, "code table");
    require_dtype(quant_map, DType::F32, "code table");
    require_count(quant_map, 16, "code table");
    require(std::memcmp(quant_map.data, bnb_4bit_code_table(format), 16 * sizeof(float)) == 0,
            AXL_ERR_FORMAT, "tensor '", quant_map.name, "' is not bitsandbytes' ",
            quant_format_name(format), " code table");

    const int64_t blocks = q.num_blocks();
    const TensorInfo& absmax = quant_state_tensor(checkpoint, name + ".absmax", name, "block absmax");
    const bool nested = state.contains("nested_absmax") || state.contains("nested_offset") ||
                        checkpoint.find(name + ".nested_absmax") != nullptr;
    if (!nested) {
        require_dtype(absmax, DType::F32, "block absmax");
        require_count(absmax, blocks, "block absmax");
        q.scales = copy_array<float>(absmax);
        return q;
    }
    require(state_field<int64_t>(state, "nested_blocksize", *state_info) == kDoubleQuantBlockSize,
            AXL_ERR_UNSUPPORTED, "tensor '", state_info->name, "': nested block size ",
            state_field<int64_t>(state, "nested_blocksize", *state_info), " (axl reads ",
            kDoubleQuantBlockSize, ", bitsandbytes' only one)");
    require(state_field<std::string>(state, "nested_dtype", *state_info) == "float32",
            AXL_ERR_UNSUPPORTED, "tensor '", state_info->name, "': nested dtype must be float32");
    DoubleQuantStats stats;
    stats.offset = static_cast<float>(state_field<double>(state, "nested_offset", *state_info));
    require_dtype(absmax, DType::U8, "double-quantized block absmax");
    require_count(absmax, blocks, "double-quantized block absmax");
    stats.codes = copy_array<uint8_t>(absmax);
    const TensorInfo& nested_absmax =
        quant_state_tensor(checkpoint, name + ".nested_absmax", name, "nested absmax");
    require_dtype(nested_absmax, DType::F32, "nested absmax");
    require_count(nested_absmax, (blocks + kDoubleQuantBlockSize - 1) / kDoubleQuantBlockSize,
                  "nested absmax");
    stats.absmax = copy_array<float>(nested_absmax);
    const TensorInfo& nested_map =
        quant_state_tensor(checkpoint, name + ".nested_quant_map", name, "nested code map");
    require_dtype(nested_map, DType::F32, "nested code map");
    require_count(nested_map, 256, "nested code map");
    stats.code_map = copy_array<float>(nested_map);
    q.double_quant = std::move(stats);
    return q;
}

QuantizedTensor read_bnb_8bit(const Checkpoint& checkpoint, const TensorInfo& weight,
                              const std::string& module, int64_t rows, int64_t cols) {
    require_dtype(weight, DType::I8, "int8 codes");
    require(weight.shape == Shape{rows, cols}, AXL_ERR_SHAPE, "tensor '", weight.name, "' has shape ",
            shape_string(weight.shape), " but the config implies [", rows, ", ", cols, "]");
    if (const TensorInfo* layout = checkpoint.find(module + ".weight_format")) {
        require(layout->nbytes == 1 && static_cast<const uint8_t*>(layout->data)[0] == 0,
                AXL_ERR_UNSUPPORTED, "tensor '", layout->name,
                "' names a bitsandbytes int8 layout other than row-major (format 0)");
    }
    QuantizedTensor q;
    q.format = QuantFormat::Int8Row;
    q.rows = rows;
    q.cols = cols;
    q.block_size = cols;
    q.weight_dtype = DType::F16;
    q.packed = copy_array<uint8_t>(weight);
    const TensorInfo& scb = quant_state_tensor(checkpoint, module + ".SCB", weight.name, "row absmax SCB");
    require_dtype(scb, DType::F32, "row absmax SCB");
    require_count(scb, rows, "row absmax SCB");
    q.scales = copy_array<float>(scb);
    return q;
}

QuantizedTensor read_fp8(const Checkpoint& checkpoint, const CheckpointQuant& quant,
                         const TensorInfo& weight, int64_t rows, int64_t cols) {
    require_dtype(weight, DType::F8_E4M3, "fp8 e4m3 codes");
    require(weight.shape == Shape{rows, cols}, AXL_ERR_SHAPE, "tensor '", weight.name, "' has shape ",
            shape_string(weight.shape), " but the config implies [", rows, ", ", cols, "]");
    QuantizedTensor q;
    q.format = QuantFormat::Fp8E4M3;
    q.rows = rows;
    q.cols = cols;
    q.weight_dtype = DType::BF16;
    q.packed = copy_array<uint8_t>(weight);
    const TensorInfo& scale = quant_state_tensor(checkpoint, weight.name + "_scale_inv", weight.name,
                                                 "fp8 scale");
    if (quant.fp8_block_rows == 0) {
        // One scale for the whole tensor: the same scale on every row is the same dequantization.
        require_count(scale, 1, "fp8 per-tensor scale");
        const float value = float_array(scale, "fp8 per-tensor scale")[0];
        q.block_size = cols;
        q.scales = std::vector<float>(static_cast<size_t>(rows), value);
        return q;
    }
    q.block_rows = quant.fp8_block_rows;
    q.block_size = quant.fp8_block_cols;
    const Shape tiles{(rows + q.block_rows - 1) / q.block_rows, (cols + q.block_size - 1) / q.block_size};
    require(scale.shape == tiles, AXL_ERR_SHAPE, "tensor '", scale.name, "' (fp8 tile scales) has shape ",
            shape_string(scale.shape), ", expected ", shape_string(tiles), " for [", rows, ", ", cols,
            "] in tiles of [", q.block_rows, ", ", q.block_size, "]");
    q.scales = float_array(scale, "fp8 tile scales");
    return q;
}

}  // namespace

CheckpointQuant parse_checkpoint_quant(const std::string& config_json, const std::string& source) {
    CheckpointQuant quant;
    Json root;
    try {
        root = Json::parse(config_json);
    } catch (const Json::exception& e) {
        fail(AXL_ERR_FORMAT, source, ": not valid JSON: ", e.what());
    }
    if (!root.is_object() || !root.contains("quantization_config") || root["quantization_config"].is_null())
        return quant;
    const Json& config = root["quantization_config"];
    require(config.is_object(), AXL_ERR_FORMAT, source, ": quantization_config must be an object");
    require(config.contains("quant_method") && config["quant_method"].is_string(), AXL_ERR_FORMAT,
            source, ": quantization_config has no quant_method");
    const std::string method = config["quant_method"].get<std::string>();

    if (method == "bitsandbytes") {
        const bool four_bit = flag(config, "load_in_4bit") || flag(config, "_load_in_4bit");
        const bool eight_bit = flag(config, "load_in_8bit") || flag(config, "_load_in_8bit");
        require(four_bit != eight_bit, AXL_ERR_FORMAT, source,
                ": bitsandbytes quantization_config must set exactly one of load_in_4bit and load_in_8bit");
        quant.skip_modules = string_list(config, "llm_int8_skip_modules", source);
        if (eight_bit) {
            quant.method = CheckpointQuantMethod::Bnb8Bit;
            quant.format = AXL_QUANT_INT8_ROW;
            quant.description = "bitsandbytes int8 (LLM.int8 row-wise)";
            return quant;
        }
        quant.method = CheckpointQuantMethod::Bnb4Bit;
        // transformers' BitsAndBytesConfig defaults to fp4.
        const std::string type = config.value("bnb_4bit_quant_type", std::string("fp4"));
        require(type == "nf4" || type == "fp4", AXL_ERR_UNSUPPORTED, source,
                ": bitsandbytes 4-bit quant type '", type, "' (axl reads nf4 and fp4)");
        quant.format = type == "nf4" ? AXL_QUANT_NF4 : AXL_QUANT_FP4;
        quant.double_quant = flag(config, "bnb_4bit_use_double_quant");
        quant.description = "bitsandbytes " + type + (quant.double_quant ? " with double quant" : "");
        return quant;
    }
    if (method == "fp8") {
        quant.method = CheckpointQuantMethod::Fp8;
        quant.format = AXL_QUANT_FP8_E4M3;
        quant.skip_modules = string_list(config, "modules_to_not_convert", source);
        const std::string scale_format = config.value("scale_fmt", std::string("float"));
        require(scale_format == "float", AXL_ERR_UNSUPPORTED, source, ": fp8 scale_fmt '",
                scale_format, "' (axl reads f32 scales)");
        if (config.contains("weight_block_size") && !config["weight_block_size"].is_null()) {
            const Json& block = config["weight_block_size"];
            require(block.is_array() && block.size() == 2 && block[0].is_number_integer() &&
                        block[1].is_number_integer() && block[0].get<int64_t>() > 0 &&
                        block[1].get<int64_t>() > 0,
                    AXL_ERR_FORMAT, source, ": fp8 weight_block_size must be two positive integers");
            quant.fp8_block_rows = block[0].get<int64_t>();
            quant.fp8_block_cols = block[1].get<int64_t>();
            quant.description = cat("fine-grained fp8 e4m3 (tiles ", quant.fp8_block_rows, "x",
                                    quant.fp8_block_cols, ")");
        } else {
            quant.description = "fp8 e4m3 (one scale per tensor)";
        }
        return quant;
    }
    if (method == "mxfp4") {
        quant.method = CheckpointQuantMethod::Mxfp4;
        quant.format = AXL_QUANT_MXFP4;
        quant.skip_modules = string_list(config, "modules_to_not_convert", source);
        quant.description = "mxfp4 (MoE experts)";
        return quant;
    }
    fail(AXL_ERR_UNSUPPORTED, source, ": the checkpoint is quantized with '", method,
         "'; axl reads bitsandbytes (4-bit, 8-bit), fp8 and mxfp4 checkpoints, or quantizes a "
         "float checkpoint itself");
}

ModelQuantConfig reconcile_quant_config(const ModelQuantConfig& requested, const CheckpointQuant& checkpoint) {
    if (checkpoint.method == CheckpointQuantMethod::None) return requested;
    if (requested.quantizes()) {
        QuantFormat wanted = quant_format_of(requested);
        require(requested.format == checkpoint.format, AXL_ERR_INVALID_ARGUMENT,
                "the checkpoint is already quantized (", checkpoint.description,
                ", config.json quantization_config) but the quant config asks for ",
                quant_format_name(wanted), "; ask for ",
                quant_format_name(static_cast<QuantFormat>(checkpoint.format)),
                " or AXL_QUANT_NONE to load it as it is");
        require(!requested.double_quant || checkpoint.double_quant, AXL_ERR_INVALID_ARGUMENT,
                "the quant config asks for double quantization but the checkpoint (",
                checkpoint.description, ") was saved without it");
    }
    ModelQuantConfig effective;
    effective.format = checkpoint.format;
    effective.block_size = requested.block_size;
    effective.double_quant = checkpoint.double_quant;
    effective.skip_modules = checkpoint.skip_modules;
    effective.skip_modules.insert(effective.skip_modules.end(), requested.skip_modules.begin(),
                                  requested.skip_modules.end());
    return effective;
}

std::optional<QuantizedTensor> read_quantized_linear(const Checkpoint& checkpoint,
                                                     const CheckpointQuant& quant,
                                                     const std::string& module, int64_t rows,
                                                     int64_t cols) {
    const TensorInfo& weight = checkpoint.get(module + ".weight");
    const bool float_weight =
        weight.dtype == DType::F32 || weight.dtype == DType::BF16 || weight.dtype == DType::F16;
    switch (quant.method) {
        case CheckpointQuantMethod::None:
        case CheckpointQuantMethod::Mxfp4: return std::nullopt;
        case CheckpointQuantMethod::Bnb4Bit:
            if (float_weight) return std::nullopt;
            return read_bnb_4bit(checkpoint, quant, weight, rows, cols);
        case CheckpointQuantMethod::Bnb8Bit:
            if (float_weight) return std::nullopt;
            return read_bnb_8bit(checkpoint, weight, module, rows, cols);
        case CheckpointQuantMethod::Fp8:
            if (float_weight) return std::nullopt;
            return read_fp8(checkpoint, quant, weight, rows, cols);
    }
    return std::nullopt;
}

QuantizedTensor read_mxfp4_experts(const Checkpoint& checkpoint, const std::string& prefix) {
    const TensorInfo& blocks = checkpoint.get(prefix + "_blocks");
    require_dtype(blocks, DType::U8, "mxfp4 expert blocks");
    require(blocks.shape.size() == 4 && blocks.shape[3] == 16, AXL_ERR_SHAPE, "tensor '", blocks.name,
            "' (mxfp4 expert blocks) has shape ", shape_string(blocks.shape),
            ", expected [experts, out, in / 32, 16]");
    const int64_t experts = blocks.shape[0], out = blocks.shape[1], groups = blocks.shape[2];
    const TensorInfo& scales =
        quant_state_tensor(checkpoint, prefix + "_scales", blocks.name, "mxfp4 block scales");
    require_dtype(scales, DType::U8, "mxfp4 block scales");
    require(scales.shape == Shape{experts, out, groups}, AXL_ERR_SHAPE, "tensor '", scales.name,
            "' (mxfp4 block scales) has shape ", shape_string(scales.shape), ", expected [", experts,
            ", ", out, ", ", groups, "]");
    QuantizedTensor q;
    q.format = QuantFormat::MXFP4;
    q.rows = experts * out;
    q.cols = groups * kMxfp4BlockSize;
    q.block_size = kMxfp4BlockSize;
    q.weight_dtype = DType::BF16;
    validate_quant_shape(q.format, q.rows, q.cols, q.block_size, true);
    q.packed = copy_array<uint8_t>(blocks);
    q.scale_codes = copy_array<uint8_t>(scales);
    return q;
}

}  // namespace axl
