// A minimal safetensors reader and writer for the API tests, independent of axl's own (the
// tests must not trust the code they check). Little-endian hosts only, which is all axl builds.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace axl_test {

struct StTensor {
    std::string dtype;            // "F32", "BF16", "F16", "I32", "I64", ...
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;

    int64_t numel() const {
        return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
    }
};

using StFile = std::map<std::string, StTensor>;

inline size_t dtype_size(const std::string& dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "BF16" || dtype == "F16" || dtype == "I16" || dtype == "U16") return 2;
    if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
    throw std::runtime_error("test_safetensors: unknown dtype " + dtype);
}

inline StTensor make_f32(std::vector<int64_t> shape, const std::vector<float>& values) {
    StTensor t{"F32", std::move(shape), std::vector<uint8_t>(values.size() * 4)};
    if (t.numel() != static_cast<int64_t>(values.size()))
        throw std::runtime_error("make_f32: shape does not match the values");
    std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
    return t;
}

inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16;
    int32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            exponent = 1;
            while (!(mantissa & 0x400u)) { mantissa <<= 1; --exponent; }
            mantissa &= 0x3ffu;
            bits = sign | static_cast<uint32_t>(exponent + 112) << 23 | (mantissa << 13);
        }
    } else {
        bits = sign | static_cast<uint32_t>(exponent + 112) << 23 | (mantissa << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// The tensor's values as float, from F32, BF16 or F16.
inline std::vector<float> to_f32(const StTensor& t) {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    if (t.dtype == "F32") {
        std::memcpy(out.data(), t.bytes.data(), out.size() * 4);
    } else if (t.dtype == "BF16" || t.dtype == "F16") {
        for (size_t i = 0; i < out.size(); ++i) {
            uint16_t h;
            std::memcpy(&h, t.bytes.data() + 2 * i, 2);
            out[i] = t.dtype == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
        }
    } else {
        throw std::runtime_error("to_f32: unsupported dtype " + t.dtype);
    }
    return out;
}

// The tensor's values as int32, from I32 or I64.
inline std::vector<int32_t> to_i32(const StTensor& t) {
    std::vector<int32_t> out(static_cast<size_t>(t.numel()));
    if (t.dtype == "I32") {
        std::memcpy(out.data(), t.bytes.data(), out.size() * 4);
    } else if (t.dtype == "I64") {
        for (size_t i = 0; i < out.size(); ++i) {
            int64_t v;
            std::memcpy(&v, t.bytes.data() + 8 * i, 8);
            out[i] = static_cast<int32_t>(v);
        }
    } else {
        throw std::runtime_error("to_i32: unsupported dtype " + t.dtype);
    }
    return out;
}

inline StFile read_safetensors(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("read_safetensors: cannot open " + path.string());
    uint64_t header_len = 0;
    in.read(reinterpret_cast<char*>(&header_len), 8);
    if (!in || header_len > 100'000'000) throw std::runtime_error("read_safetensors: bad header in " + path.string());
    std::string header(header_len, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_len));
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    StFile file;
    const nlohmann::json parsed = nlohmann::json::parse(header);
    for (auto it = parsed.begin(); it != parsed.end(); ++it) {
        const std::string& name = it.key();
        const nlohmann::json& entry = it.value();
        if (name == "__metadata__") continue;
        StTensor t;
        t.dtype = entry.at("dtype").get<std::string>();
        t.shape = entry.at("shape").get<std::vector<int64_t>>();
        const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
        if (offsets.size() != 2 || offsets[1] < offsets[0] || offsets[1] > data.size() ||
            offsets[1] - offsets[0] != static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype))
            throw std::runtime_error("read_safetensors: bad offsets of " + name + " in " + path.string());
        t.bytes.assign(data.begin() + static_cast<ptrdiff_t>(offsets[0]), data.begin() + static_cast<ptrdiff_t>(offsets[1]));
        file.emplace(name, std::move(t));
    }
    return file;
}

// Writes `tensors` in name order with a space-padded header, as the reference writer does.
inline void write_safetensors(const std::filesystem::path& path, const StFile& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
        offset += t.bytes.size();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("write_safetensors: cannot create " + path.string());
    const uint64_t header_len = text.size();
    out.write(reinterpret_cast<const char*>(&header_len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors)
        out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    if (!out) throw std::runtime_error("write_safetensors: cannot write " + path.string());
}

}  // namespace axl_test
