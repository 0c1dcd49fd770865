#include "lora/merge_export.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "backend/cpu/ops.hpp"
#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "lora/dora.hpp"
#include "lora/lora_linear.hpp"

namespace axl {

namespace {

std::string shard_name(size_t shard, size_t count) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", shard + 1, count);
    return name;
}

// config.json as transformers should read the export: no quantization_config, bf16.
std::string export_config(const Model& model) {
    nlohmann::ordered_json config;
    try {
        config = nlohmann::ordered_json::parse(model.config_json);
    } catch (const nlohmann::json::exception& e) {
        fail(AXL_ERR_INTERNAL, "the model's config.json no longer parses: ", e.what());
    }
    config.erase("quantization_config");
    bool has_dtype = false;
    for (const char* key : {"torch_dtype", "dtype"}) {
        if (config.contains(key)) {
            config[key] = "bfloat16";
            has_dtype = true;
        }
    }
    if (!has_dtype) config["torch_dtype"] = "bfloat16";
    return config.dump(2) + "\n";
}

}  // namespace

Tensor merged_linear_weight(const LoraAdapter& adapter, const Linear& linear) {
    const auto& allocator = adapter.model->context->host_allocator();
    Tensor weight = linear_weight_f32(linear, allocator);
    const LoraModule* module = adapter.find(&linear);
    if (module == nullptr) return weight;
    if (weight.data() == linear.weight.data()) weight = weight.clone(allocator);  // never write the base

    const int64_t out = linear.out_features, in = linear.in_features, rank = module->a.dim(0);
    const float scaling = adapter.config.scaling();
    Tensor norm;
    if (module->magnitude.defined()) {
        norm = Tensor::empty(allocator, DType::F32, {out}, "DoRA weight norm");
        dora_weight_norm(norm.f32(), weight.f32(), module->a.f32(), module->b.f32(), out, in, rank,
                         scaling, allocator);
    }
    // W += s * B A
    cpu::matmul(weight.f32(), module->b.f32(), module->a.f32(), out, in, rank, false, false, scaling, 1.0f);
    if (norm.defined()) {
        const float* magnitude = module->magnitude.f32();
        float* w = weight.f32();
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < out; ++o) {
            const float factor = magnitude[o] / norm.f32()[o];
            for (int64_t i = 0; i < in; ++i) w[o * in + i] *= factor;
        }
    }
    return weight;
}

void merge_and_export(const LoraAdapter& adapter, const std::string& dir, uint64_t shard_bytes) {
    adapter.sync_host();  // weights still on a CUDA trainer's device come back first
    const Model& model = *adapter.model;
    const auto& allocator = model.context->host_allocator();
    make_directories(dir);

    // One produced tensor at a time: the bf16 bytes of the tensor being written.
    auto current = std::make_shared<Tensor>();
    auto to_bf16 = [allocator, current](const Tensor& source) -> const void* {
        Tensor f32 = source.dtype() == DType::F32 ? source : Tensor::empty(allocator, DType::F32, source.shape(), "export f32");
        if (source.dtype() != DType::F32)
            convert_to_f32(source.data(), source.dtype(), f32.f32(), static_cast<size_t>(source.numel()));
        *current = Tensor::empty(allocator, DType::BF16, source.shape(), "export bf16 tensor");
        convert_from_f32(f32.f32(), current->data(), DType::BF16, static_cast<size_t>(source.numel()));
        return current->data();
    };

    std::vector<std::vector<StreamedTensor>> shards(1);
    std::vector<uint64_t> shard_sizes(1, 0);
    uint64_t total = 0;
    for (const NamedWeight& weight : model_weights(model)) {
        StreamedTensor t;
        t.name = weight.name;
        t.dtype = DType::BF16;
        if (weight.tensor != nullptr) {
            t.shape = weight.tensor->shape();
            const Tensor* source = weight.tensor;
            t.produce = [to_bf16, source] { return to_bf16(*source); };
        } else {
            const Linear* linear = weight.linear;
            t.shape = {linear->out_features, linear->in_features};
            t.produce = [to_bf16, &adapter, linear] { return to_bf16(merged_linear_weight(adapter, *linear)); };
        }
        const uint64_t bytes = static_cast<uint64_t>(shape_numel(t.shape)) * 2;
        if (shard_sizes.back() > 0 && shard_sizes.back() + bytes > shard_bytes) {
            shards.emplace_back();
            shard_sizes.push_back(0);
        }
        shards.back().push_back(std::move(t));
        shard_sizes.back() += bytes;
        total += bytes;
    }

    const std::map<std::string, std::string> metadata{{"format", "pt"}};
    const auto path = [&](const std::string& name) { return (std::filesystem::path(dir) / name).string(); };
    if (shards.size() == 1) {
        write_safetensors_streamed(path("model.safetensors"), shards[0], metadata);
    } else {
        nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
        for (size_t s = 0; s < shards.size(); ++s) {
            const std::string name = shard_name(s, shards.size());
            write_safetensors_streamed(path(name), shards[s], metadata);
            for (const StreamedTensor& t : shards[s]) weight_map[t.name] = name;
        }
        nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
        write_file_atomic(path("model.safetensors.index.json"), index.dump(2) + "\n");
    }
    write_file_atomic(path("config.json"), export_config(model));
    *current = Tensor();
}

}  // namespace axl
