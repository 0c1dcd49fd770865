// kernel_check's checks of kernels/dequantize_formats.cu: every format but NF4/FP4 (int8 row,
// int8 per-channel, int4 grouped, fp8 e4m3 per row and in 2-D tiles, NVFP4 with and without the
// per-tensor scale, MXFP4), dequantized on the device and compared bit for bit with src/quant's
// dequantize (bf16: the CPU's f32 rounded once). Weights are fresh random values quantized by
// src/quant, plus weights of random codes and statistics that reach codes and scales a
// quantizer rarely writes (int8 -128, e4m3 subnormal scales, the fp8 tile edges). Each is
// dequantized in two row ranges, as a tiled consumer would call it, and once into an output
// that is not 16-byte aligned (the one-element kernel); odd shapes take that kernel too.
//
// Part of kernel_check.cpp, included inside its anonymous namespace after its helpers (Env,
// OpCheck, upload_raw, poisoned, download, time_ms, bandwidth, round_to_bf16, Elem).
#pragma once

}  // namespace (the launchers' declarations belong to axl::cuda, not to this file's anonymous namespace)

#include "backend/cuda/dequantize_formats.hpp"

namespace {

namespace dequantize_formats_check {

// The device arrays of one quantized weight and the view the launcher takes.
struct DeviceQuantized {
    DeviceArray<uint8_t> packed, scale_codes;
    DeviceArray<float> scales, zeros;
    axl::cuda::PackedWeight view;
    double bytes = 0;  // codes and statistics read once
};

DeviceQuantized upload_quantized(Env& env, const axl::QuantizedTensor& q) {
    DeviceQuantized d;
    axl::cuda::PackedWeight& w = d.view;
    w.format = q.format;
    w.rows = q.rows;
    w.cols = q.cols;
    w.block_size = q.block_size;
    w.block_rows = q.block_rows;
    d.packed = upload_raw(env, q.packed);
    w.packed = d.packed.get();
    if (!q.scales.empty()) {
        d.scales = upload_raw(env, q.scales);
        w.scales = d.scales.get();
    }
    if (!q.zeros.empty()) {
        d.zeros = upload_raw(env, q.zeros);
        w.zeros = d.zeros.get();
    }
    if (!q.scale_codes.empty()) {
        d.scale_codes = upload_raw(env, q.scale_codes);
        w.scale_codes = d.scale_codes.get();
    }
    w.has_tensor_scale = q.tensor_scale.has_value();
    w.tensor_scale = q.tensor_scale.value_or(0.0f);
    d.bytes = static_cast<double>(q.packed.size() + q.scale_codes.size()) +
              sizeof(float) * static_cast<double>(q.scales.size() + q.zeros.size());
    return d;
}

template <typename T>
void check_case(Env& env, const std::string& label, const axl::QuantizedTensor& q, bool timed) {
    std::vector<float> ref(static_cast<size_t>(q.numel()));
    axl::dequantize(q, ref.data());
    if (!std::is_same_v<T, float>) ref = round_to_bf16(ref);  // the CPU's f32, rounded once
    const DeviceQuantized w = upload_quantized(env, q);

    OpCheck check("dequantize " + label + " -> " + Elem<T>::name());
    auto d_out = poisoned<T>(env, q.numel());
    const int64_t split = q.rows / 3;
    axl::cuda::dequantize_packed_rows(w.view, 0, split, d_out.get(), env.stream());
    axl::cuda::dequantize_packed_rows(w.view, split, q.rows, d_out.get() + split * q.cols, env.stream());
    check.add(ref, download(env, d_out), {0.0, 0.0});  // bit-exact

    auto d_shifted = poisoned<T>(env, q.numel() + 1);
    axl::cuda::dequantize_packed_rows(w.view, 0, q.rows, d_shifted.get() + 1, env.stream());
    const std::vector<float> shifted = download(env, d_shifted);
    check.add(ref, std::vector<float>(shifted.begin() + 1, shifted.end()), {0.0, 0.0});

    if (!timed) {
        check.finish();
        return;
    }
    const double ms =
        time_ms(env, [&] { axl::cuda::dequantize_packed_rows(w.view, 0, q.rows, d_out.get(), env.stream()); });
    check.finish(ms, bandwidth(w.bytes + static_cast<double>(q.numel()) * sizeof(T), ms));
}

void check_both_outputs(Env& env, const std::string& label, const axl::QuantizedTensor& q, bool timed) {
    check_case<float>(env, label, q, timed);
    check_case<bf16>(env, label, q, timed);
}

// Random weights with an outlier every 101 elements (ten times the rest), never zero.
std::vector<float> random_weight(Env& env, int64_t rows, int64_t cols) {
    std::vector<float> w = env.random.uniform(static_cast<size_t>(rows * cols), -0.1f, 0.1f);
    for (size_t i = 0; i < w.size(); i += 101) w[i] *= 10.0f;
    return w;
}

axl::QuantizedTensor quantized(Env& env, axl::QuantFormat format, int64_t rows, int64_t cols,
                               axl::DType weight_dtype, int64_t block_size = 0, bool tensor_scale = true) {
    axl::QuantConfig config;
    config.format = format;
    config.block_size = block_size;
    config.weight_dtype = weight_dtype;
    config.nvfp4_tensor_scale = tensor_scale;
    config.expert_tensor = format == axl::QuantFormat::MXFP4;
    const std::vector<float> weight = random_weight(env, rows, cols);
    return axl::quantize(weight.data(), rows, cols, config);
}

// Random bytes in [lo, hi], skipping `excluded` (an e4m3 NaN code) when it is in range.
std::vector<uint8_t> random_codes(Env& env, size_t count, int lo, int hi, int excluded = -1) {
    const bool skip = lo <= excluded && excluded <= hi;
    std::vector<uint8_t> out(count);
    for (uint8_t& byte : out) {
        int value = static_cast<int>(env.random.integer(lo, skip ? hi - 1 : hi));
        if (skip && value >= excluded) ++value;
        byte = static_cast<uint8_t>(value);
    }
    return out;
}

// e4m3 bytes other than the NaN codes 0x7f and 0xff.
std::vector<uint8_t> random_e4m3(Env& env, size_t count) { return random_codes(env, count, 0, 0xfe, 0x7f); }

axl::QuantizedTensor random_code_tensor(axl::QuantFormat format, int64_t rows, int64_t cols, int64_t block_size) {
    axl::QuantizedTensor q;
    q.format = format;
    q.rows = rows;
    q.cols = cols;
    q.block_size = block_size;
    q.weight_dtype = axl::DType::BF16;
    return q;
}

// fp8 e4m3 with transformers' fine-grained 2-D tile scales, edge tiles partial.
axl::QuantizedTensor random_fp8_tiles(Env& env, int64_t rows, int64_t cols, int64_t tile_rows, int64_t tile_cols) {
    axl::QuantizedTensor q = random_code_tensor(axl::QuantFormat::Fp8E4M3, rows, cols, tile_cols);
    q.block_rows = tile_rows;
    q.packed = random_e4m3(env, static_cast<size_t>(rows * cols));
    q.scales = env.random.uniform(static_cast<size_t>(q.num_blocks()), 1e-4f, 1e-2f);
    return q;
}

}  // namespace dequantize_formats_check

void check_dequantize_formats(Env& env) {
    using namespace dequantize_formats_check;
    using axl::DType;
    using axl::QuantFormat;
    const int64_t n = 4096;

    // Quantized by src/quant, the step's shape: checked and timed, f32 and bf16 out.
    check_both_outputs(env, "int8 row", quantized(env, QuantFormat::Int8Row, n, n, DType::F16), true);
    check_both_outputs(env, "int8 channel", quantized(env, QuantFormat::Int8Channel, n, n, DType::BF16), true);
    check_both_outputs(env, "int4 g128", quantized(env, QuantFormat::Int4Group, n, n, DType::BF16, 128), true);
    check_both_outputs(env, "fp8 e4m3", quantized(env, QuantFormat::Fp8E4M3, n, n, DType::BF16), true);
    check_both_outputs(env, "nvfp4", quantized(env, QuantFormat::NVFP4, n, n, DType::BF16), true);
    check_both_outputs(env, "mxfp4", quantized(env, QuantFormat::MXFP4, n, n, DType::BF16), true);

    // Other block sizes and odd shapes: rows of any length for the whole-row formats (the
    // one-element kernel), odd row counts, NVFP4 without its per-tensor scale.
    check_both_outputs(env, "int4 g32 [257, 1024]", quantized(env, QuantFormat::Int4Group, 257, 1024, DType::F32, 32),
                       false);
    check_both_outputs(env, "int4 g256 [33, 768]", quantized(env, QuantFormat::Int4Group, 33, 768, DType::BF16, 256),
                       false);
    check_both_outputs(env, "int8 row [37, 1001]", quantized(env, QuantFormat::Int8Row, 37, 1001, DType::F32), false);
    check_both_outputs(env, "int8 channel [5, 4097]", quantized(env, QuantFormat::Int8Channel, 5, 4097, DType::F32),
                       false);
    check_both_outputs(env, "fp8 e4m3 [129, 1000]", quantized(env, QuantFormat::Fp8E4M3, 129, 1000, DType::F32), false);
    check_both_outputs(env, "nvfp4 no P [333, 528]",
                       quantized(env, QuantFormat::NVFP4, 333, 528, DType::BF16, 0, false), false);
    check_both_outputs(env, "mxfp4 [65, 96]", quantized(env, QuantFormat::MXFP4, 65, 96, DType::F32), false);

    // Random codes and statistics: every int8 code (with -128), every e4m3 code as an element
    // and as an NVFP4 block scale (subnormals, negative), a wide range of E8M0 scales.
    {
        axl::QuantizedTensor q = random_code_tensor(QuantFormat::Int8Row, 300, 512, 512);
        q.packed = random_codes(env, 300 * 512, 0, 255);
        q.scales = env.random.uniform(300, 1e-3f, 2.0f);
        check_both_outputs(env, "int8 row random codes", q, false);
        q.format = QuantFormat::Int8Channel;
        check_both_outputs(env, "int8 channel random codes", q, false);
    }
    check_both_outputs(env, "fp8 e4m3 tiles 128x128 [1000, 1040]", random_fp8_tiles(env, 1000, 1040, 128, 128), false);
    check_both_outputs(env, "fp8 e4m3 tiles 128x128 [300, 200]", random_fp8_tiles(env, 300, 200, 128, 128), false);
    {
        axl::QuantizedTensor q = random_code_tensor(QuantFormat::NVFP4, 256, 512, axl::kNvfp4BlockSize);
        q.packed = random_codes(env, 256 * 512 / 2, 0, 255);
        q.scale_codes = random_e4m3(env, static_cast<size_t>(q.num_blocks()));
        q.tensor_scale = env.random.uniform(1, 1e-4f, 1e-2f)[0];
        check_both_outputs(env, "nvfp4 random codes", q, false);
        q.tensor_scale.reset();
        check_both_outputs(env, "nvfp4 no P random codes", q, false);
    }
    {
        axl::QuantizedTensor q = random_code_tensor(QuantFormat::MXFP4, 256, 512, axl::kMxfp4BlockSize);
        q.packed = random_codes(env, 256 * 512 / 2, 0, 255);
        // 2^-63 .. 2^63: every product stays a normal f32.
        q.scale_codes = random_codes(env, static_cast<size_t>(q.num_blocks()), 64, 190);
        check_both_outputs(env, "mxfp4 random codes", q, false);
    }
}
