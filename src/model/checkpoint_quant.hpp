// Checkpoints that are already quantized, as transformers saves them: the method named by
// config.json's quantization_config, and the quantized linears read back into QuantizedTensor
// with every quant-state tensor checked (present, dtype, size) before it is used.
//   bitsandbytes 4-bit  <m>.weight U8 [rows*cols/2, 1] + .absmax, .quant_map, (.nested_absmax,
//                       .nested_quant_map) and .quant_state.bitsandbytes__{nf4,fp4} (JSON bytes)
//   bitsandbytes 8-bit  <m>.weight I8 [rows, cols] + <m>.SCB F32 [rows] (+ .weight_format = 0)
//   fine-grained FP8    <m>.weight F8_E4M3 [rows, cols] + .weight_scale_inv F32 (tiles, or one)
//   MXFP4 (gpt-oss)     <experts>.<proj>_blocks U8 [E, N, K/32, 16] + _scales U8 [E, N, K/32]
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "model/model_quant.hpp"
#include "quant/quantized_tensor.hpp"

namespace axl {

enum class CheckpointQuantMethod { None, Bnb4Bit, Bnb8Bit, Fp8, Mxfp4 };

struct CheckpointQuant {
    CheckpointQuantMethod method = CheckpointQuantMethod::None;
    int32_t format = AXL_QUANT_NONE;   // the AXL_QUANT_* its quantized linears are stored in
    bool double_quant = false;         // bitsandbytes 4-bit with compress_statistics
    int64_t fp8_block_rows = 0;        // fine-grained FP8 weight_block_size; 0: per tensor
    int64_t fp8_block_cols = 0;
    std::vector<std::string> skip_modules;  // llm_int8_skip_modules / modules_to_not_convert
    std::string description;                // "bitsandbytes nf4 with double quant"
};

// Reads config.json's quantization_config (absent: method None). A quant_method axl cannot
// read (gptq, awq, ...): Error(AXL_ERR_UNSUPPORTED) naming it; malformed: AXL_ERR_FORMAT.
CheckpointQuant parse_checkpoint_quant(const std::string& config_json, const std::string& source);

// The settings a model loaded from this checkpoint ends up with. A requested format (not NONE)
// that differs from the checkpoint's, double quantization requested of a checkpoint without it,
// or a skip module naming a linear the checkpoint holds quantized: Error(AXL_ERR_INVALID_ARGUMENT)
// naming both sides. The requested block size is checked per tensor (check_requested_block_size).
ModelQuantConfig reconcile_quant_config(const ModelQuantConfig& requested, const CheckpointQuant& checkpoint);

// The linear `module` ([rows, cols]) as the checkpoint stores it quantized, or nothing when the
// checkpoint holds it in a float dtype. A quant-state tensor missing: Error(AXL_ERR_NOT_FOUND);
// of the wrong size or shape: AXL_ERR_SHAPE; of the wrong dtype or contents: AXL_ERR_FORMAT.
// Each names the tensor.
std::optional<QuantizedTensor> read_quantized_linear(const Checkpoint& checkpoint,
                                                     const CheckpointQuant& quant,
                                                     const std::string& module, int64_t rows,
                                                     int64_t cols);

// A gpt-oss MoE expert projection (`<prefix>_blocks`, `<prefix>_scales`, e.g.
// "model.layers.0.mlp.experts.gate_up_proj") as one MXFP4 [E*N, K] weight: E experts of
// [N, K] in the [out, in] order the blocks are stored in.
QuantizedTensor read_mxfp4_experts(const Checkpoint& checkpoint, const std::string& prefix);

}  // namespace axl
