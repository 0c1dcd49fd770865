// Shared pieces of the quantized-model unit tests: a tiny checkpoint whose linears every 4-bit
// format can take (rows of 128), loading it with a quant config, and logits of a model.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "api/tiny_checkpoint.hpp"
#include "core/context.hpp"
#include "core/error.hpp"
#include "lora/lora.hpp"
#include "model/model.hpp"
#include "train/batch.hpp"
#include "train/decoder_pass.hpp"
#include "unit/expect_error.hpp"
#include "unit/lora/tiny_model.hpp"

namespace axl::quant_model_test {

inline axl_test::TinyCheckpointOptions tiny_options() {
    axl_test::TinyCheckpointOptions o;
    o.vocab_size = 96;
    o.hidden_size = 128;
    o.intermediate_size = 256;
    o.num_layers = 2;
    o.num_heads = 4;
    o.num_kv_heads = 2;
    return o;
}

inline std::shared_ptr<Context> test_context() { return test::make_test_context(); }

inline ModelQuantConfig quant_config(int32_t format, int64_t block_size = 0, bool double_quant = false) {
    ModelQuantConfig config;
    config.format = format;
    config.block_size = block_size;
    config.double_quant = double_quant;
    return config;
}

inline std::shared_ptr<Model> load(const std::filesystem::path& dir, const ModelQuantConfig& quant = {},
                                   const std::shared_ptr<Context>& context = test_context()) {
    LoadOptions options;
    options.quant = quant;
    return load_model(context, dir.string(), options);
}

// Tokens of a 2 x 12 batch within the vocabulary.
inline std::vector<int32_t> test_tokens(int vocab) {
    std::vector<int32_t> tokens(24);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37 + 11) % vocab);
    return tokens;
}

// Logits of every position of the test batch.
inline std::vector<float> logits_of(const Model& model, const LoraAdapter* adapter = nullptr) {
    const std::vector<int32_t> tokens = test_tokens(model.config.vocab_size);
    axl_batch batch{};
    batch.struct_size = sizeof batch;
    batch.batch_size = 2;
    batch.seq_len = 12;
    batch.tokens = tokens.data();
    PreparedBatch prepared = prepare_batch(batch, model.config);
    std::vector<int64_t> positions(prepared.num_tokens());
    for (size_t i = 0; i < positions.size(); ++i) positions[i] = static_cast<int64_t>(i);
    std::vector<float> logits(positions.size() * model.config.vocab_size);
    forward_logits(model, adapter, prepared, positions, logits.data());
    return logits;
}

using test::expect_error;

}  // namespace axl::quant_model_test
