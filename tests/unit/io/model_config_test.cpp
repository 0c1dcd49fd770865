#include "model/model_config.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io_test_support.hpp"

namespace axl {
namespace {

using test::expect_error;
using Json = nlohmann::json;

// The shape of Llama-3.1-8B's config.json (transformers v4 layout).
Json llama31_config() {
    return Json::parse(R"({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "attention_bias": false, "mlp_bias": false,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": false, "torch_dtype": "bfloat16", "bos_token_id": 128000
    })");
}

// The shape of a minimal test config for a given architecture.
Json small_config(const char* model_type) {
    return Json{{"model_type", model_type},  {"vocab_size", 1000},       {"hidden_size", 64},
                {"intermediate_size", 128},  {"num_hidden_layers", 2},   {"num_attention_heads", 4}};
}

ModelConfig parse(const Json& config) { return parse_model_config(config.dump(), "config.json"); }

void expect_parse_error(const Json& config, axl_status code, const std::string& needle) {
    expect_error([&] { parse(config); }, code, needle);
}

TEST(ModelConfigTest, ParsesLlamaWithLlama3RopeScaling) {
    ModelConfig c = parse(llama31_config());
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.vocab_size, 128256);
    EXPECT_EQ(c.hidden_size, 4096);
    EXPECT_EQ(c.intermediate_size, 14336);
    EXPECT_EQ(c.num_layers, 32);
    EXPECT_EQ(c.num_heads, 32);
    EXPECT_EQ(c.num_kv_heads, 8);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.max_position_embeddings, 131072);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
    EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
    EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
    EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
    EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigTest, AppliesDefaultsForAbsentAndNullFields) {
    Json config = small_config("llama");
    config["num_key_value_heads"] = nullptr;
    config["rope_scaling"] = nullptr;
    ModelConfig c = parse(config);
    EXPECT_EQ(c.num_kv_heads, 4);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.max_position_embeddings, 4096);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
    EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
    EXPECT_EQ(c.rope.scaling, RopeScaling::None);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_EQ(c.torch_dtype, "");
}

TEST(ModelConfigTest, LlamaBiasesFollowAttentionBiasAndMlpBias) {
    Json config = small_config("llama");
    config["attention_bias"] = true;
    config["mlp_bias"] = true;
    ModelConfig c = parse(config);
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_TRUE(c.o_bias);
    EXPECT_TRUE(c.mlp_bias);
}

TEST(ModelConfigTest, ParsesLinearScalingWithLegacyTypeKey) {
    Json config = small_config("llama");
    config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    ModelConfig c = parse(config);
    EXPECT_EQ(c.rope.scaling, RopeScaling::Linear);
    EXPECT_DOUBLE_EQ(c.rope.factor, 2.0);
}

TEST(ModelConfigTest, ParsesMistral) {
    // Mistral-7B-v0.3: sliding_window null, explicit head_dim.
    Json config = Json::parse(R"({
        "model_type": "mistral", "vocab_size": 32768, "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
        "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16"
    })");
    ModelConfig c = parse(config);
    EXPECT_EQ(c.model_type, "mistral");
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
    EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);

    // transformers' Mistral attention has no biases whatever the config says.
    config["attention_bias"] = true;
    EXPECT_FALSE(parse(config).qkv_bias);

    // A window at least as long as the context never applies.
    config["sliding_window"] = 32768;
    EXPECT_NO_THROW(parse(config));
    config["sliding_window"] = 4096;
    expect_parse_error(config, AXL_ERR_UNSUPPORTED, "sliding-window attention is not supported yet");
}

TEST(ModelConfigTest, ParsesQwen2WithQkvBias) {
    // Qwen2.5-0.5B.
    Json config = Json::parse(R"({
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 32768,
        "max_window_layers": 21, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 32768, "use_sliding_window": false, "tie_word_embeddings": true,
        "torch_dtype": "bfloat16", "rope_scaling": null
    })");
    ModelConfig c = parse(config);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.num_kv_heads, 2);
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_FALSE(c.o_bias);
    EXPECT_FALSE(c.mlp_bias);
    EXPECT_FALSE(c.qk_norm);
    EXPECT_TRUE(c.tie_word_embeddings);

    config["use_sliding_window"] = true;
    expect_parse_error(config, AXL_ERR_UNSUPPORTED, "sliding-window");
}

TEST(ModelConfigTest, ParsesQwen3WithQkNormAndExplicitHeadDim) {
    // Qwen3-0.6B: head_dim 128 although hidden / heads = 64.
    Json config = Json::parse(R"({
        "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
        "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
        "attention_bias": false, "use_sliding_window": false, "sliding_window": null,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "rope_scaling": null
    })");
    ModelConfig c = parse(config);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_TRUE(c.qk_norm);
    EXPECT_FALSE(c.qkv_bias || c.o_bias);
    EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);

    config["attention_bias"] = true;
    c = parse(config);
    EXPECT_TRUE(c.qkv_bias && c.o_bias);
}

TEST(ModelConfigTest, ReadsTransformersV5RopeParameters) {
    Json config = small_config("llama");
    config["rope_parameters"] = {{"rope_type", "llama3"},       {"rope_theta", 500000.0},
                                 {"factor", 32.0},              {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0},     {"original_max_position_embeddings", 8192}};
    config["dtype"] = "bfloat16";
    ModelConfig c = parse(config);
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
    EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
    EXPECT_EQ(c.torch_dtype, "bfloat16");

    Json plain = small_config("qwen3");
    plain["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000}};
    c = parse(plain);
    EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
    EXPECT_EQ(c.rope.scaling, RopeScaling::None);
}

TEST(ModelConfigTest, RejectsUnsupportedRopeScaling) {
    Json config = small_config("llama");
    config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    expect_parse_error(config, AXL_ERR_UNSUPPORTED, "RoPE scaling type 'yarn'");
    config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    expect_parse_error(config, AXL_ERR_FORMAT, "'low_freq_factor' is missing");
    config["rope_scaling"] = {{"rope_type", "linear"}};
    expect_parse_error(config, AXL_ERR_FORMAT, "'factor' is missing");
    config["rope_scaling"] = "linear";
    expect_parse_error(config, AXL_ERR_FORMAT, "'rope_scaling' must be an object");
}

TEST(ModelConfigTest, RejectsUnknownArchitecture) {
    expect_parse_error(small_config("gpt2"), AXL_ERR_UNSUPPORTED,
                       "unsupported architecture 'gpt2' in config.json (supported: llama, mistral, "
                       "qwen2, qwen3)");
    Json config = small_config("llama");
    config.erase("model_type");
    expect_parse_error(config, AXL_ERR_FORMAT, "model_type");
}

TEST(ModelConfigTest, RejectsUnsupportedActivationAndSlidingLayers) {
    Json config = small_config("llama");
    config["hidden_act"] = "gelu";
    expect_parse_error(config, AXL_ERR_UNSUPPORTED, "hidden_act 'gelu'");
    config = small_config("qwen2");
    config["layer_types"] = {"full_attention", "sliding_attention"};
    expect_parse_error(config, AXL_ERR_UNSUPPORTED, "sliding-window");
}

TEST(ModelConfigTest, RejectsMalformedJson) {
    expect_error([] { parse_model_config("{\"model_type\": \"llama\",", "cfg.json"); },
                 AXL_ERR_FORMAT, "cfg.json is not valid JSON");
    expect_error([] { parse_model_config("[]", "cfg.json"); }, AXL_ERR_FORMAT, "JSON object");
    std::string with_nul = small_config("llama").dump() + std::string("\0trailing", 9);
    expect_error([&] { parse_model_config(with_nul, "cfg.json"); }, AXL_ERR_FORMAT, "NUL byte");
}

TEST(ModelConfigTest, RejectsFieldsOfWrongTypeOrValue) {
    struct Case {
        const char* field;
        Json value;
        const char* needle;
    };
    const Case cases[] = {
        {"hidden_size", "4096", "field 'hidden_size' must be an integer"},
        {"hidden_size", 64.0, "field 'hidden_size' must be an integer"},
        {"vocab_size", 0, "'vocab_size' must be a positive integer"},
        {"num_hidden_layers", -2, "'num_hidden_layers' must be a positive integer"},
        {"num_attention_heads", 4294967300ull, "'num_attention_heads' must be a positive integer"},
        {"num_key_value_heads", 3, "num_key_value_heads 3 does not divide"},
        {"tie_word_embeddings", "yes", "'tie_word_embeddings' must be true or false"},
        {"rms_norm_eps", "1e-6", "'rms_norm_eps' must be a number"},
        {"rope_theta", Json::array(), "'rope_theta' must be a number"},
        {"head_dim", 15, "head_dim 15 must be even"},
        {"torch_dtype", 16, "'torch_dtype' must be a string"},
    };
    for (const Case& c : cases) {
        Json config = small_config("llama");
        config[c.field] = c.value;
        SCOPED_TRACE(c.field);
        expect_parse_error(config, AXL_ERR_FORMAT, c.needle);
    }
    Json missing = small_config("qwen2");
    missing.erase("intermediate_size");
    expect_parse_error(missing, AXL_ERR_FORMAT, "required field 'intermediate_size' is missing");
    Json uneven = small_config("llama");
    uneven["num_attention_heads"] = 5;
    uneven["num_key_value_heads"] = 5;
    expect_parse_error(uneven, AXL_ERR_FORMAT, "not divisible by num_attention_heads");
}

}  // namespace
}  // namespace axl
