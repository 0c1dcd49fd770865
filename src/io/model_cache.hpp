// The quantized-model cache: a loaded model written to one file (layout in model_cache.fbs) and
// mapped back with its weights used in place, so a model quantized once loads at disk speed.
#pragma once

#include <memory>
#include <string>

#include "core/context.hpp"
#include "model/model.hpp"

namespace axl {

// The preamble's layout version and the flatbuffer's schema_version this build writes and reads.
constexpr uint32_t kModelCacheLayoutVersion = 1;
constexpr uint32_t kModelCacheSchemaVersion = 1;

// Writes `model` to `path` atomically (temporary file + rename). Throws Error(AXL_ERR_IO).
void save_model_cache(const Model& model, const std::string& path);

// Maps the cache at `path` and builds the model from it; the model's tensors point into the
// mapping, which they keep alive. Every tensor's CRC-32C is verified first. Throws
// Error(AXL_ERR_NOT_FOUND / AXL_ERR_IO) for a file that cannot be opened, AXL_ERR_FORMAT naming
// the problem (and the tensor) for a corrupt or truncated file, AXL_ERR_UNSUPPORTED for another
// version, AXL_ERR_INVALID_ARGUMENT when options.quant contradicts the cache's quantization.
std::shared_ptr<Model> load_model_cache(const std::shared_ptr<Context>& context, const std::string& path,
                                        const LoadOptions& options);

}  // namespace axl
