// Checks and times the fused dequantize + GEMM (kernels/dequant_gemm.cu). Part of
// kernel_check.cpp, included inside its anonymous namespace after its helpers (Env, OpCheck,
// upload, poisoned, time_ms).
//
// Reference: the weight quantized on the CPU (src/quant) from random data, dequantized there in
// f32 and rounded to bf16 (the values dequantize_bnb_4bit_rows gives the GEMM), multiplied in
// double by the bf16 activations. Tolerance: bf16-level, |got - ref| <= 1e-4 max|ref| + (2^-8 +
// 1e-4) |ref|: the output is rounded once to bf16 (2^-8 relative covers it), and the f32
// tensor-core sums over up to 14336 products differ from the exact sum by far less than 1e-4 of
// the output's scale; one mis-decoded weight moves an output by ~|x| |w| ~ 1e-2 of that scale.
// Timing: against dequantize_bnb_4bit_rows to bf16 + cuBLASLt matmul, the path it replaces.

#pragma once

}  // namespace (the kernels' declarations belong to axl::cuda, not to this file's anonymous namespace)

#include "backend/cuda/dequant_gemm.hpp"

namespace {

// A bitsandbytes 4-bit weight on both sides: the CPU's dequantized values (rounded to bf16, as
// the GEMM sees them) and the device copy of the packed codes and statistics.
struct FusedGemmWeight {
    int64_t rows = 0, cols = 0;
    std::vector<float> values;
    DeviceArray<uint8_t> packed, absmax_codes;
    DeviceArray<float> absmax, nested_absmax, code_map;
    axl::cuda::Bnb4BitWeight device;
};

FusedGemmWeight make_fused_gemm_weight(Env& env, axl::QuantFormat format, bool double_quant, int64_t rows,
                                       int64_t cols, int64_t block_size = 0) {
    axl::QuantConfig config;
    config.format = format;
    config.double_quant = double_quant;
    config.block_size = block_size;
    const auto source = env.random.uniform(rows * cols, -0.1f, 0.1f);
    const axl::QuantizedTensor q = axl::quantize(source.data(), rows, cols, config);
    FusedGemmWeight w;
    w.rows = rows;
    w.cols = cols;
    w.values.resize(rows * cols);
    axl::dequantize(q, w.values.data());
    w.values = round_to_bf16(std::move(w.values));
    w.packed = upload_raw(env, q.packed);
    w.device.format = format;
    w.device.rows = rows;
    w.device.cols = cols;
    w.device.block_size = q.block_size;
    w.device.packed = w.packed.get();
    if (q.double_quant) {
        w.absmax_codes = upload_raw(env, q.double_quant->codes);
        w.nested_absmax = upload_raw(env, q.double_quant->absmax);
        w.code_map = upload_raw(env, q.double_quant->code_map);
        w.device.absmax_codes = w.absmax_codes.get();
        w.device.nested_absmax = w.nested_absmax.get();
        w.device.code_map = w.code_map.get();
        w.device.offset = q.double_quant->offset;
    } else {
        w.absmax = upload_raw(env, q.scales);
        w.device.absmax = w.absmax.get();
    }
    return w;
}

// y[t, o] = sum_i x[t, i] W[o, i] + beta y0[t, o], in double.
std::vector<float> fused_gemm_forward_reference(const FusedGemmWeight& w, const std::vector<float>& x,
                                                const std::vector<float>& y0, int64_t tokens, float beta) {
    const int64_t out = w.rows, in = w.cols;
    std::vector<float> y(tokens * out);
#pragma omp parallel for
    for (int64_t o = 0; o < out; ++o)
        for (int64_t t = 0; t < tokens; ++t) {
            double sum = 0.0;
            for (int64_t i = 0; i < in; ++i) sum += static_cast<double>(x[t * in + i]) * w.values[o * in + i];
            if (beta != 0.0f) sum += static_cast<double>(beta) * y0[t * out + o];
            y[t * out + o] = static_cast<float>(sum);
        }
    return y;
}

// dx[t, i] = sum_o dy[t, o] W[o, i] + beta dx0[t, i], in double.
std::vector<float> fused_gemm_backward_reference(const FusedGemmWeight& w, const std::vector<float>& dy,
                                                 const std::vector<float>& dx0, int64_t tokens, float beta) {
    const int64_t out = w.rows, in = w.cols;
    std::vector<float> dx(tokens * in);
#pragma omp parallel for
    for (int64_t t = 0; t < tokens; ++t) {
        std::vector<double> sum(in, 0.0);
        for (int64_t o = 0; o < out; ++o) {
            const double g = dy[t * out + o];
            const float* row = w.values.data() + o * in;
            for (int64_t i = 0; i < in; ++i) sum[i] += g * row[i];
        }
        for (int64_t i = 0; i < in; ++i)
            dx[t * in + i] = static_cast<float>(sum[i] + (beta != 0.0f ? static_cast<double>(beta) * dx0[t * in + i] : 0.0));
    }
    return dx;
}

// Device buffers of one product at `tokens` tokens. With beta == 0 the output starts as NaN (an
// unwritten element fails, and a kernel that reads it would fail too); otherwise as `start`.
struct FusedGemmRun {
    std::vector<float> input, start;
    DeviceArray<bf16> d_input, d_output;
    DeviceArray<float> d_scratch;
};

FusedGemmRun prepare_fused_gemm(Env& env, int64_t tokens, int64_t input_size, int64_t output_size, float beta,
                                size_t scratch_floats) {
    FusedGemmRun run;
    run.input = round_to_bf16(env.random.uniform(tokens * input_size, -1.0f, 1.0f));
    run.start = round_to_bf16(env.random.uniform(tokens * output_size, -1.0f, 1.0f));
    run.d_input = upload<bf16>(env, run.input);
    run.d_output = beta != 0.0f ? upload<bf16>(env, run.start) : poisoned<bf16>(env, tokens * output_size);
    if (scratch_floats > 0) run.d_scratch = poisoned<float>(env, scratch_floats);  // NaN: every partial is written first
    return run;
}

Tolerance fused_gemm_tolerance(const std::vector<float>& ref) { return output_tolerance<bf16>(ref, 1e-4, 1e-4); }

// Adds one case to `check`, naming it on its own line when it fails.
void add_fused_gemm_case(OpCheck& check, const std::vector<float>& ref, const std::vector<float>& got, int64_t tokens,
                         float beta) {
    const Tolerance tol = fused_gemm_tolerance(ref);
    const Comparison c = compare(ref, got, tol);
    if (c.failures > 0)
        std::printf("  %s: tokens %lld beta %g: %lld bad, first at %lld (ref %g, got %g)\n", check.row.name.c_str(),
                    static_cast<long long>(tokens), beta, static_cast<long long>(c.failures),
                    static_cast<long long>(c.first_failure), c.first_failure >= 0 ? ref[c.first_failure] : 0.0,
                    c.first_failure >= 0 && static_cast<size_t>(c.first_failure) < got.size() ? got[c.first_failure] : 0.0);
    check.add(ref, got, tol);
}

std::string fused_gemm_weight_name(axl::QuantFormat format, bool double_quant) {
    return std::string(axl::quant_format_name(format)) + (double_quant ? "+dq" : "");
}

// Forward and backward of one weight at each token count, beta 0 and 1; one row each.
void check_fused_gemm_cases(Env& env, axl::QuantFormat format, bool double_quant, int64_t out, int64_t in,
                            int64_t block_size, const std::vector<int64_t>& token_counts) {
    const FusedGemmWeight w = make_fused_gemm_weight(env, format, double_quant, out, in, block_size);
    const std::string shape = " " + std::to_string(out) + "x" + std::to_string(in) +
                              (block_size ? " block " + std::to_string(block_size) : "");
    OpCheck forward("dequant_gemm fwd " + fused_gemm_weight_name(format, double_quant) + shape);
    OpCheck backward("dequant_gemm bwd " + fused_gemm_weight_name(format, double_quant) + shape);
    for (int64_t tokens : token_counts)
        for (float beta : {0.0f, 1.0f}) {
            FusedGemmRun f = prepare_fused_gemm(env, tokens, in, out, beta, 0);
            axl::cuda::fused_dequant_gemm_forward(f.d_output.get(), f.d_input.get(), w.device, tokens, out, in, beta,
                                                  env.stream());
            add_fused_gemm_case(forward, fused_gemm_forward_reference(w, f.input, f.start, tokens, beta),
                                download(env, f.d_output), tokens, beta);

            FusedGemmRun b = prepare_fused_gemm(env, tokens, out, in, beta,
                                                axl::cuda::fused_dequant_gemm_backward_scratch_floats(tokens, out, in));
            axl::cuda::fused_dequant_gemm_backward(b.d_output.get(), b.d_input.get(), w.device, tokens, out, in, beta,
                                                   b.d_scratch.get(), env.stream());
            add_fused_gemm_case(backward, fused_gemm_backward_reference(w, b.input, b.start, tokens, beta),
                                download(env, b.d_output), tokens, beta);
        }
    forward.finish();
    backward.finish();
}

// The model shapes, checked and timed against dequantize (bf16) + matmul, which needs the
// whole bf16 weight written and read back.
void bench_fused_gemm(Env& env, int64_t out, int64_t in, const std::vector<int64_t>& token_counts) {
    const axl::QuantFormat format = axl::QuantFormat::NF4;
    const bool double_quant = true;  // QLoRA's configuration
    const FusedGemmWeight w = make_fused_gemm_weight(env, format, double_quant, out, in);
    auto d_dense = poisoned<bf16>(env, out * in);
    const double weight_bytes = out * in * 0.5 + out * in / 64.0 * (1.0 + 4.0 / 256.0);
    const std::string shape = " " + std::to_string(out) + "x" + std::to_string(in);
    auto versus = [](double fused_ms, double bytes, double baseline_ms) {
        return bandwidth(bytes, fused_ms) + "; dequantize+matmul " + format_double(baseline_ms, "%.4f") + " ms (" +
               format_double(baseline_ms / fused_ms, "%.1f") + "x)";
    };
    for (int64_t tokens : token_counts) {
        const std::string name = fused_gemm_weight_name(format, double_quant) + " t" + std::to_string(tokens) + shape;
        {
            FusedGemmRun f = prepare_fused_gemm(env, tokens, in, out, 0.0f, 0);
            auto run = [&] {
                axl::cuda::fused_dequant_gemm_forward(f.d_output.get(), f.d_input.get(), w.device, tokens, out, in, 0.0f,
                                                      env.stream());
            };
            run();
            const auto ref = fused_gemm_forward_reference(w, f.input, f.start, tokens, 0.0f);
            OpCheck check("dequant_gemm fwd " + name);
            check.add(ref, download(env, f.d_output), fused_gemm_tolerance(ref));
            const double ms = time_ms(env, run);
            const double baseline_ms = time_ms(env, [&] {
                axl::cuda::dequantize_bnb_4bit_rows(w.device, 0, out, d_dense.get(), env.stream());
                axl::cuda::matmul(env.blas, f.d_output.get(), f.d_input.get(), d_dense.get(), tokens, out, in, false, true,
                                  1.0f, 0.0f);
            });
            check.finish(ms, versus(ms, weight_bytes, baseline_ms));
        }
        {
            FusedGemmRun b = prepare_fused_gemm(env, tokens, out, in, 0.0f,
                                                axl::cuda::fused_dequant_gemm_backward_scratch_floats(tokens, out, in));
            auto run = [&] {
                axl::cuda::fused_dequant_gemm_backward(b.d_output.get(), b.d_input.get(), w.device, tokens, out, in, 0.0f,
                                                       b.d_scratch.get(), env.stream());
            };
            run();
            const auto ref = fused_gemm_backward_reference(w, b.input, b.start, tokens, 0.0f);
            OpCheck check("dequant_gemm bwd " + name);
            check.add(ref, download(env, b.d_output), fused_gemm_tolerance(ref));
            const double ms = time_ms(env, run);
            const double baseline_ms = time_ms(env, [&] {
                axl::cuda::dequantize_bnb_4bit_rows(w.device, 0, out, d_dense.get(), env.stream());
                axl::cuda::matmul(env.blas, b.d_output.get(), b.d_input.get(), d_dense.get(), tokens, in, out, false, false,
                                  1.0f, 0.0f);
            });
            check.finish(ms, versus(ms, weight_bytes, baseline_ms));
        }
    }
}

void check_dequant_gemm(Env& env) {
    // Odd `out` (a part row tile) and `in` = 17 x 64 (the forward's last 128-input chunk is half).
    const std::vector<int64_t> token_counts = {1, 3, 16};
    for (axl::QuantFormat format : {axl::QuantFormat::NF4, axl::QuantFormat::FP4})
        for (bool double_quant : {false, true}) check_fused_gemm_cases(env, format, double_quant, 333, 1088, 0, token_counts);
    // Blocks of 256 (a thread's run of codes is a quarter of one), 5 tokens (a part n-tile).
    check_fused_gemm_cases(env, axl::QuantFormat::NF4, true, 517, 1280, 256, {5, 16});
    // Unsupported shapes are refused, not computed wrongly.
    {
        OpCheck check("dequant_gemm refuses 17 tokens, rows of 96");
        FusedGemmWeight w = make_fused_gemm_weight(env, axl::QuantFormat::NF4, false, 64, 128);
        bool ok = !axl::cuda::fused_dequant_gemm_supported(w.device, 17) &&
                  !axl::cuda::fused_dequant_gemm_supported(w.device, 0) &&
                  axl::cuda::fused_dequant_gemm_supported(w.device, 16);
        w.device.cols = 96;
        ok = ok && !axl::cuda::fused_dequant_gemm_supported(w.device, 1);
        check.row.checked = true;
        check.row.comparison.failures = ok ? 0 : 1;
        check.finish();
    }
    bench_fused_gemm(env, 4096, 4096, {1, 16});
    bench_fused_gemm(env, 14336, 4096, {1, 16});
    bench_fused_gemm(env, 4096, 14336, {1, 16});
}
