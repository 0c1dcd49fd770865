// Merging an adapter into its base and exporting the result as a full-precision Hugging Face
// model (axl_lora_merge_and_export).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.hpp"
#include "lora/lora.hpp"

namespace axl {

// transformers' default max_shard_size ("5GB").
constexpr uint64_t kExportShardBytes = 5'000'000'000ull;

// The merged f32 weight [out, in] of `linear`: its dequantized (or converted) base weight plus
// the adapter's update, W + s B A, or with DoRA m / ||W + s B A||_row * (W + s B A) (PEFT's merge).
// Without a module of `adapter` on this linear, the base weight alone.
Tensor merged_linear_weight(const LoraAdapter& adapter, const Linear& linear);

// Writes config.json and bf16 safetensors (sharded past `shard_bytes`) of the merged model into
// `dir`. Tensors are produced one at a time; each file is written atomically and config.json
// last, so a directory without config.json is an export that did not finish.
void merge_and_export(const LoraAdapter& adapter, const std::string& dir,
                      uint64_t shard_bytes = kExportShardBytes);

}  // namespace axl
