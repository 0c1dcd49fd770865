// Checks every CUDA kernel against its CPU twin, and times it.
//
// For each op: fresh random inputs (seeded from AXL_CHECK_SEED or the clock, printed; never
// zeros), output buffers poisoned with NaN before the kernel runs (so an unwritten element
// fails), the CPU reference op and the CUDA op on the same values, and a comparison
//     |cuda - cpu| <= atol + rtol * |cpu|   for every element (NaN never passes)
// with the tolerance stated per op where it is checked: exact where the arithmetic is the
// same (copies, dequantization, AdamW), f32-level where the op computes in f32 (rounding and
// summation order: rtol ~1e-5..1e-4), bf16-level where the output is bf16 (one rounding,
// u = 2^-8 relative, plus the f32-level part). bf16 inputs are the f32 inputs rounded to
// bf16, so both sides see the same values. Then a micro-benchmark: the median of timed runs
// after warm-up, with CUDA events, and the bandwidth or FLOP rate it implies.
//
// Prints one line per op and a table last. Exit: 0 all passed, 1 a check failed, 77 (the
// ctest skip code) when there is no CUDA device.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "backend/cuda/check.hpp"
#include "backend/cuda/device.hpp"
#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/ops.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "optim/adamw.hpp"
#include "quant/quantize.hpp"

namespace {

using axl::cuda::bf16;
using axl::cuda::DeviceAllocator;
using axl::cuda::DeviceBuffer;

constexpr int kSkipExitCode = 77;
constexpr int kWarmupRuns = 3;
constexpr int kTimedRuns = 20;
constexpr double kBf16Unit = 1.0 / 256.0;  // 2^-8: relative error of one rounding to bf16

struct Tolerance {
    double atol;
    double rtol;
};

struct Comparison {
    double max_abs = 0.0;
    double max_rel = 0.0;
    int64_t failures = 0;
    int64_t first_failure = -1;
};

// Compares element by element; max_rel is |diff| / |ref| over elements where |ref| > atol.
Comparison compare(const std::vector<float>& ref, const std::vector<float>& got, Tolerance tol) {
    Comparison c;
    if (ref.size() != got.size()) {
        c.failures = 1;
        return c;
    }
    for (size_t i = 0; i < ref.size(); ++i) {
        const double r = ref[i];
        const double g = got[i];
        const double diff = std::fabs(g - r);
        const bool ok = std::isfinite(g) && diff <= tol.atol + tol.rtol * std::fabs(r);
        if (!ok) {
            if (c.failures == 0) c.first_failure = static_cast<int64_t>(i);
            ++c.failures;
        }
        if (!std::isfinite(g)) {
            c.max_abs = INFINITY;
            continue;
        }
        c.max_abs = std::max(c.max_abs, diff);
        if (std::fabs(r) > tol.atol) c.max_rel = std::max(c.max_rel, diff / std::fabs(r));
    }
    return c;
}

double max_abs_value(const std::vector<float>& v) {
    double m = 0.0;
    for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
    return m;
}

struct Row {
    std::string name;
    Comparison comparison;
    Tolerance tol{};
    double ms = -1.0;      // median time; < 0: not timed
    std::string rate;      // what the time means (GB/s, TFLOP/s)
    bool checked = false;  // false: a benchmark only
    bool pass() const { return comparison.failures == 0; }
    const char* status() const { return !checked ? "bench" : pass() ? "PASS" : "FAIL"; }
};

std::vector<Row> g_rows;

std::string format_double(double v, const char* fmt = "%.3g") {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, fmt, v);
    return buffer;
}

void print_row(const Row& row) {
    if (row.checked)
        std::printf("%-40s max_abs %-10s max_rel %-10s tol(atol %s, rtol %s) %s", row.name.c_str(),
                    format_double(row.comparison.max_abs).c_str(), format_double(row.comparison.max_rel).c_str(),
                    format_double(row.tol.atol, "%.2g").c_str(), format_double(row.tol.rtol, "%.2g").c_str(),
                    row.status());
    else
        std::printf("%-40s (benchmark, not checked)", row.name.c_str());
    if (!row.pass())
        std::printf(" (%lld bad, first at %lld)", static_cast<long long>(row.comparison.failures),
                    static_cast<long long>(row.comparison.first_failure));
    if (row.ms >= 0) std::printf("  %.4f ms %s", row.ms, row.rate.c_str());
    std::printf("\n");
    std::fflush(stdout);
}

// Several outputs of one op checked under their own tolerances, reported as one line: the
// worst errors, and the tolerance of the output with the worst relative error.
struct OpCheck {
    Row row;
    explicit OpCheck(std::string name) { row.name = std::move(name); }
    void add(const std::vector<float>& ref, const std::vector<float>& got, Tolerance tol) {
        const Comparison c = compare(ref, got, tol);
        row.checked = true;
        if (row.comparison.failures == 0 && c.failures > 0) row.comparison.first_failure = c.first_failure;
        row.comparison.failures += c.failures;
        if (c.max_rel >= row.comparison.max_rel || row.tol.rtol == 0.0) row.tol = tol;
        row.comparison.max_abs = std::max(row.comparison.max_abs, c.max_abs);
        row.comparison.max_rel = std::max(row.comparison.max_rel, c.max_rel);
    }
    void finish(double ms = -1.0, std::string rate = "") {
        row.ms = ms;
        row.rate = std::move(rate);
        print_row(row);
        g_rows.push_back(row);
    }
};

// ---- host data ----------------------------------------------------------------------------

class Random {
public:
    explicit Random(uint64_t seed) : engine_(seed) {}
    // Uniform in [lo, hi], never exactly 0 (a zero hides unwritten outputs).
    std::vector<float> uniform(size_t n, float lo, float hi) {
        std::uniform_real_distribution<float> dist(lo, hi);
        std::vector<float> v(n);
        for (float& x : v) {
            do x = dist(engine_);
            while (x == 0.0f);
        }
        return v;
    }
    int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(engine_); }
    std::vector<int32_t> integers(size_t n, int64_t lo, int64_t hi) {
        std::vector<int32_t> v(n);
        for (int32_t& x : v) x = static_cast<int32_t>(integer(lo, hi));
        return v;
    }

private:
    std::mt19937_64 engine_;
};

// The values a bf16 tensor holds: each f32 rounded to nearest even bf16.
std::vector<float> round_to_bf16(std::vector<float> v) {
    for (float& x : v) x = axl::bf16_to_f32(axl::f32_to_bf16(x));
    return v;
}

// ---- device data --------------------------------------------------------------------------

struct Env {
    axl::cuda::Device& device;
    DeviceAllocator& allocator;
    axl::cuda::BlasLt& blas;
    Random& random;
    cudaStream_t stream() const { return device.stream(); }
};

template <typename T>
struct Elem;
template <>
struct Elem<float> {
    static float from(float x) { return x; }
    static float to(float x) { return x; }
    static const char* name() { return "f32"; }
};
template <>
struct Elem<bf16> {
    static bf16 from(float x) {
        const uint16_t bits = axl::f32_to_bf16(x);
        bf16 out;
        std::memcpy(&out, &bits, sizeof out);
        return out;
    }
    static float to(bf16 x) {
        uint16_t bits;
        std::memcpy(&bits, &x, sizeof bits);
        return axl::bf16_to_f32(bits);
    }
    static const char* name() { return "bf16"; }
};

// A device array of T mirroring host f32 values.
template <typename T>
struct DeviceArray {
    DeviceBuffer buffer;
    size_t count = 0;
    T* get() const { return buffer.as<T>(); }
};

template <typename T>
DeviceArray<T> upload(Env& env, const std::vector<float>& host) {
    DeviceArray<T> a{DeviceBuffer(env.allocator, host.size() * sizeof(T), "check input"), host.size()};
    std::vector<T> converted(host.size());
    for (size_t i = 0; i < host.size(); ++i) converted[i] = Elem<T>::from(host[i]);
    AXL_CUDA_CHECK(cudaMemcpyAsync(a.get(), converted.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice,
                                   env.stream()));
    env.device.synchronize();
    return a;
}

// Any contiguous container (std::vector, QuantArray), copied as it is.
template <typename Container>
auto upload_raw(Env& env, const Container& host) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(*host.data())>>;
    DeviceArray<T> a{DeviceBuffer(env.allocator, std::max<size_t>(1, host.size()) * sizeof(T), "check input"),
                     host.size()};
    AXL_CUDA_CHECK(cudaMemcpyAsync(a.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, env.stream()));
    env.device.synchronize();
    return a;
}

// Every byte 0xFF: NaN as f32 and as bf16.
template <typename T>
DeviceArray<T> poisoned(Env& env, size_t count) {
    DeviceArray<T> a{DeviceBuffer(env.allocator, count * sizeof(T), "check output"), count};
    AXL_CUDA_CHECK(cudaMemsetAsync(a.get(), 0xFF, count * sizeof(T), env.stream()));
    return a;
}

template <typename T>
std::vector<float> download(Env& env, const DeviceArray<T>& a) {
    std::vector<T> raw(a.count);
    AXL_CUDA_CHECK(cudaMemcpyAsync(raw.data(), a.get(), a.count * sizeof(T), cudaMemcpyDeviceToHost, env.stream()));
    env.device.synchronize();
    std::vector<float> out(a.count);
    for (size_t i = 0; i < a.count; ++i) out[i] = Elem<T>::to(raw[i]);
    return out;
}

// Median milliseconds of kTimedRuns runs of `run` after kWarmupRuns, timed with events.
double time_ms(Env& env, const std::function<void()>& run) {
    for (int i = 0; i < kWarmupRuns; ++i) run();
    cudaEvent_t start, stop;
    AXL_CUDA_CHECK(cudaEventCreate(&start));
    AXL_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> times;
    for (int i = 0; i < kTimedRuns; ++i) {
        AXL_CUDA_CHECK(cudaEventRecord(start, env.stream()));
        run();
        AXL_CUDA_CHECK(cudaEventRecord(stop, env.stream()));
        AXL_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0.0f;
        AXL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

std::string bandwidth(double bytes, double ms) { return format_double(bytes / (ms * 1e-3) / 1e9, "%.0f") + " GB/s"; }
std::string flop_rate(double flops, double ms) { return format_double(flops / (ms * 1e-3) / 1e12, "%.1f") + " TFLOP/s"; }

// f32-level tolerance scaled to the output's magnitude, or bf16-level for bf16 outputs.
template <typename T>
Tolerance output_tolerance(const std::vector<float>& ref, double f32_rtol, double atol_of_max) {
    const double atol = atol_of_max * max_abs_value(ref);
    if (std::is_same_v<T, float>) return {atol, f32_rtol};
    return {atol, kBf16Unit + f32_rtol};
}

// ---- embedding ----------------------------------------------------------------------------

template <typename T>
void check_embedding(Env& env) {
    const int64_t vocab = 32000, hidden = 4096, tokens = 4096;
    const auto table = round_to_bf16(env.random.uniform(vocab * hidden, -1.0f, 1.0f));
    const auto ids = env.random.integers(tokens, 0, vocab - 1);
    std::vector<float> ref(tokens * hidden);
    axl::cpu::embedding_forward(ref.data(), ids.data(), table.data(), tokens, hidden);

    auto d_table = upload<T>(env, table);
    auto d_ids = upload_raw(env, ids);
    auto d_out = poisoned<T>(env, tokens * hidden);
    axl::cuda::embedding_forward(d_out.get(), d_ids.get(), d_table.get(), tokens, hidden, env.stream());
    OpCheck check(std::string("embedding_forward ") + Elem<T>::name());
    check.add(ref, download(env, d_out), {0.0, 0.0});  // a copy: exact
    const double ms = time_ms(env, [&] {
        axl::cuda::embedding_forward(d_out.get(), d_ids.get(), d_table.get(), tokens, hidden, env.stream());
    });
    check.finish(ms, bandwidth(2.0 * tokens * hidden * sizeof(T), ms));
}

// ---- rmsnorm ------------------------------------------------------------------------------

// Host values `offset` elements into a device array (the elements before are padding): the
// pointer .get() + offset is not 16-byte aligned unless offset is a multiple of 16 / sizeof(T),
// which sends the vectorized kernels to their scalar paths.
template <typename T>
DeviceArray<T> upload_at(Env& env, const std::vector<float>& host, size_t offset) {
    std::vector<float> padded(offset, 1.0f);
    padded.insert(padded.end(), host.begin(), host.end());
    return upload<T>(env, padded);
}

template <typename T>
std::vector<float> download_at(Env& env, const DeviceArray<T>& a, size_t offset) {
    const std::vector<float> all = download(env, a);
    return std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(offset), all.end());
}

// A [rows, cols] case whose activations start `offset` elements past an aligned buffer.
struct Shape {
    int64_t rows, cols;
    size_t offset;
};

std::string shape_name(int64_t rows, int64_t cols, size_t offset) {
    return std::to_string(rows) + "x" + std::to_string(cols) + (offset ? " +" + std::to_string(offset) : "");
}

// Rows of `cols` values `stride` apart (stride >= cols) from a dense [rows, cols] array, and
// back; `filler` fills the columns between.
std::vector<float> spread_rows(const std::vector<float>& dense, int64_t rows, int64_t cols, int64_t stride,
                               float filler) {
    std::vector<float> out(rows * stride, filler);
    for (int64_t r = 0; r < rows; ++r)
        std::copy_n(dense.begin() + r * cols, cols, out.begin() + r * stride);
    return out;
}
std::vector<float> gather_rows(const std::vector<float>& spread, int64_t rows, int64_t cols, int64_t stride) {
    std::vector<float> out(rows * cols);
    for (int64_t r = 0; r < rows; ++r)
        std::copy_n(spread.begin() + r * stride, cols, out.begin() + r * cols);
    return out;
}
// Values in the columns [cols, stride) of each row that are not NaN (the poison): a kernel that
// must leave them alone wrote there.
float written_between_rows(const std::vector<float>& spread, int64_t rows, int64_t cols, int64_t stride) {
    int64_t written = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = cols; c < stride; ++c) written += !std::isnan(spread[r * stride + c]);
    return static_cast<float>(written);
}

// rmsnorm_backward_add's reference: the CPU backward, then the residual gradient added in f32.
std::vector<float> rmsnorm_backward_add_reference(const std::vector<float>& dx, const std::vector<float>& residual) {
    std::vector<float> ref = dx;
    for (size_t i = 0; i < ref.size(); ++i) ref[i] += residual[i];
    return ref;
}

// One shape through forward, backward with dweight and the backward fused with a residual
// gradient, the activations `offset` elements past aligned buffers; one untimed row.
template <typename T>
void check_rmsnorm_shape(Env& env, int64_t rows, int64_t cols, size_t offset) {
    const float eps = 1e-5f;
    const int64_t n = rows * cols;
    const auto x = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto weight = env.random.uniform(cols, 0.5f, 1.5f);
    const auto dout = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
    const auto residual = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
    const auto dweight_start = env.random.uniform(cols, -1.0f, 1.0f);
    std::vector<float> out(n), rstd(rows), dx(n), dweight = dweight_start;
    axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, eps);
    axl::cpu::rmsnorm_backward(dx.data(), dweight.data(), dout.data(), x.data(), weight.data(), rstd.data(), rows,
                               cols);
    const auto dx_add = rmsnorm_backward_add_reference(dx, residual);

    auto d_x = upload_at<T>(env, x, offset);
    auto d_dout = upload_at<T>(env, dout, offset);
    auto d_residual = upload_at<T>(env, residual, offset);
    auto d_weight = upload<float>(env, weight);
    auto d_rstd_ref = upload<float>(env, rstd);
    auto d_dweight = upload<float>(env, dweight_start);
    auto d_out = poisoned<T>(env, n + offset);
    auto d_rstd = poisoned<float>(env, rows);
    auto d_dx = poisoned<T>(env, n + offset);
    auto d_dx_add = poisoned<T>(env, n + offset);
    axl::cuda::rmsnorm_forward(d_out.get() + offset, d_rstd.get(), d_x.get() + offset, d_weight.get(), rows, cols, eps,
                               env.stream());
    axl::cuda::rmsnorm_backward(d_dx.get() + offset, d_dweight.get(), d_dout.get() + offset, d_x.get() + offset,
                                d_weight.get(), d_rstd_ref.get(), rows, cols, env.stream());
    axl::cuda::rmsnorm_backward_add(d_dx_add.get() + offset, d_dout.get() + offset, d_x.get() + offset,
                                    d_weight.get(), d_rstd_ref.get(), d_residual.get() + offset, rows, cols,
                                    env.stream());
    OpCheck check(std::string("rmsnorm fwd/bwd/bwd+add ") + Elem<T>::name() + " " + shape_name(rows, cols, offset));
    check.add(out, download_at(env, d_out, offset), output_tolerance<T>(out, 1e-5, 1e-6));
    check.add(rstd, download(env, d_rstd), {0.0, 1e-5});
    check.add(dx, download_at(env, d_dx, offset), output_tolerance<T>(dx, 1e-4, 1e-5));
    check.add(dweight, download(env, d_dweight), {1e-5 * max_abs_value(dweight), 1e-4});
    check.add(dx_add, download_at(env, d_dx_add, offset), output_tolerance<T>(dx_add, 1e-4, 1e-5));
    check.finish();
}

template <typename T>
void check_rmsnorm(Env& env) {
    const int64_t rows = 4096, cols = 4096;
    const float eps = 1e-5f;
    const auto x = round_to_bf16(env.random.uniform(rows * cols, -2.0f, 2.0f));
    const auto weight = env.random.uniform(cols, 0.5f, 1.5f);
    const auto dout = round_to_bf16(env.random.uniform(rows * cols, -1.0f, 1.0f));
    const auto residual = round_to_bf16(env.random.uniform(rows * cols, -1.0f, 1.0f));
    const auto dweight_start = env.random.uniform(cols, -1.0f, 1.0f);

    std::vector<float> out(rows * cols), rstd(rows), dx(rows * cols), dweight = dweight_start;
    axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, eps);
    axl::cpu::rmsnorm_backward(dx.data(), dweight.data(), dout.data(), x.data(), weight.data(), rstd.data(), rows,
                               cols);

    auto d_x = upload<T>(env, x);
    auto d_weight = upload<float>(env, weight);
    auto d_dout = upload<T>(env, dout);
    auto d_out = poisoned<T>(env, rows * cols);
    auto d_rstd = poisoned<float>(env, rows);
    axl::cuda::rmsnorm_forward(d_out.get(), d_rstd.get(), d_x.get(), d_weight.get(), rows, cols, eps, env.stream());
    {
        OpCheck check(std::string("rmsnorm_forward ") + Elem<T>::name());
        check.add(out, download(env, d_out), output_tolerance<T>(out, 1e-5, 1e-6));
        check.add(rstd, download(env, d_rstd), {0.0, 1e-5});
        const double ms = time_ms(env, [&] {
            axl::cuda::rmsnorm_forward(d_out.get(), d_rstd.get(), d_x.get(), d_weight.get(), rows, cols, eps,
                                       env.stream());
        });
        check.finish(ms, bandwidth(2.0 * rows * cols * sizeof(T), ms));
    }
    // The backward gets the CPU's rstd, so that it is checked on its own.
    auto d_rstd_ref = upload<float>(env, rstd);
    {
        auto d_dx = poisoned<T>(env, rows * cols);
        auto d_dweight = upload<float>(env, dweight_start);
        axl::cuda::rmsnorm_backward(d_dx.get(), d_dweight.get(), d_dout.get(), d_x.get(), d_weight.get(),
                                    d_rstd_ref.get(), rows, cols, env.stream());
        OpCheck check(std::string("rmsnorm_backward ") + Elem<T>::name());
        // dx = rstd (g - n mean(g n)) cancels: f32 error relative to the row's scale.
        check.add(dx, download(env, d_dx), output_tolerance<T>(dx, 1e-4, 1e-5));
        check.add(dweight, download(env, d_dweight), {1e-5 * max_abs_value(dweight), 1e-4});
        const double ms = time_ms(env, [&] {
            axl::cuda::rmsnorm_backward(d_dx.get(), d_dweight.get(), d_dout.get(), d_x.get(), d_weight.get(),
                                        d_rstd_ref.get(), rows, cols, env.stream());
        });
        check.finish(ms, bandwidth(5.0 * rows * cols * sizeof(T), ms));
    }
    {
        // The training step's call: frozen norm weights, no dweight pass.
        auto d_dx = poisoned<T>(env, rows * cols);
        axl::cuda::rmsnorm_backward(d_dx.get(), nullptr, d_dout.get(), d_x.get(), d_weight.get(), d_rstd_ref.get(),
                                    rows, cols, env.stream());
        OpCheck check(std::string("rmsnorm_backward ") + Elem<T>::name() + " (no dweight)");
        check.add(dx, download(env, d_dx), output_tolerance<T>(dx, 1e-4, 1e-5));
        const double ms = time_ms(env, [&] {
            axl::cuda::rmsnorm_backward(d_dx.get(), nullptr, d_dout.get(), d_x.get(), d_weight.get(),
                                        d_rstd_ref.get(), rows, cols, env.stream());
        });
        check.finish(ms, bandwidth(3.0 * rows * cols * sizeof(T), ms));
    }
    {
        // Fused with the residual branch's gradient: the f32 sum rounded once.
        const auto dx_add = rmsnorm_backward_add_reference(dx, residual);
        auto d_residual = upload<T>(env, residual);
        auto d_dx = poisoned<T>(env, rows * cols);
        axl::cuda::rmsnorm_backward_add(d_dx.get(), d_dout.get(), d_x.get(), d_weight.get(), d_rstd_ref.get(),
                                        d_residual.get(), rows, cols, env.stream());
        OpCheck check(std::string("rmsnorm_backward_add ") + Elem<T>::name());
        check.add(dx_add, download(env, d_dx), output_tolerance<T>(dx_add, 1e-4, 1e-5));
        const double ms = time_ms(env, [&] {
            axl::cuda::rmsnorm_backward_add(d_dx.get(), d_dout.get(), d_x.get(), d_weight.get(), d_rstd_ref.get(),
                                            d_residual.get(), rows, cols, env.stream());
        });
        check.finish(ms, bandwidth(4.0 * rows * cols * sizeof(T), ms));
    }
    // Every kernel shape: per-head norms (lanes of a warp per row, rows that end mid-block),
    // a warp per row, blocks of 256/512/1024 threads, rows longer than the registers hold, and
    // the scalar kernels (odd row length, misaligned pointers).
    for (const Shape& shape : {Shape{333, 128, 0}, Shape{50, 512, 0}, Shape{257, 1000, 0}, Shape{100, 2048, 0},
                               Shape{64, 8192, 0}, Shape{16, 20000, 0}, Shape{37, 1001, 0}, Shape{100, 4096, 1}})
        check_rmsnorm_shape<T>(env, shape.rows, shape.cols, shape.offset);
}

// The bf16 forward writing rows `stride` apart and the backward reading dout rows `stride` apart
// (a norm whose rows carry folded LoRA inputs): the same values as dense rows, the columns
// between neither written (they stay poison) nor read (dout's are NaN there).
void check_rmsnorm_strided(Env& env) {
    const float eps = 1e-5f;
    // Shape::offset is the room between rows here: vector kernels (multiples of 8), then scalar.
    for (const Shape& shape : {Shape{300, 2048, 48}, Shape{40, 4096, 32}, Shape{33, 1000, 8}, Shape{20, 1001, 3}}) {
        const int64_t rows = shape.rows, cols = shape.cols, stride = cols + static_cast<int64_t>(shape.offset);
        const int64_t n = rows * cols;
        const auto x = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
        const auto weight = env.random.uniform(cols, 0.5f, 1.5f);
        const auto dout = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
        const auto residual = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
        std::vector<float> out(n), rstd(rows), dx(n), dweight(cols);
        axl::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), weight.data(), rows, cols, eps);
        axl::cpu::rmsnorm_backward(dx.data(), dweight.data(), dout.data(), x.data(), weight.data(), rstd.data(), rows,
                                   cols);
        const auto dx_add = rmsnorm_backward_add_reference(dx, residual);

        auto d_x = upload<bf16>(env, x);
        auto d_weight = upload<float>(env, weight);
        auto d_dout = upload<bf16>(env, spread_rows(dout, rows, cols, stride, NAN));
        auto d_residual = upload<bf16>(env, residual);
        auto d_rstd_ref = upload<float>(env, rstd);
        auto d_out = poisoned<bf16>(env, rows * stride);
        auto d_rstd = poisoned<float>(env, rows);
        auto d_dx = poisoned<bf16>(env, n);
        axl::cuda::rmsnorm_forward_strided(d_out.get(), stride, d_rstd.get(), d_x.get(), d_weight.get(), rows, cols,
                                           eps, env.stream());
        axl::cuda::rmsnorm_backward_add_strided(d_dx.get(), d_dout.get(), stride, d_x.get(), d_weight.get(),
                                                d_rstd_ref.get(), d_residual.get(), rows, cols, env.stream());
        OpCheck check("rmsnorm fwd/bwd+add rows apart bf16 " + shape_name(rows, cols, 0) + " in " +
                      std::to_string(stride));
        const std::vector<float> spread_out = download(env, d_out);
        check.add(out, gather_rows(spread_out, rows, cols, stride), output_tolerance<bf16>(out, 1e-5, 1e-6));
        check.add({0.0f}, {written_between_rows(spread_out, rows, cols, stride)}, {0.0, 0.0});
        check.add(rstd, download(env, d_rstd), {0.0, 1e-5});
        check.add(dx_add, download(env, d_dx), output_tolerance<bf16>(dx_add, 1e-4, 1e-5));
        check.finish();
    }
}

// ---- rope ---------------------------------------------------------------------------------

void check_rope_tables(Env& env) {
    const int64_t max_pos = 4096, half = 64;
    std::vector<float> inv_freq(half);
    for (int64_t i = 0; i < half; ++i) inv_freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * i / (2.0 * half)));
    std::vector<float> cos(max_pos * half), sin(max_pos * half);
    axl::cpu::rope_tables(cos.data(), sin.data(), inv_freq.data(), max_pos, half);
    auto d_inv = upload<float>(env, inv_freq);
    auto d_cos = poisoned<float>(env, max_pos * half);
    auto d_sin = poisoned<float>(env, max_pos * half);
    axl::cuda::rope_tables(d_cos.get(), d_sin.get(), d_inv.get(), max_pos, half, env.stream());
    OpCheck check("rope_tables f32");
    // Same f32 angle; CUDA's cosf/sinf are within 2 ulp of the correctly rounded value.
    check.add(cos, download(env, d_cos), {1e-6, 0.0});
    check.add(sin, download(env, d_sin), {1e-6, 0.0});
    check.finish();
}

// Forward and backward of one head layout, x `offset` elements past an aligned buffer; one
// untimed row.
template <typename T>
void check_rope_shape(Env& env, int64_t tokens, int64_t heads, int64_t head_dim, size_t offset) {
    const int64_t half = head_dim / 2, max_pos = 512, n = tokens * heads * head_dim;
    std::vector<float> inv_freq(half);
    for (int64_t i = 0; i < half; ++i) inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / head_dim));
    std::vector<float> cos(max_pos * half), sin(max_pos * half);
    axl::cpu::rope_tables(cos.data(), sin.data(), inv_freq.data(), max_pos, half);
    const auto positions = env.random.integers(tokens, 0, max_pos - 1);
    const auto x = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
    std::vector<float> forward = x, backward = x;
    axl::cpu::rope_forward(forward.data(), positions.data(), cos.data(), sin.data(), tokens, heads, head_dim);
    axl::cpu::rope_backward(backward.data(), positions.data(), cos.data(), sin.data(), tokens, heads, head_dim);
    auto d_cos = upload<float>(env, cos);
    auto d_sin = upload<float>(env, sin);
    auto d_pos = upload_raw(env, positions);
    auto d_forward = upload_at<T>(env, x, offset);
    auto d_backward = upload_at<T>(env, x, offset);
    axl::cuda::rope_forward(d_forward.get() + offset, d_pos.get(), d_cos.get(), d_sin.get(), tokens, heads, head_dim,
                            env.stream());
    axl::cuda::rope_backward(d_backward.get() + offset, d_pos.get(), d_cos.get(), d_sin.get(), tokens, heads, head_dim,
                             env.stream());
    OpCheck check(std::string("rope fwd/bwd ") + Elem<T>::name() + " " + std::to_string(tokens) + "x" +
                  std::to_string(heads) + "x" + std::to_string(head_dim) + (offset ? " +" + std::to_string(offset) : ""));
    const Tolerance tol = std::is_same_v<T, float> ? Tolerance{0.0, 0.0} : Tolerance{1e-6, kBf16Unit};
    check.add(forward, download_at(env, d_forward, offset), tol);
    check.add(backward, download_at(env, d_backward, offset), tol);
    check.finish();
}

template <typename T>
void check_rope(Env& env) {
    const int64_t tokens = 4096, heads = 32, head_dim = 128, half = head_dim / 2, max_pos = 4096;
    std::vector<float> inv_freq(half);
    for (int64_t i = 0; i < half; ++i) inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / head_dim));
    std::vector<float> cos(max_pos * half), sin(max_pos * half);
    axl::cpu::rope_tables(cos.data(), sin.data(), inv_freq.data(), max_pos, half);
    const auto positions = env.random.integers(tokens, 0, max_pos - 1);
    const auto x = round_to_bf16(env.random.uniform(tokens * heads * head_dim, -1.0f, 1.0f));
    std::vector<float> forward = x, backward = x;
    axl::cpu::rope_forward(forward.data(), positions.data(), cos.data(), sin.data(), tokens, heads, head_dim);
    axl::cpu::rope_backward(backward.data(), positions.data(), cos.data(), sin.data(), tokens, heads, head_dim);

    auto d_cos = upload<float>(env, cos);
    auto d_sin = upload<float>(env, sin);
    auto d_pos = upload_raw(env, positions);
    // Same products and sums, each rounded: f32 is exact; bf16 adds the output rounding.
    const Tolerance tol = std::is_same_v<T, float> ? Tolerance{0.0, 0.0} : Tolerance{1e-6, kBf16Unit};
    for (int backward_pass = 0; backward_pass < 2; ++backward_pass) {
        auto d_x = upload<T>(env, x);
        if (backward_pass)
            axl::cuda::rope_backward(d_x.get(), d_pos.get(), d_cos.get(), d_sin.get(), tokens, heads, head_dim,
                                     env.stream());
        else
            axl::cuda::rope_forward(d_x.get(), d_pos.get(), d_cos.get(), d_sin.get(), tokens, heads, head_dim,
                                    env.stream());
        OpCheck check(std::string(backward_pass ? "rope_backward " : "rope_forward ") + Elem<T>::name());
        check.add(backward_pass ? backward : forward, download(env, d_x), tol);
        const double ms = time_ms(env, [&] {
            if (backward_pass)
                axl::cuda::rope_backward(d_x.get(), d_pos.get(), d_cos.get(), d_sin.get(), tokens, heads, head_dim,
                                         env.stream());
            else
                axl::cuda::rope_forward(d_x.get(), d_pos.get(), d_cos.get(), d_sin.get(), tokens, heads, head_dim,
                                        env.stream());
        });
        check.finish(ms, bandwidth(2.0 * tokens * heads * head_dim * sizeof(T), ms));
    }
    // The vector kernel at other widths (head_dim 80; 72 for f32), the scalar one where half a
    // head is not whole vectors (bf16 72) or x is misaligned.
    check_rope_shape<T>(env, 33, 7, 80, 0);
    check_rope_shape<T>(env, 37, 3, 72, 0);
    check_rope_shape<T>(env, 50, 5, 64, 1);
}

// ---- swiglu -------------------------------------------------------------------------------

// Forward and backward of n elements, the inputs `in_offset` and the outputs `out_offset`
// elements past aligned buffers; one untimed row.
template <typename T>
void check_swiglu_shape(Env& env, int64_t n, size_t in_offset, size_t out_offset) {
    const auto gate = round_to_bf16(env.random.uniform(n, -6.0f, 6.0f));
    const auto up = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto dout = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
    std::vector<float> out(n), dgate(n), dup(n);
    axl::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n);
    axl::cpu::swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);
    auto d_gate = upload_at<T>(env, gate, in_offset);
    auto d_up = upload_at<T>(env, up, in_offset);
    auto d_dout = upload_at<T>(env, dout, in_offset);
    auto d_out = poisoned<T>(env, n + out_offset);
    auto d_dgate = poisoned<T>(env, n + out_offset);
    auto d_dup = poisoned<T>(env, n + out_offset);
    axl::cuda::swiglu_forward(d_out.get() + out_offset, d_gate.get() + in_offset, d_up.get() + in_offset, n,
                              env.stream());
    axl::cuda::swiglu_backward(d_dgate.get() + out_offset, d_dup.get() + out_offset, d_dout.get() + in_offset,
                               d_gate.get() + in_offset, d_up.get() + in_offset, n, env.stream());
    OpCheck check(std::string("swiglu fwd/bwd ") + Elem<T>::name() + " n=" + std::to_string(n) + " in+" +
                  std::to_string(in_offset) + " out+" + std::to_string(out_offset));
    check.add(out, download_at(env, d_out, out_offset), output_tolerance<T>(out, 1e-5, 1e-7));
    check.add(dgate, download_at(env, d_dgate, out_offset), output_tolerance<T>(dgate, 1e-5, 1e-7));
    check.add(dup, download_at(env, d_dup, out_offset), output_tolerance<T>(dup, 1e-5, 1e-7));
    check.finish();
}

template <typename T>
void check_swiglu(Env& env) {
    const int64_t n = 4096 * 11008;
    const auto gate = round_to_bf16(env.random.uniform(n, -6.0f, 6.0f));
    const auto up = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto dout = round_to_bf16(env.random.uniform(n, -1.0f, 1.0f));
    std::vector<float> out(n), dgate(n), dup(n);
    axl::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n);
    axl::cpu::swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);

    auto d_gate = upload<T>(env, gate);
    auto d_up = upload<T>(env, up);
    auto d_dout = upload<T>(env, dout);
    auto d_out = poisoned<T>(env, n);
    axl::cuda::swiglu_forward(d_out.get(), d_gate.get(), d_up.get(), n, env.stream());
    {
        OpCheck check(std::string("swiglu_forward ") + Elem<T>::name());
        // expf differs from the CPU's exp by an ulp or two.
        check.add(out, download(env, d_out), output_tolerance<T>(out, 1e-5, 1e-7));
        const double ms =
            time_ms(env, [&] { axl::cuda::swiglu_forward(d_out.get(), d_gate.get(), d_up.get(), n, env.stream()); });
        check.finish(ms, bandwidth(3.0 * n * sizeof(T), ms));
    }
    auto d_dgate = poisoned<T>(env, n);
    auto d_dup = poisoned<T>(env, n);
    axl::cuda::swiglu_backward(d_dgate.get(), d_dup.get(), d_dout.get(), d_gate.get(), d_up.get(), n, env.stream());
    OpCheck check(std::string("swiglu_backward ") + Elem<T>::name());
    check.add(dgate, download(env, d_dgate), output_tolerance<T>(dgate, 1e-5, 1e-7));
    check.add(dup, download(env, d_dup), output_tolerance<T>(dup, 1e-5, 1e-7));
    const double ms = time_ms(env, [&] {
        axl::cuda::swiglu_backward(d_dgate.get(), d_dup.get(), d_dout.get(), d_gate.get(), d_up.get(), n, env.stream());
    });
    check.finish(ms, bandwidth(5.0 * n * sizeof(T), ms));
    // A tail after the last whole vector, and misaligned inputs or outputs (the scalar kernel).
    check_swiglu_shape<T>(env, 1000003, 0, 0);
    check_swiglu_shape<T>(env, 4099, 1, 0);
    check_swiglu_shape<T>(env, 4099, 0, 3);
}

// ---- elementwise --------------------------------------------------------------------------

// add + scale over all rows * cols elements, and add_bias_forward on [rows, cols], with y and
// x `y_offset` and `x_offset` elements past aligned buffers; one untimed row.
template <typename T>
void check_elementwise_shape(Env& env, int64_t rows, int64_t cols, size_t y_offset, size_t x_offset) {
    const int64_t n = rows * cols;
    const auto y = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto x = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto bias = env.random.uniform(cols, -1.0f, 1.0f);
    const float s = 0.7f;
    const Tolerance one_op = std::is_same_v<T, float> ? Tolerance{0.0, 0.0} : Tolerance{0.0, kBf16Unit};
    std::vector<float> sum = y;
    axl::cpu::add_inplace(sum.data(), x.data(), n);
    if (!std::is_same_v<T, float>) sum = round_to_bf16(sum);
    axl::cpu::scale_inplace(sum.data(), s, n);
    std::vector<float> biased = y;
    axl::cpu::add_bias_forward(biased.data(), bias.data(), rows, cols);

    auto d_y = upload_at<T>(env, y, y_offset);
    auto d_x = upload_at<T>(env, x, x_offset);
    auto d_biased = upload_at<T>(env, y, y_offset);
    auto d_bias = upload<float>(env, bias);
    axl::cuda::add_inplace(d_y.get() + y_offset, d_x.get() + x_offset, n, env.stream());
    axl::cuda::scale_inplace(d_y.get() + y_offset, s, n, env.stream());
    axl::cuda::add_bias_forward(d_biased.get() + y_offset, d_bias.get(), rows, cols, env.stream());
    OpCheck check(std::string("add/scale/bias ") + Elem<T>::name() + " " + std::to_string(rows) + "x" +
                  std::to_string(cols) + " y+" + std::to_string(y_offset) + " x+" + std::to_string(x_offset));
    check.add(sum, download_at(env, d_y, y_offset), one_op);
    check.add(biased, download_at(env, d_biased, y_offset), one_op);
    check.finish();
}

template <typename T>
void check_elementwise(Env& env) {
    const int64_t rows = 4096, cols = 4096, n = rows * cols;
    const auto y = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto x = round_to_bf16(env.random.uniform(n, -2.0f, 2.0f));
    const auto bias = env.random.uniform(cols, -1.0f, 1.0f);
    const float s = 0.7f;
    // One f32 operation per element: exact in f32, one rounding in bf16.
    const Tolerance one_op = std::is_same_v<T, float> ? Tolerance{0.0, 0.0} : Tolerance{0.0, kBf16Unit};
    {
        std::vector<float> ref = y;
        axl::cpu::add_inplace(ref.data(), x.data(), n);
        if (!std::is_same_v<T, float>) ref = round_to_bf16(ref);  // the device holds y + x as T
        axl::cpu::scale_inplace(ref.data(), s, n);
        auto d_y = upload<T>(env, y);
        auto d_x = upload<T>(env, x);
        axl::cuda::add_inplace(d_y.get(), d_x.get(), n, env.stream());
        axl::cuda::scale_inplace(d_y.get(), s, n, env.stream());
        OpCheck check(std::string("add_inplace + scale_inplace ") + Elem<T>::name());
        check.add(ref, download(env, d_y), one_op);
        const double ms = time_ms(env, [&] { axl::cuda::add_inplace(d_y.get(), d_x.get(), n, env.stream()); });
        check.finish(ms, bandwidth(3.0 * n * sizeof(T), ms));
    }
    {
        std::vector<float> ref = y;
        axl::cpu::add_bias_forward(ref.data(), bias.data(), rows, cols);
        auto d_y = upload<T>(env, y);
        auto d_bias = upload<float>(env, bias);
        axl::cuda::add_bias_forward(d_y.get(), d_bias.get(), rows, cols, env.stream());
        OpCheck check(std::string("add_bias_forward ") + Elem<T>::name());
        check.add(ref, download(env, d_y), one_op);
        check.finish();
    }
    {
        const auto dbias_start = env.random.uniform(cols, -1.0f, 1.0f);
        std::vector<float> dbias = dbias_start;
        axl::cpu::add_bias_backward(dbias.data(), x.data(), rows, cols);
        auto d_dout = upload<T>(env, x);
        auto d_dbias = upload<float>(env, dbias_start);
        axl::cuda::add_bias_backward(d_dbias.get(), d_dout.get(), rows, cols, env.stream());
        OpCheck check(std::string("add_bias_backward ") + Elem<T>::name());
        // f32 column sums of 4096 rows against the CPU's double sums.
        check.add(dbias, download(env, d_dbias), {1e-5 * max_abs_value(dbias), 1e-5});
        const double ms = time_ms(env, [&] {
            axl::cuda::add_bias_backward(d_dbias.get(), d_dout.get(), rows, cols, env.stream());
        });
        check.finish(ms, bandwidth(1.0 * n * sizeof(T), ms));
    }
    // Tails after the last whole vector, rows that are not whole vectors (the scalar bias
    // kernel), and misaligned y or x.
    check_elementwise_shape<T>(env, 1, 1000003, 0, 0);
    check_elementwise_shape<T>(env, 33, 1000, 0, 0);
    check_elementwise_shape<T>(env, 37, 1001, 0, 0);
    check_elementwise_shape<T>(env, 64, 128, 1, 0);
    check_elementwise_shape<T>(env, 64, 128, 0, 1);
}

void check_sum_squares(Env& env) {
    const int64_t n = 29 * 1000 * 1000 + 3;
    const auto x = env.random.uniform(n, -1.0f, 1.0f);
    const double ref = axl::cpu::sum_squares(x.data(), n);
    auto d_x = upload<float>(env, x);
    auto d_scratch = poisoned<double>(env, axl::cuda::sum_squares_scratch_doubles());
    auto d_result = poisoned<double>(env, 1);
    axl::cuda::sum_squares(d_result.get(), d_x.get(), n, d_scratch.get(), env.stream());
    double got = 0.0;
    AXL_CUDA_CHECK(cudaMemcpyAsync(&got, d_result.get(), sizeof got, cudaMemcpyDeviceToHost, env.stream()));
    env.device.synchronize();
    OpCheck check("sum_squares f32 -> f64");
    // Exact squares, double sums in another order: relative error near 1e-15.
    check.add({static_cast<float>(ref)}, {static_cast<float>(got)}, {0.0, 1e-6});
    const double relative = std::fabs(got - ref) / ref;
    if (relative > 1e-12) {
        check.row.comparison.failures += 1;
        std::printf("  sum_squares relative error %.3g in double\n", relative);
    }
    const double ms =
        time_ms(env, [&] { axl::cuda::sum_squares(d_result.get(), d_x.get(), n, d_scratch.get(), env.stream()); });
    check.finish(ms, bandwidth(4.0 * n, ms));
}

// ---- cross-entropy ------------------------------------------------------------------------

std::vector<int32_t> random_targets(Random& random, int64_t rows, int64_t vocab, int64_t* counted) {
    auto targets = random.integers(rows, 0, vocab - 1);
    *counted = 0;
    for (int32_t& t : targets) {
        if (random.integer(0, 9) == 0) t = -100;  // ignore index
        else ++*counted;
    }
    return targets;
}

double device_sum(Env& env, const DeviceArray<float>& row_loss) {
    double total = 0.0;
    for (float v : download(env, row_loss)) total += v;
    return total;
}

// Logits of type T, gradient of type G (in place when they are the same type).
template <typename T, typename G>
void check_cross_entropy(Env& env) {
    const int64_t rows = 512, vocab = 128256;
    int64_t counted = 0;
    const auto targets = random_targets(env.random, rows, vocab, &counted);
    const float grad_scale = 1.0f / static_cast<float>(counted);
    const auto logits = round_to_bf16(env.random.uniform(rows * vocab, -8.0f, 8.0f));
    std::vector<float> dlogits(rows * vocab);
    const double loss = axl::cpu::cross_entropy_forward_backward(dlogits.data(), logits.data(), targets.data(), rows,
                                                                 vocab, grad_scale);

    auto d_logits = upload<T>(env, logits);
    auto d_targets = upload_raw(env, targets);
    auto d_loss = poisoned<float>(env, rows);
    static_assert(sizeof(T) >= sizeof(G), "an in-place gradient fits the logits");
    constexpr bool in_place = std::is_same_v<T, G>;
    DeviceArray<G> d_grad_separate;
    if (!in_place) d_grad_separate = poisoned<G>(env, rows * vocab);
    G* d_grad = in_place ? reinterpret_cast<G*>(d_logits.get()) : d_grad_separate.get();
    axl::cuda::cross_entropy_forward_backward(d_loss.get(), d_grad, d_logits.get(), d_targets.get(), rows, vocab,
                                              grad_scale, env.stream());
    OpCheck check(std::string("cross_entropy ") + Elem<T>::name() + (in_place ? " in place" : " -> ") +
                  (in_place ? "" : Elem<G>::name()));
    // f32 sums of exp against the CPU's double sums.
    check.add({static_cast<float>(loss)}, {static_cast<float>(device_sum(env, d_loss))}, {0.0, 1e-5});
    const std::vector<float> grad_got =
        in_place ? download(env, DeviceArray<G>{std::move(d_logits.buffer), static_cast<size_t>(rows * vocab)})
                 : download(env, d_grad_separate);
    check.add(dlogits, grad_got, output_tolerance<G>(dlogits, 1e-4, 1e-6));
    // Timed out of place into the same buffer type (in place would destroy the input).
    auto d_grad_timed = poisoned<G>(env, rows * vocab);
    auto d_logits_timed = upload<T>(env, logits);
    const double ms = time_ms(env, [&] {
        axl::cuda::cross_entropy_forward_backward(d_loss.get(), d_grad_timed.get(), d_logits_timed.get(),
                                                  d_targets.get(), rows, vocab, grad_scale, env.stream());
    });
    check.finish(ms, bandwidth(static_cast<double>(rows) * vocab * (2 * sizeof(T) + sizeof(G)), ms));
}

void check_linear_cross_entropy(Env& env) {
    const int64_t rows = 512, dim = 1024, vocab = 32000, chunk = 128;
    int64_t counted = 0;
    const auto targets = random_targets(env.random, rows, vocab, &counted);
    const float grad_scale = 1.0f / static_cast<float>(counted);
    const auto hidden = round_to_bf16(env.random.uniform(rows * dim, -1.0f, 1.0f));
    const auto weight = round_to_bf16(env.random.uniform(vocab * dim, -0.05f, 0.05f));
    std::vector<float> logits(rows * vocab), dhidden(rows * dim);
    axl::cpu::matmul(logits.data(), hidden.data(), weight.data(), rows, vocab, dim, false, true, 1.0f, 0.0f);
    const double loss = axl::cpu::cross_entropy_forward_backward(logits.data(), logits.data(), targets.data(), rows,
                                                                 vocab, grad_scale);
    axl::cpu::matmul(dhidden.data(), logits.data(), weight.data(), rows, dim, vocab, false, false, 1.0f, 0.0f);

    auto d_hidden = upload<bf16>(env, hidden);
    auto d_weight = upload<bf16>(env, weight);
    auto d_targets = upload_raw(env, targets);
    auto d_loss = poisoned<float>(env, rows);
    auto d_dhidden = poisoned<bf16>(env, rows * dim);
    auto d_logits = poisoned<bf16>(env, chunk * vocab);
    auto run = [&] {
        axl::cuda::linear_cross_entropy(env.blas, d_loss.get(), d_dhidden.get(), d_hidden.get(), d_weight.get(),
                                        d_targets.get(), rows, dim, vocab, grad_scale, d_logits.get(), chunk);
    };
    run();
    OpCheck check("linear_cross_entropy bf16 (chunked)");
    // The logits are rounded to bf16 (relative 2^-9) before the softmax: the mean loss moves by
    // far less than that, as the rounding errors of the rows' logits cancel on average.
    check.add({static_cast<float>(loss)}, {static_cast<float>(device_sum(env, d_loss))}, {1e-3, 1e-4});
    // dhidden sums vocab products of a bf16-rounded dlogits: bf16-level, relative to its scale.
    check.add(dhidden, download(env, d_dhidden), {2e-3 * max_abs_value(dhidden), 2.0 * kBf16Unit});
    const double ms = time_ms(env, run);
    check.finish(ms, flop_rate(4.0 * rows * vocab * dim, ms));
}

// ---- matmul -------------------------------------------------------------------------------

template <typename AB, typename C>
void check_matmul(Env& env) {
    const int64_t m = 384, n = 640, k = 1024;
    for (int variant = 0; variant < 5; ++variant) {
        const bool trans_a = variant & 1;
        const bool trans_b = variant & 2;
        const bool accumulate = variant == 4;  // alpha 2, beta 0.5 over a random C
        const float alpha = accumulate ? 2.0f : 1.0f;
        const float beta = accumulate ? 0.5f : 0.0f;
        const auto a = round_to_bf16(env.random.uniform(m * k, -1.0f, 1.0f));
        const auto b = round_to_bf16(env.random.uniform(k * n, -1.0f, 1.0f));
        const auto c_start = round_to_bf16(env.random.uniform(m * n, -1.0f, 1.0f));
        std::vector<float> c = c_start;
        axl::cpu::matmul(c.data(), a.data(), b.data(), m, n, k, trans_a, trans_b, alpha, beta);
        auto d_a = upload<AB>(env, a);
        auto d_b = upload<AB>(env, b);
        auto d_c = accumulate ? upload<C>(env, c_start) : poisoned<C>(env, m * n);
        axl::cuda::matmul(env.blas, d_c.get(), d_a.get(), d_b.get(), m, n, k, trans_a, trans_b, alpha, beta);
        OpCheck check(std::string("matmul ") + Elem<AB>::name() + "->" + Elem<C>::name() + (trans_a ? " At" : " A") +
                      (trans_b ? "Bt" : "B") + (accumulate ? " a2 b.5" : ""));
        check.add(c, download(env, d_c), output_tolerance<C>(c, 1e-4, 1e-5));
        check.finish();
    }
}

void bench_matmul(Env& env) {
    const int64_t m = 8192, n = 8192, k = 8192;
    auto d_a = upload<bf16>(env, env.random.uniform(m * k, -1.0f, 1.0f));
    auto d_b = upload<bf16>(env, env.random.uniform(k * n, -1.0f, 1.0f));
    auto d_c = poisoned<bf16>(env, m * n);
    const double ms = time_ms(env, [&] {
        axl::cuda::matmul(env.blas, d_c.get(), d_a.get(), d_b.get(), m, n, k, false, true, 1.0f, 0.0f);
    });
    OpCheck check("matmul bf16 8192^3 (bench only)");
    check.finish(ms, flop_rate(2.0 * m * n * k, ms));
}

// ---- attention ----------------------------------------------------------------------------

// Packed rows: random run lengths (some of 1, none aligned to the tiles on purpose).
std::vector<int32_t> random_segments(Random& random, int64_t batch, int64_t seq) {
    std::vector<int32_t> segment(batch * seq);
    for (int64_t b = 0; b < batch; ++b) {
        int32_t id = 0;
        int64_t t = 0;
        while (t < seq) {
            const int64_t length = random.integer(0, 3) == 0 ? 1 : random.integer(2, seq / 2);
            for (int64_t i = 0; i < length && t < seq; ++i, ++t) segment[b * seq + t] = id;
            ++id;
        }
    }
    return segment;
}

// The bf16 tensor-core kernels (axl::cuda::set_attention_kernel_variant): mma.sync, and the
// default (on Hopper: wgmma); each is checked and timed.
constexpr int kAttentionVariants[] = {1, 0};
std::string attention_variant_name(int variant) { return variant == 1 ? " mma.sync" : " default"; }

// misaligned: q starts one element into its buffer, which sends the bf16 forward to the tiled
// f32-FMA kernel instead of the tensor cores. variant: as set_attention_kernel_variant.
template <typename T>
void check_attention(Env& env, int64_t head_dim, bool packed, bool misaligned = false, int variant = 0) {
    axl::cuda::set_attention_kernel_variant(variant);
    const std::string variant_name = misaligned ? "" : attention_variant_name(variant);
    const int64_t batch = 2, seq = 1000, heads = 8, kv_heads = 2;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const int64_t q_n = batch * seq * heads * head_dim, kv_n = batch * seq * kv_heads * head_dim;
    const auto q = round_to_bf16(env.random.uniform(q_n, -1.0f, 1.0f));
    const auto k = round_to_bf16(env.random.uniform(kv_n, -1.0f, 1.0f));
    const auto v = round_to_bf16(env.random.uniform(kv_n, -1.0f, 1.0f));
    const auto dout = round_to_bf16(env.random.uniform(q_n, -1.0f, 1.0f));
    const std::vector<int32_t> segment = packed ? random_segments(env.random, batch, seq) : std::vector<int32_t>();
    const int32_t* segment_ptr = packed ? segment.data() : nullptr;

    std::vector<float> out(q_n), lse(batch * heads * seq), dq(q_n), dk(kv_n), dv(kv_n);
    axl::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), segment_ptr, batch, seq, heads,
                                kv_heads, head_dim, scale);
    // The backward reads out as the device will hold it (rounded to T).
    const std::vector<float> out_as_t = std::is_same_v<T, float> ? out : round_to_bf16(out);
    axl::cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), out_as_t.data(), q.data(), k.data(),
                                 v.data(), lse.data(), segment_ptr, batch, seq, heads, kv_heads, head_dim, scale);

    std::vector<float> q_shifted(misaligned ? 1 : 0, 1.0f);
    q_shifted.insert(q_shifted.end(), q.begin(), q.end());
    auto d_q_buffer = upload<T>(env, q_shifted);
    struct {
        T* pointer;
        T* get() const { return pointer; }
    } d_q{d_q_buffer.get() + (misaligned ? 1 : 0)};
    auto d_k = upload<T>(env, k);
    auto d_v = upload<T>(env, v);
    auto d_dout = upload<T>(env, dout);
    DeviceArray<int32_t> d_segment;
    if (packed) d_segment = upload_raw(env, segment);
    const int32_t* d_segment_ptr = packed ? d_segment.get() : nullptr;
    auto d_out = poisoned<T>(env, q_n);
    auto d_lse = poisoned<float>(env, lse.size());
    const std::string suffix = std::string(Elem<T>::name()) + " d" + std::to_string(head_dim) +
                               (packed ? " packed" : " causal") + (misaligned ? " tiled" : "") + variant_name;
    auto forward = [&] {
        axl::cuda::attention_forward(d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), d_segment_ptr, batch,
                                     seq, heads, kv_heads, head_dim, scale, env.stream());
    };
    forward();
    {
        OpCheck check("attention_forward " + suffix);
        // bf16 runs on the tensor cores, which take the probabilities rounded to bf16 (as
        // flash-attention does): weights off by u = 2^-8 relative in the numerator, not in the
        // f32 denominator, move the output by at most 2u max|v| (cancelling rows included), plus
        // the output's own rounding.
        const Tolerance out_tol = std::is_same_v<T, float> || misaligned
                                      ? output_tolerance<T>(out, 1e-4, 1e-5)
                                      : Tolerance{2.0 * kBf16Unit * max_abs_value(v), kBf16Unit + 1e-4};
        check.add(out, download(env, d_out), out_tol);
        check.add(lse, download(env, d_lse), {1e-5, 1e-5});
        check.finish(time_ms(env, forward));
    }
    // The backward gets the CPU's out and lse, so that it is checked on its own.
    auto d_out_ref = upload<T>(env, out_as_t);
    auto d_lse_ref = upload<float>(env, lse);
    auto d_delta = poisoned<float>(env, axl::cuda::attention_backward_scratch_floats(batch, seq, heads));
    auto d_dq = poisoned<T>(env, q_n);
    auto d_dk = poisoned<T>(env, kv_n);
    auto d_dv = poisoned<T>(env, kv_n);
    auto backward = [&] {
        axl::cuda::attention_backward(d_dq.get(), d_dk.get(), d_dv.get(), d_dout.get(), d_out_ref.get(), d_q.get(),
                                      d_k.get(), d_v.get(), d_lse_ref.get(), d_delta.get(), d_segment_ptr, batch, seq,
                                      heads, kv_heads, head_dim, scale, env.stream());
    };
    backward();
    OpCheck check("attention_backward " + suffix);
    // Gradients are sums of many signed terms: f32 error relative to their scale. On the tensor
    // cores P and dS enter the products rounded to bf16 (as in flash-attention): u relative per
    // term, so bf16-level error relative to the gradient's scale.
    const bool tensor_cores = std::is_same_v<T, bf16> && !misaligned;
    auto grad_tolerance = [&](const std::vector<float>& ref) {
        return tensor_cores ? Tolerance{2.0 * kBf16Unit * max_abs_value(ref), 2.0 * kBf16Unit}
                            : output_tolerance<T>(ref, 1e-3, 1e-4);
    };
    const std::vector<float> dk_first = download(env, d_dk), dv_first = download(env, d_dv);
    check.add(dq, download(env, d_dq), grad_tolerance(dq));
    check.add(dk, dk_first, grad_tolerance(dk));
    check.add(dv, dv_first, grad_tolerance(dv));
    check.finish(time_ms(env, backward));
    // The timed runs wrote dk and dv again: each has one writer per row, so they must repeat
    // bit for bit (a race between the kernel's stages would show here first).
    OpCheck repeat("attention_backward " + suffix + " dk dv repeat");
    repeat.add(dk_first, download(env, d_dk), {0.0, 0.0});
    repeat.add(dv_first, download(env, d_dv), {0.0, 0.0});
    repeat.finish();
    axl::cuda::set_attention_kernel_variant(0);
}

// The shapes of an 8B (d128) and a 1B (d64) Llama layer in training: B4 T2048, 32 query heads
// over 8 kv heads, causal.
void bench_attention(Env& env, int variant) {
    axl::cuda::set_attention_kernel_variant(variant);
    const std::string variant_name = attention_variant_name(variant);
    const int64_t batch = 4, seq = 2048, heads = 32, kv_heads = 8;
    for (const int64_t head_dim : {int64_t{128}, int64_t{64}}) {
        const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
        const int64_t q_n = batch * seq * heads * head_dim, kv_n = batch * seq * kv_heads * head_dim;
        auto d_q = upload<bf16>(env, env.random.uniform(q_n, -1.0f, 1.0f));
        auto d_k = upload<bf16>(env, env.random.uniform(kv_n, -1.0f, 1.0f));
        auto d_v = upload<bf16>(env, env.random.uniform(kv_n, -1.0f, 1.0f));
        auto d_dout = upload<bf16>(env, env.random.uniform(q_n, -1.0f, 1.0f));
        auto d_out = poisoned<bf16>(env, q_n);
        auto d_lse = poisoned<float>(env, batch * heads * seq);
        auto d_delta = poisoned<float>(env, axl::cuda::attention_backward_scratch_floats(batch, seq, heads));
        auto d_dq = poisoned<bf16>(env, q_n);
        auto d_dk = poisoned<bf16>(env, kv_n);
        auto d_dv = poisoned<bf16>(env, kv_n);
        // Causal: half of the T x T scores; 2 GEMM-like products forward, 2.5x that backward.
        const double forward_flops = 4.0 * batch * heads * head_dim * (seq * (seq + 1) / 2.0);
        const std::string shape = "B4 T2048 H32 KV8 d" + std::to_string(head_dim);
        const double forward_ms = time_ms(env, [&] {
            axl::cuda::attention_forward(d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), nullptr, batch,
                                         seq, heads, kv_heads, head_dim, scale, env.stream());
        });
        OpCheck("attention_forward bf16 " + shape + variant_name).finish(forward_ms, flop_rate(forward_flops, forward_ms));
        const double backward_ms = time_ms(env, [&] {
            axl::cuda::attention_backward(d_dq.get(), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(), d_q.get(),
                                          d_k.get(), d_v.get(), d_lse.get(), d_delta.get(), nullptr, batch, seq, heads,
                                          kv_heads, head_dim, scale, env.stream());
        });
        OpCheck("attention_backward bf16 " + shape + variant_name)
            .finish(backward_ms, flop_rate(2.5 * forward_flops, backward_ms));
    }
}

// ---- AdamW --------------------------------------------------------------------------------

void check_adamw(Env& env) {
    auto host = std::make_shared<axl::HostAllocator>(nullptr);
    std::vector<int64_t> sizes;
    for (int i = 0; i < 60; ++i) sizes.push_back(env.random.integer(1, 40000));
    sizes.push_back(3 * 1000 * 1000 + 17);  // spans several launches
    std::vector<axl::Tensor> params, grads;
    for (int64_t n : sizes) {
        params.push_back(axl::Tensor::empty(host, axl::DType::F32, {n}, "param"));
        grads.push_back(axl::Tensor::empty(host, axl::DType::F32, {n}, "grad"));
        const auto values = env.random.uniform(n, -1.0f, 1.0f);
        std::copy(values.begin(), values.end(), params.back().f32());
    }
    axl::AdamWConfig config;
    config.weight_decay = 0.01;
    const double lr = 1e-3;

    // Tensor 0's arrays start one float into their buffers (not 16-byte aligned: the scalar path).
    auto shift = [](size_t i) -> size_t { return i == 0 ? 1 : 0; };
    std::vector<DeviceArray<float>> d_param, d_grad, d_m, d_v;
    for (size_t i = 0; i < sizes.size(); ++i) {
        const float* p = params[i].f32();
        std::vector<float> param_values(sizes[i] + shift(i), 1.0f);
        std::copy(p, p + sizes[i], param_values.begin() + static_cast<std::ptrdiff_t>(shift(i)));
        d_param.push_back(upload<float>(env, param_values));
        d_grad.push_back(poisoned<float>(env, sizes[i] + shift(i)));
        d_m.push_back(upload<float>(env, std::vector<float>(sizes[i] + shift(i), 0.0f)));
        d_v.push_back(upload<float>(env, std::vector<float>(sizes[i] + shift(i), 0.0f)));
    }
    std::vector<axl::cuda::AdamWTensor> tensors;
    for (size_t i = 0; i < sizes.size(); ++i)
        tensors.push_back({d_param[i].get() + shift(i), d_grad[i].get() + shift(i), d_m[i].get() + shift(i),
                           d_v[i].get() + shift(i), sizes[i]});
    auto download_tensor = [&](const DeviceArray<float>& a, size_t i) {
        const auto all = download(env, a);
        return std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(shift(i)), all.end());
    };

    axl::AdamW cpu_optimizer(params, config, host);
    for (int step = 1; step <= 3; ++step) {
        for (size_t i = 0; i < sizes.size(); ++i) {
            const auto g = env.random.uniform(sizes[i], -0.1f, 0.1f);
            std::copy(g.begin(), g.end(), grads[i].f32());
            AXL_CUDA_CHECK(cudaMemcpyAsync(d_grad[i].get() + shift(i), g.data(), g.size() * sizeof(float), cudaMemcpyHostToDevice,
                                           env.stream()));
        }
        cpu_optimizer.step(params, grads, lr);
        axl::cuda::adamw_step(tensors.data(), tensors.size(),
                              axl::cuda::adamw_coefficients(config.beta1, config.beta2, config.eps,
                                                            config.weight_decay, step, lr),
                              env.stream());
    }
    OpCheck check("adamw_step f32 (61 tensors, 3 steps)");
    for (size_t i = 0; i < sizes.size(); ++i) {
        auto as_vector = [&](const axl::Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); };
        check.add(as_vector(params[i]), download_tensor(d_param[i], i), {0.0, 0.0});  // same f32 operations: exact
        check.add(as_vector(cpu_optimizer.exp_avg()[i]), download_tensor(d_m[i], i), {0.0, 0.0});
        check.add(as_vector(cpu_optimizer.exp_avg_sq()[i]), download_tensor(d_v[i], i), {0.0, 0.0});
    }
    // Timed on a LoRA-shaped set: 448 adapters of 64K values (r 16 x 4096), 29M parameters.
    std::vector<DeviceArray<float>> bench_arrays;
    std::vector<axl::cuda::AdamWTensor> bench_tensors;
    const int64_t bench_n = 65536;
    const auto values = env.random.uniform(bench_n, -1.0f, 1.0f);
    for (int i = 0; i < 448; ++i) {
        for (int j = 0; j < 4; ++j) bench_arrays.push_back(upload<float>(env, values));
        const size_t base = bench_arrays.size() - 4;
        bench_tensors.push_back({bench_arrays[base].get(), bench_arrays[base + 1].get(), bench_arrays[base + 2].get(),
                                 bench_arrays[base + 3].get(), bench_n});
    }
    const auto c = axl::cuda::adamw_coefficients(0.9, 0.999, 1e-8, 0.0, 1, lr);
    const double ms = time_ms(env, [&] { axl::cuda::adamw_step(bench_tensors.data(), bench_tensors.size(), c, env.stream()); });
    check.finish(ms, bandwidth(448.0 * bench_n * 7 * sizeof(float), ms));
}

// ---- dequantize ---------------------------------------------------------------------------

// A bitsandbytes 4-bit weight, quantized on the CPU, on the device, with its CPU
// dequantization (rounded once to bf16 for a bf16 output).
template <typename T>
struct DeviceBnb4Bit {
    axl::QuantizedTensor q;
    std::vector<float> ref;
    DeviceArray<uint8_t> packed, absmax_codes;
    DeviceArray<float> absmax, nested, code_map;
    axl::cuda::Bnb4BitWeight w;

    DeviceBnb4Bit(Env& env, const std::vector<float>& weight, int64_t rows, int64_t cols,
                  const axl::QuantConfig& config)
        : q(axl::quantize(weight.data(), rows, cols, config)), ref(rows * cols) {
        axl::dequantize(q, ref.data());
        if (!std::is_same_v<T, float>) ref = round_to_bf16(ref);  // the CPU's f32, rounded once
        packed = upload_raw(env, q.packed);
        w.format = config.format;
        w.rows = rows;
        w.cols = cols;
        w.block_size = q.block_size;
        w.packed = packed.get();
        if (q.double_quant) {
            absmax_codes = upload_raw(env, q.double_quant->codes);
            nested = upload_raw(env, q.double_quant->absmax);
            code_map = upload_raw(env, q.double_quant->code_map);
            w.absmax_codes = absmax_codes.get();
            w.nested_absmax = nested.get();
            w.code_map = code_map.get();
            w.offset = q.double_quant->offset;
        } else {
            absmax = upload_raw(env, q.scales);
            w.absmax = absmax.get();
        }
    }
};

// Dequantizes `weight` in the row ranges [cuts[i], cuts[i + 1]) into one output, `offset`
// elements past an aligned buffer, and checks it bit-exact.
template <typename T>
void check_dequantize_ranges(Env& env, OpCheck& check, const DeviceBnb4Bit<T>& weight,
                             const std::vector<int64_t>& cuts, size_t offset) {
    const int64_t cols = weight.w.cols;
    auto d_out = poisoned<T>(env, weight.ref.size() + offset);
    for (size_t i = 0; i + 1 < cuts.size(); ++i)
        axl::cuda::dequantize_bnb_4bit_rows(weight.w, cuts[i], cuts[i + 1], d_out.get() + offset + cuts[i] * cols,
                                            env.stream());
    check.add(weight.ref, download_at(env, d_out, offset), {0.0, 0.0});  // bit-exact
}

// The same into rows `stride` apart (room for folded LoRA columns): the rows bit-exact, the
// columns between untouched.
void check_dequantize_rows_apart(Env& env, OpCheck& check, const DeviceBnb4Bit<bf16>& weight, int64_t stride,
                                 size_t offset) {
    const int64_t rows = weight.w.rows, cols = weight.w.cols;
    auto d_out = poisoned<bf16>(env, rows * stride + offset);
    const int64_t middle = rows / 3;
    axl::cuda::dequantize_bnb_4bit_rows(weight.w, 0, middle, d_out.get() + offset, stride, env.stream());
    axl::cuda::dequantize_bnb_4bit_rows(weight.w, middle, rows, d_out.get() + offset + middle * stride, stride,
                                        env.stream());
    const std::vector<float> spread = download_at(env, d_out, offset);
    check.add(weight.ref, gather_rows(spread, rows, cols, stride), {0.0, 0.0});  // bit-exact
    check.add({0.0f}, {written_between_rows(spread, rows, cols, stride)}, {0.0, 0.0});
}

template <typename T>
void check_dequantize(Env& env, axl::QuantFormat format, bool double_quant) {
    const int64_t rows = 4096, cols = 4096;
    axl::QuantConfig config;
    config.format = format;
    config.double_quant = double_quant;
    const DeviceBnb4Bit<T> weight(env, env.random.uniform(rows * cols, -0.1f, 0.1f), rows, cols, config);
    OpCheck check(std::string("dequantize ") + axl::quant_format_name(format) + (double_quant ? "+dq" : "") + " -> " +
                  Elem<T>::name());
    // In row ranges, as a tiled consumer calls it; 3 and 997 rows end mid-tile of the vector
    // kernel (1024 words of 4096-column rows, 512 words a row).
    check_dequantize_ranges(env, check, weight, {0, 3, 1000, rows}, 0);
    // An output that is not 16-byte aligned takes the scalar kernel.
    if (std::is_same_v<T, bf16> && !double_quant) check_dequantize_ranges(env, check, weight, {0, rows}, 1);
    // The smallest and a large block size, on a short weight.
    config.block_size = double_quant ? 32 : 256;
    const int64_t short_rows = 45, short_cols = 768;
    const DeviceBnb4Bit<T> short_weight(env, env.random.uniform(short_rows * short_cols, -0.1f, 0.1f), short_rows,
                                        short_cols, config);
    check_dequantize_ranges(env, check, short_weight, {0, 1, short_rows}, 0);
    check_dequantize_ranges(env, check, short_weight, {0, short_rows}, 3);
    if constexpr (std::is_same_v<T, bf16>) {
        // Rows apart: the vector kernel (stride a multiple of 8) and the scalar one (misaligned).
        check_dequantize_rows_apart(env, check, weight, cols + 48, 0);
        check_dequantize_rows_apart(env, check, short_weight, short_cols + 16, 0);
        check_dequantize_rows_apart(env, check, short_weight, short_cols + 12, 2);
    }
    auto d_out = poisoned<T>(env, rows * cols);
    const double ms =
        time_ms(env, [&] { axl::cuda::dequantize_bnb_4bit_rows(weight.w, 0, rows, d_out.get(), env.stream()); });
    check.finish(ms, bandwidth(rows * cols * (0.5 + sizeof(T)), ms));
}

// ---- lora_weight_columns ------------------------------------------------------------------

// A base weight's LoRA columns: B in its projection's place, zeros in the group's other places,
// the weight's own columns untouched; exact (a copy).
void check_lora_weight_columns(Env& env) {
    const int64_t rows = 1000, in = 512, rank = 16;
    OpCheck check("lora_weight_columns");
    for (int64_t place = 0; place < 3; ++place) {
        const int64_t width = 3 * rank, ld = in + width;
        const auto b = round_to_bf16(env.random.uniform(rows * rank, -1.0f, 1.0f));
        std::vector<float> expected(rows * width, 0.0f);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < rank; ++j) expected[r * width + place * rank + j] = b[r * rank + j];
        auto d_b = upload<bf16>(env, b);
        auto d_weight = poisoned<bf16>(env, rows * ld);
        axl::cuda::lora_weight_columns(d_weight.get(), ld, rows, in, width, d_b.get(), rank, place * rank,
                                       env.stream());
        const std::vector<float> all = download(env, d_weight);
        std::vector<float> columns(rows * width), own(rows * in);
        for (int64_t r = 0; r < rows; ++r) {
            std::copy_n(all.begin() + r * ld + in, width, columns.begin() + r * width);
            std::copy_n(all.begin() + r * ld, in, own.begin() + r * in);
        }
        check.add(expected, columns, {0.0, 0.0});
        check.add({static_cast<float>(own.size())},
                  {static_cast<float>(std::count_if(own.begin(), own.end(), [](float v) { return std::isnan(v); }))},
                  {0.0, 0.0});
    }
    check.finish();
}

// ---- device runtime -----------------------------------------------------------------------

// The allocator's statistics, its budget error, block reuse, and CUDA errors as axl errors.
void check_runtime(Env& env) {
    OpCheck check("runtime (allocator, errors)");
    std::vector<std::string> problems;
    auto expect = [&](bool ok, const std::string& what) {
        if (!ok) problems.push_back(what);
    };
    {
        DeviceAllocator allocator(env.device.index(), env.stream(), 64 << 20);
        {
            DeviceBuffer a(allocator, 10 << 20, "a");
            DeviceBuffer b(allocator, 20 << 20, "b");
            expect(allocator.current_bytes() == (30u << 20), "current after two allocations");
            try {
                DeviceBuffer c(allocator, 40 << 20, "too much");
                expect(false, "budget not enforced");
            } catch (const axl::Error& e) {
                expect(e.code() == AXL_ERR_OUT_OF_MEMORY, "budget error code");
                expect(std::string(e.what()).find("too much") != std::string::npos, "budget error names the buffer");
            }
            expect(allocator.current_bytes() == (30u << 20), "current after a refused allocation");
        }
        expect(allocator.current_bytes() == 0 && allocator.peak_bytes() == (30u << 20), "current/peak after free");
        const uint64_t reserved = allocator.reserved_bytes();
        { DeviceBuffer again(allocator, 20 << 20, "again"); }
        expect(allocator.reserved_bytes() == reserved, "a freed block is reused from the cache");
        allocator.reset_peak();
        expect(allocator.peak_bytes() == 0, "reset_peak");
        allocator.release_cached();
        expect(allocator.reserved_bytes() == 0, "release_cached returns the cache");
    }
    try {
        AXL_CUDA_CHECK(cudaSetDevice(axl::cuda::device_count() + 7));
        expect(false, "a failing CUDA call did not throw");
    } catch (const axl::Error& e) {
        const std::string message = e.what();
        expect(e.code() == AXL_ERR_BACKEND, "CUDA error code");
        expect(message.find("cudaSetDevice") != std::string::npos &&
                   message.find("kernel_check.cpp") != std::string::npos,
               "CUDA error names the call and the site: " + message);
    }
    env.device.make_current();
    try {
        DeviceAllocator unlimited(env.device.index(), env.stream(), 0);
        DeviceBuffer huge(unlimited, size_t{1} << 50, "a petabyte");
        expect(false, "a petabyte was allocated");
    } catch (const axl::Error& e) {
        expect(e.code() == AXL_ERR_OUT_OF_MEMORY && std::string(e.what()).find("a petabyte") != std::string::npos,
               std::string("device OOM is AXL_ERR_OUT_OF_MEMORY naming the buffer: ") + e.what());
    }
    try {
        axl::cuda::attention_forward(static_cast<float*>(nullptr), nullptr, nullptr, nullptr, nullptr, nullptr, 1, 16, 2,
                                     1, 80, 1.0f, env.stream());
        expect(false, "attention took head_dim 80");
    } catch (const axl::Error& e) {
        expect(e.code() == AXL_ERR_UNSUPPORTED, "unsupported head_dim is AXL_ERR_UNSUPPORTED");
    }
    {
        cudaStream_t caller_stream = nullptr;
        AXL_CUDA_CHECK(cudaStreamCreate(&caller_stream));
        {
            axl::cuda::Device on_caller_stream(env.device.index(), caller_stream);
            expect(on_caller_stream.stream() == caller_stream && !on_caller_stream.owns_stream(),
                   "a caller's stream is used as it is");
        }
        expect(cudaStreamQuery(caller_stream) != cudaErrorInvalidResourceHandle, "a caller's stream is not destroyed");
        AXL_CUDA_CHECK(cudaStreamDestroy(caller_stream));
        env.device.make_current();
    }
    try {
        axl::cuda::Device missing(axl::cuda::device_count(), nullptr);
        expect(false, "a missing device was accepted");
    } catch (const axl::Error& e) {
        expect(e.code() == AXL_ERR_INVALID_ARGUMENT, "missing device error code");
    }
    for (const auto& p : problems) std::printf("  runtime problem: %s\n", p.c_str());
    check.row.checked = true;
    check.row.comparison.failures = static_cast<int64_t>(problems.size());
    check.finish();
}

std::string g_device_name = "?";

void print_table(uint64_t seed) {
    std::printf("\n== axl kernel checks on %s (seed %llu) ==\n", g_device_name.c_str(),
                static_cast<unsigned long long>(seed));
    std::printf("%-40s %-6s %-10s %-10s %-18s %10s  %s\n", "op", "result", "max_abs", "max_rel", "tol(atol,rtol)", "ms",
                "rate");
    int passed = 0, failed = 0;
    for (const Row& row : g_rows) {
        passed += row.checked && row.pass();
        failed += row.checked && !row.pass();
        const std::string tol =
            row.checked ? format_double(row.tol.atol, "%.1e") + "," + format_double(row.tol.rtol, "%.1e") : "-";
        std::printf("%-40s %-6s %-10s %-10s %-18s %10s  %s\n", row.name.c_str(), row.status(),
                    row.checked ? format_double(row.comparison.max_abs).c_str() : "-",
                    row.checked ? format_double(row.comparison.max_rel).c_str() : "-", tol.c_str(),
                    row.ms >= 0 ? format_double(row.ms, "%.4f").c_str() : "-", row.rate.c_str());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
}

#include "check_dequantize_formats.hpp"
#include "check_dequant_gemm.hpp"

// AXL_CHECK_ONLY=a,b runs only the checks whose group name contains one of the words (for
// example AXL_CHECK_ONLY=attention); unset runs everything.
bool selected(const char* group) {
    const char* only = std::getenv("AXL_CHECK_ONLY");
    if (only == nullptr || *only == '\0') return true;
    std::string words = only;
    size_t begin = 0;
    while (begin <= words.size()) {
        size_t end = words.find(',', begin);
        if (end == std::string::npos) end = words.size();
        const std::string word = words.substr(begin, end - begin);
        if (!word.empty() && std::string(group).find(word) != std::string::npos) return true;
        begin = end + 1;
    }
    return false;
}

}  // namespace

int main() {
    if (axl::cuda::device_count() == 0) {
        std::printf("no CUDA device: skipping the kernel checks\n");
        return kSkipExitCode;
    }
    const char* seed_text = std::getenv("AXL_CHECK_SEED");
    const uint64_t seed = seed_text ? std::strtoull(seed_text, nullptr, 10)
                                    : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    try {
        axl::cuda::Device device(0, nullptr);
        g_device_name = device.name();
        std::printf("device %d: %s, %d SMs; seed %llu (AXL_CHECK_SEED to repeat)\n", device.index(),
                    device.name().c_str(), device.multiprocessors(), static_cast<unsigned long long>(seed));
        DeviceAllocator allocator(device.index(), device.stream(), 0);
        axl::cuda::BlasLt blas(allocator);
        Random random(seed);
        Env env{device, allocator, blas, random};

        if (selected("runtime")) check_runtime(env);
        if (selected("embedding")) check_embedding<float>(env);
        if (selected("embedding")) check_embedding<bf16>(env);
        if (selected("rmsnorm")) check_rmsnorm<float>(env);
        if (selected("rmsnorm")) check_rmsnorm<bf16>(env);
        if (selected("rmsnorm")) check_rmsnorm_strided(env);
        if (selected("rope_tables")) check_rope_tables(env);
        if (selected("rope")) check_rope<float>(env);
        if (selected("rope")) check_rope<bf16>(env);
        if (selected("swiglu")) check_swiglu<float>(env);
        if (selected("swiglu")) check_swiglu<bf16>(env);
        if (selected("elementwise")) check_elementwise<float>(env);
        if (selected("elementwise")) check_elementwise<bf16>(env);
        if (selected("sum_squares")) check_sum_squares(env);
        if (selected("cross_entropy")) check_cross_entropy<float, float>(env);
        if (selected("cross_entropy")) check_cross_entropy<bf16, bf16>(env);
        if (selected("cross_entropy")) check_cross_entropy<float, bf16>(env);
        if (selected("matmul")) check_matmul<float, float>(env);
        if (selected("matmul")) check_matmul<bf16, float>(env);
        if (selected("matmul")) check_matmul<bf16, bf16>(env);
        if (selected("linear_cross_entropy")) check_linear_cross_entropy(env);
        if (selected("adamw")) check_adamw(env);
        if (selected("dequantize")) check_dequantize<float>(env, axl::QuantFormat::NF4, false);
        if (selected("dequantize")) check_dequantize<bf16>(env, axl::QuantFormat::NF4, false);
        if (selected("dequantize")) check_dequantize<float>(env, axl::QuantFormat::NF4, true);
        if (selected("dequantize")) check_dequantize<bf16>(env, axl::QuantFormat::NF4, true);
        if (selected("dequantize")) check_dequantize<float>(env, axl::QuantFormat::FP4, false);
        if (selected("dequant_gemm")) check_dequant_gemm(env);
        if (selected("lora_weight_columns")) check_lora_weight_columns(env);
        if (selected("dequantize_formats")) check_dequantize_formats(env);
        if (selected("attention")) check_attention<float>(env, 128, false);
        if (selected("attention")) check_attention<float>(env, 128, true);
        if (selected("attention")) check_attention<float>(env, 64, true);
        if (selected("attention")) {
            for (const int variant : kAttentionVariants)
                for (const int64_t head_dim : {int64_t{64}, int64_t{128}})
                    for (const bool packed : {false, true}) check_attention<bf16>(env, head_dim, packed, false, variant);
            check_attention<bf16>(env, 128, true, true);  // misaligned: the f32-FMA kernels
            for (const int variant : kAttentionVariants) bench_attention(env, variant);
            axl::cuda::set_attention_kernel_variant(0);
        }
        if (selected("matmul")) bench_matmul(env);
        device.synchronize();
        std::printf("device memory: peak %.1f MiB through the allocator\n", allocator.peak_bytes() / 1048576.0);
        print_table(seed);
    } catch (const axl::Error& e) {
        std::printf("error (axl status %d): %s\n", e.code(), e.what());
        print_table(seed);
        return 1;
    }
    for (const Row& row : g_rows)
        if (row.checked && !row.pass()) return 1;
    return 0;
}
