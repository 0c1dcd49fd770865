// PEFT adapter directories: what save writes (names, shapes, config fields as PEFT 0.21 writes
// them), that load reads it back exactly, and that load reads PEFT's own variants and refuses
// what axl cannot apply, naming the reason.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "unit/expect_error.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "lora/lora.hpp"
#include "tiny_model.hpp"

namespace axl {
namespace {

using json = nlohmann::json;
using test::expect_error;

class ScratchDir {
public:
    ScratchDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "axl_peft_XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~ScratchDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

std::vector<float> values(const Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }

std::shared_ptr<LoraAdapter> trained_like_adapter(const std::shared_ptr<const Model>& model,
                                                  const std::string& targets, bool dora) {
    LoraConfig config;
    config.rank = 4;
    config.alpha = 16.0;
    config.dropout = 0.05;
    config.use_rslora = true;
    config.use_dora = dora;
    config.init = LoraInit::RandomB;
    config.seed = 3;
    parse_target_modules(targets, &config);
    return create_lora(model, config);
}

TEST(PeftAdapter, SaveThenLoadRoundTripsEveryValue) {
    auto model = test::make_tiny_model();
    ScratchDir dir;
    for (bool dora : {false, true}) {
        SCOPED_TRACE(dora ? "dora" : "lora");
        auto saved = trained_like_adapter(model, "q_proj,v_proj,down_proj", dora);
        const std::string path = dir.file(dora ? "dora/nested" : "lora");  // created with parents
        save_peft_adapter(*saved, path);
        auto loaded = load_peft_adapter(model, path);

        EXPECT_EQ(loaded->config.rank, 4);
        EXPECT_EQ(loaded->config.alpha, 16.0);
        EXPECT_EQ(loaded->config.dropout, 0.05);
        EXPECT_TRUE(loaded->config.use_rslora);
        EXPECT_EQ(loaded->config.use_dora, dora);
        ASSERT_EQ(loaded->modules.size(), saved->modules.size());
        for (size_t i = 0; i < saved->modules.size(); ++i) {
            EXPECT_EQ(loaded->modules[i].base, saved->modules[i].base);
            EXPECT_EQ(values(loaded->modules[i].a), values(saved->modules[i].a));
            EXPECT_EQ(values(loaded->modules[i].b), values(saved->modules[i].b));
            if (dora) EXPECT_EQ(values(loaded->modules[i].magnitude), values(saved->modules[i].magnitude));
            EXPECT_EQ(loaded->modules[i].grad_a.shape(), saved->modules[i].a.shape());
            EXPECT_EQ(loaded->modules[i].grad_magnitude.defined(), dora);
        }
    }
}

TEST(PeftAdapter, WritesPeftKeysShapesAndMetadata) {
    auto model = test::make_tiny_model();
    auto adapter = trained_like_adapter(model, "all-linear", true);
    ScratchDir dir;
    save_peft_adapter(*adapter, dir.path());
    SafetensorsFile file(dir.file("adapter_model.safetensors"));
    EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    EXPECT_EQ(file.tensors().size(), 3 * adapter->modules.size());
    const TensorInfo* a = file.find("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
    const TensorInfo* b = file.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
    const TensorInfo* m = file.find("base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector");
    ASSERT_TRUE(a && b && m);
    EXPECT_EQ(a->dtype, DType::F32);
    EXPECT_EQ(a->shape, (Shape{4, 24}));
    EXPECT_EQ(b->shape, (Shape{16, 4}));
    EXPECT_EQ(m->shape, (Shape{16}));
}

TEST(PeftAdapter, ConfigJsonHasPeftFieldsSortedWithIndentTwo) {
    auto model = test::make_tiny_model();
    ScratchDir dir;
    save_peft_adapter(*trained_like_adapter(model, "v_proj,q_proj", false), dir.path());
    const std::string text = read_text_file(dir.file("adapter_config.json"));
    EXPECT_EQ(text.rfind("{\n  \"alpha_pattern\": {},\n", 0), 0u) << text;
    const json config = json::parse(text);
    std::string previous;
    for (const auto& [key, value] : config.items()) {
        EXPECT_LT(previous, key);
        previous = key;
    }
    EXPECT_EQ(config["peft_type"], "LORA");
    EXPECT_EQ(config["task_type"], "CAUSAL_LM");
    EXPECT_EQ(config["r"], 4);
    EXPECT_TRUE(config["lora_alpha"].is_number_integer());
    EXPECT_EQ(config["lora_alpha"], 16);
    EXPECT_EQ(config["lora_dropout"], 0.05);
    EXPECT_EQ(config["target_modules"], json::array({"q_proj", "v_proj"}));
    EXPECT_EQ(config["use_rslora"], true);
    EXPECT_EQ(config["use_dora"], false);
    EXPECT_EQ(config["bias"], "none");
    EXPECT_EQ(config["fan_in_fan_out"], false);
    EXPECT_EQ(config["lora_bias"], false);
    EXPECT_EQ(config["init_lora_weights"], true);
    EXPECT_EQ(config["inference_mode"], true);
    EXPECT_EQ(config["rank_pattern"], json::object());
    EXPECT_EQ(config["alpha_pattern"], json::object());
    EXPECT_TRUE(config["modules_to_save"].is_null());
    EXPECT_TRUE(config["layers_to_transform"].is_null());
    EXPECT_TRUE(config["base_model_name_or_path"].is_null());
    EXPECT_TRUE(config["peft_version"].is_string());
}

TEST(PeftAdapter, TargetModulesAreShortNamesUnlessTheyWouldSelectMore) {
    auto model = test::make_tiny_model();
    ScratchDir dir;
    save_peft_adapter(*trained_like_adapter(model, "all-linear", false), dir.path());
    EXPECT_EQ(json::parse(read_text_file(dir.file("adapter_config.json")))["target_modules"],
              json::array({"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}));
    save_peft_adapter(*trained_like_adapter(model, "model.layers.1.self_attn.q_proj", false), dir.path());
    EXPECT_EQ(json::parse(read_text_file(dir.file("adapter_config.json")))["target_modules"],
              json::array({"model.layers.1.self_attn.q_proj"}));
    EXPECT_EQ(load_peft_adapter(model, dir.path())->modules.size(), 1u);
}

// An adapter directory written by hand, the way PEFT or other tools may write it.
struct HandWritten {
    json config = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4}, {"target_modules", json::array({"k_proj"})}};
    struct Entry {
        std::string name;
        DType dtype;
        Shape shape;
        std::vector<uint8_t> bytes;
    };
    std::vector<Entry> tensors;

    void add(const std::string& name, Shape shape, DType dtype = DType::F32, float value = 0.25f) {
        const int64_t n = shape_numel(shape);
        std::vector<float> f32(n);
        for (int64_t i = 0; i < n; ++i) f32[i] = value * static_cast<float>(i + 1);
        std::vector<uint8_t> bytes(n * dtype_size(dtype));
        convert_from_f32(f32.data(), bytes.data(), dtype, n);
        tensors.push_back({name, dtype, std::move(shape), std::move(bytes)});
    }
    // A and B for both layers' k_proj ([r=2, in=16], [out=8, r=2]).
    void add_k_proj(const std::string& infix = "", DType dtype = DType::F32) {
        for (int layer : {0, 1}) {
            const std::string module = "base_model.model.model.layers." + std::to_string(layer) + ".self_attn.k_proj";
            add(module + ".lora_A" + infix + ".weight", {2, 16}, dtype);
            add(module + ".lora_B" + infix + ".weight", {8, 2}, dtype);
        }
    }
    void write(const std::string& dir) const {
        make_directories(dir);
        write_file_atomic(dir + "/adapter_config.json", config.dump(2));
        std::vector<NamedTensor> named;
        for (const Entry& e : tensors) named.push_back({e.name, e.dtype, e.shape, e.bytes.data()});
        write_safetensors(dir + "/adapter_model.safetensors", named, {{"format", "pt"}});
    }
};

TEST(PeftAdapter, LoadsAdapterNameInfixesHalfPrecisionAndFullModuleNames) {
    auto model = test::make_tiny_model();
    ScratchDir dir;
    HandWritten adapter;
    // PEFT writes an expanded "all-linear" as full module paths.
    adapter.config["target_modules"] =
        json::array({"model.layers.1.self_attn.k_proj", "model.layers.0.self_attn.k_proj"});
    adapter.add_k_proj(".default", DType::BF16);
    adapter.write(dir.path());
    auto loaded = load_peft_adapter(model, dir.path());
    ASSERT_EQ(loaded->modules.size(), 2u);
    EXPECT_EQ(loaded->modules[0].base, &model->layers[0].k_proj);
    EXPECT_EQ(loaded->modules[0].a.dtype(), DType::F32);
    EXPECT_EQ(loaded->modules[0].a.f32()[3], 1.0f);  // 0.25 * 4, exact in bf16
    EXPECT_EQ(loaded->modules[1].b.f32()[15], 4.0f);
    EXPECT_EQ(loaded->config.alpha, 4.0);
    EXPECT_FALSE(loaded->config.use_dora);
}

TEST(PeftAdapter, LoadsAllLinearStringAndDoraMagnitudes) {
    test::TinyModelOptions options;
    options.layers = 1;
    auto model = test::make_tiny_model(options);
    auto reference = trained_like_adapter(model, "all-linear", true);
    ScratchDir dir;
    HandWritten adapter;
    adapter.config = {{"peft_type", "LORA"}, {"r", 4}, {"lora_alpha", 16.0}, {"use_rslora", true},
                      {"use_dora", true}, {"target_modules", "all-linear"}, {"rank_pattern", nullptr},
                      {"layers_to_transform", nullptr}, {"bias", "none"}};
    for (const LoraModule& module : reference->modules) {
        const std::string name = "base_model.model." + module.base->name;
        adapter.add(name + ".lora_A.weight", module.a.shape(), DType::F16);
        adapter.add(name + ".lora_B.weight", module.b.shape());
        adapter.add(name + ".lora_magnitude_vector", module.magnitude.shape(), DType::F32, 2.0f);
    }
    adapter.write(dir.path());
    auto loaded = load_peft_adapter(model, dir.path());
    EXPECT_TRUE(loaded->config.all_linear);
    ASSERT_EQ(loaded->modules.size(), 7u);
    EXPECT_EQ(loaded->modules[6].magnitude.f32()[0], 2.0f);
    EXPECT_EQ(loaded->modules[6].magnitude.f32()[1], 4.0f);
}

// data/peft_dora_adapter was written by PEFT 0.21.2 (tests/oracle/peft_adapter_fixture.py): its
// config carries every field PEFT writes and target_modules as the expanded full module paths.
TEST(PeftAdapter, LoadsAnAdapterWrittenByPeft) {
    const std::string dir =
        (std::filesystem::path(__FILE__).parent_path() / "data" / "peft_dora_adapter").string();
    auto model = test::make_tiny_model();
    auto loaded = load_peft_adapter(model, dir);
    EXPECT_EQ(loaded->config.rank, 4);
    EXPECT_EQ(loaded->config.alpha, 8.0);
    EXPECT_EQ(loaded->config.dropout, 0.05);
    EXPECT_TRUE(loaded->config.use_dora);
    EXPECT_TRUE(loaded->config.use_rslora);
    EXPECT_FLOAT_EQ(loaded->config.scaling(), 4.0f);  // 8 / sqrt(4)
    ASSERT_EQ(loaded->modules.size(), model->decoder_linears().size());
    const SafetensorsFile file(dir + "/adapter_model.safetensors");
    EXPECT_EQ(file.tensors().size(), 3 * loaded->modules.size());
    for (const LoraModule& module : loaded->modules) {
        const std::string key = "base_model.model." + module.base->name;
        auto expect_same = [&](const Tensor& got, const std::string& name) {
            const TensorInfo* info = file.find(name);
            ASSERT_NE(info, nullptr) << name;
            std::vector<float> want(got.numel());
            std::memcpy(want.data(), info->data, want.size() * sizeof(float));
            EXPECT_EQ(values(got), want) << name;
        };
        expect_same(module.a, key + ".lora_A.weight");
        expect_same(module.b, key + ".lora_B.weight");
        expect_same(module.magnitude, key + ".lora_magnitude_vector");
    }
}

TEST(PeftAdapter, RefusesConfigsAxlCannotApply) {
    auto model = test::make_tiny_model();
    struct Bad {
        const char* field;
        json value;
        axl_status code;
        const char* needle;
    };
    const Bad cases[] = {
        {"peft_type", "IA3", AXL_ERR_UNSUPPORTED, "IA3"},
        {"rank_pattern", {{"k_proj", 4}}, AXL_ERR_UNSUPPORTED, "rank_pattern"},
        {"alpha_pattern", {{"k_proj", 4}}, AXL_ERR_UNSUPPORTED, "alpha_pattern"},
        {"fan_in_fan_out", true, AXL_ERR_UNSUPPORTED, "fan_in_fan_out"},
        {"bias", "all", AXL_ERR_UNSUPPORTED, "bias"},
        {"lora_bias", true, AXL_ERR_UNSUPPORTED, "lora_bias"},
        {"layers_to_transform", json::array({0}), AXL_ERR_UNSUPPORTED, "layers_to_transform"},
        {"modules_to_save", json::array({"lm_head"}), AXL_ERR_UNSUPPORTED, "modules_to_save"},
        {"target_modules", ".*\\.k_proj", AXL_ERR_UNSUPPORTED, "regular expression"},
        {"init_lora_weights", "pissa", AXL_ERR_UNSUPPORTED, "init_lora_weights"},
        {"r", "two", AXL_ERR_FORMAT, "r must be an integer"},
        {"r", 0, AXL_ERR_FORMAT, "rank"},
        {"lora_dropout", 1.5, AXL_ERR_FORMAT, "dropout"},
        {"target_modules", json::array({"qkv_proj"}), AXL_ERR_NOT_FOUND, "qkv_proj"},
    };
    for (const Bad& bad : cases) {
        SCOPED_TRACE(bad.field);
        ScratchDir dir;
        HandWritten adapter;
        adapter.config[bad.field] = bad.value;
        adapter.add_k_proj();
        adapter.write(dir.path());
        expect_error([&] { load_peft_adapter(model, dir.path()); }, bad.code, bad.needle);
    }
}

TEST(PeftAdapter, RefusesMalformedOrMissingFilesNamingThem) {
    auto model = test::make_tiny_model();
    ScratchDir dir;
    HandWritten adapter;
    adapter.add_k_proj();
    adapter.write(dir.path());
    write_file_atomic(dir.file("adapter_config.json"), "{\"peft_type\": \"LORA\", ");
    expect_error([&] { load_peft_adapter(model, dir.path()); }, AXL_ERR_FORMAT, "adapter_config.json");

    write_file_atomic(dir.file("adapter_config.json"), adapter.config.dump());
    std::filesystem::remove(dir.file("adapter_model.safetensors"));
    expect_error([&] { load_peft_adapter(model, dir.path()); }, AXL_ERR_NOT_FOUND,
                 "adapter_model.safetensors");
    write_file_atomic(dir.file("adapter_model.bin"), "pickle");
    expect_error([&] { load_peft_adapter(model, dir.path()); }, AXL_ERR_UNSUPPORTED, "safetensors");

    ScratchDir empty;
    try {
        load_peft_adapter(model, empty.path());
        ADD_FAILURE() << "loaded a directory without adapter_config.json";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos) << e.what();
    }
}

TEST(PeftAdapter, RefusesTensorsThatDoNotFitTheModel) {
    auto model = test::make_tiny_model();
    const std::string k0 = "base_model.model.model.layers.0.self_attn.k_proj";
    struct Bad {
        const char* what;
        std::function<void(HandWritten&)> edit;
        axl_status code;
        std::string needle;
    };
    const std::vector<Bad> cases = {
        {"unknown key", [](HandWritten& a) { a.add("base_model.model.model.layers.0.self_attn.k_proj.weight", {2}); },
         AXL_ERR_FORMAT, "model.layers.0.self_attn.k_proj.weight"},
        {"untargeted module", [](HandWritten& a) { a.add("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {2, 16}); },
         AXL_ERR_FORMAT, "model.layers.0.self_attn.q_proj"},
        {"no such module", [](HandWritten& a) { a.add("base_model.model.model.layers.7.self_attn.k_proj.lora_A.weight", {2, 16}); },
         AXL_ERR_FORMAT, "model.layers.7.self_attn.k_proj"},
        {"magnitude without DoRA", [&](HandWritten& a) { a.add(k0 + ".lora_magnitude_vector", {8}); },
         AXL_ERR_FORMAT, "lora_magnitude_vector"},
        {"wrong shape", [&](HandWritten& a) { a.tensors[0].shape = {16, 2}; }, AXL_ERR_SHAPE,
         k0 + ".lora_A.weight: expected shape [2, 16], got [16, 2]"},
        {"missing B", [&](HandWritten& a) { a.tensors.erase(a.tensors.begin() + 1); }, AXL_ERR_FORMAT,
         k0 + ".lora_B.weight"},
        {"integer dtype", [&](HandWritten& a) { a.tensors[0].dtype = DType::I32; }, AXL_ERR_FORMAT, "I32"},
    };
    for (const Bad& bad : cases) {
        SCOPED_TRACE(bad.what);
        ScratchDir dir;
        HandWritten adapter;
        adapter.add_k_proj();
        bad.edit(adapter);
        adapter.write(dir.path());
        expect_error([&] { load_peft_adapter(model, dir.path()); }, bad.code, bad.needle);
    }
}

TEST(PeftAdapter, DoraAdapterNeedsItsMagnitudes) {
    auto model = test::make_tiny_model();
    ScratchDir dir;
    HandWritten adapter;
    adapter.config["use_dora"] = true;
    adapter.add_k_proj();
    adapter.write(dir.path());
    expect_error([&] { load_peft_adapter(model, dir.path()); }, AXL_ERR_FORMAT, "lora_magnitude_vector");
}

}  // namespace
}  // namespace axl
