// RMSNorm on the device, out = weight * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps) (the twin of
// backend/cpu/rmsnorm.cpp, same operation order; row sums are f32 tree sums here where the
// CPU sums in double, a difference far below the f32 rounding of the outputs).
//
// Forward and dx take one group of threads per row: 8, 16 or 32 lanes of a warp for short rows
// (per-head q/k norms), a whole block of 256 to 1024 threads for long ones. Where the row length
// is a multiple of the vector width and the pointers are 16-byte aligned, a thread loads its
// share of the row in 16-byte vectors and keeps them in registers between the sum and the write
// (up to kCachedVectors<Group>; longer rows read the rest again, from cache), so the row comes
// from memory once; other rows take the scalar kernels.
#include <type_traits>

#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

constexpr int kRowThreads = 256;  // threads of the scalar kernels' blocks and of the lane groups' blocks

// Vectors of its row a thread holds in registers between the two passes: more for lane groups
// (short rows, few threads), fewer for block groups so that the backward (two inputs cached)
// keeps enough blocks resident.
template <int Group>
inline constexpr int kCachedVectors = Group <= kWarpSize ? 4 : 2;

// Threads of a block working on Group-thread rows: 256 (256 / Group rows) for lane groups,
// one row of Group threads otherwise.
template <int Group>
inline constexpr int kBlockThreads = Group < kRowThreads ? kRowThreads : Group;

// The weight-gradient pass: each block owns kColumnsPerBlock columns over all rows, so every
// dweight element has a single writer and the sum does not depend on the launch.
constexpr int kColumnsPerBlock = 32;
constexpr int kRowGroups = 8;  // threads down the rows per column; blockDim = 32 x 8
static_assert(kColumnsPerBlock == kWarpSize, "a warp reads one row's columns of the block, coalesced");
// Its vector form: a strip of kStripThreads vectors (32 bf16 or 16 f32 columns, 64 bytes of a
// row) per block, kStripRowGroups threads down the rows, each loading kStripRowsAtOnce rows
// before it sums them (the block count is small, cols / 32, so each thread keeps many bytes in
// flight).
constexpr int kStripThreads = 4;
constexpr int kStripRowGroups = 128;
constexpr int kStripRowsAtOnce = 4;

// Sum over the Group threads that share a row: lanes of a warp, or the whole block.
template <int Group>
__device__ __forceinline__ float row_sum(float x, float* scratch) {
    if constexpr (Group > kWarpSize)
        return block_sum(x, scratch);
    else
        return group_sum<Group>(x);
}

// Threads per row for a row of `vectors` vectors: the fewest that hold it in registers.
int row_group_for(int64_t vectors) {
    for (int group : {8, 16, 32})
        if (vectors <= int64_t{group} * kCachedVectors<8>) return group;
    for (int group : {256, 512})
        if (vectors <= int64_t{group} * kCachedVectors<256>) return group;
    return 1024;
}

// ---- vector path ----------------------------------------------------------------------------

// Row r of the block's rows, and this thread's lane in it. A lane group past the last row
// stays in the kernel (its lanes take part in the warp shuffles) and touches no memory.
template <int Group>
struct RowLane {
    int64_t row;
    int lane;
    bool live;
    __device__ RowLane(int64_t rows)
        : row(static_cast<int64_t>(blockIdx.x) * (kBlockThreads<Group> / Group) + threadIdx.x / Group),
          lane(static_cast<int>(threadIdx.x % Group)),
          live(row < rows) {}
};

template <typename T, int Group>
__global__ void __launch_bounds__(kBlockThreads<Group>)
rmsnorm_forward_vector_kernel(T* out, int64_t out_stride, float* rstd, const T* x, const float* weight, int64_t rows,
                              int64_t cols, float eps) {
    constexpr int W = kVectorSize<T>;
    constexpr int kCached = kCachedVectors<Group>;
    __shared__ float scratch[kWarpSize];
    const RowLane<Group> at(rows);
    const int64_t vectors = at.live ? cols / W : 0;
    const T* x_row = x + (at.live ? at.row : 0) * cols;
    T* out_row = out + (at.live ? at.row : 0) * out_stride;

    uint4 cached[kCached];
    float sum_sq = 0.0f;
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
        const int64_t v = at.lane + int64_t{k} * Group;
        if (v < vectors) cached[k] = load_raw_vector(x_row + v * W);
    }
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
        const int64_t v = at.lane + int64_t{k} * Group;
        if (v < vectors) {
            float a[W];
            unpack_vector(cached[k], a);
#pragma unroll
            for (int j = 0; j < W; ++j) sum_sq += a[j] * a[j];
        }
    }
    for (int64_t v = at.lane + int64_t{kCached} * Group; v < vectors; v += Group) {
        float a[W];
        load_vector(x_row + v * W, a);
#pragma unroll
        for (int j = 0; j < W; ++j) sum_sq += a[j] * a[j];
    }
    sum_sq = row_sum<Group>(sum_sq, scratch);
    const float r_std = 1.0f / sqrtf(sum_sq / static_cast<float>(cols) + eps);

    auto normalize = [&](int64_t v, float (&a)[W]) {
        float w[W];
        load_floats(weight + v * W, w);
#pragma unroll
        for (int j = 0; j < W; ++j) a[j] = w[j] * (a[j] * r_std);
        store_vector(out_row + v * W, a);
    };
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
        const int64_t v = at.lane + int64_t{k} * Group;
        if (v < vectors) {
            float a[W];
            unpack_vector(cached[k], a);
            normalize(v, a);
        }
    }
    for (int64_t v = at.lane + int64_t{kCached} * Group; v < vectors; v += Group) {
        float a[W];
        load_vector(x_row + v * W, a);
        normalize(v, a);
    }
    if (at.live && at.lane == 0) rstd[at.row] = r_std;
}

// dx = rstd * (g - n * mean(g * n)) [+ residual] with g = dout * weight, n = x * rstd; the
// residual (nullable) is added in f32 before the one rounding to T.
template <typename T, int Group>
__global__ void __launch_bounds__(kBlockThreads<Group>)
rmsnorm_backward_dx_vector_kernel(T* dx, const T* dout, int64_t dout_stride, const T* x, const float* weight,
                                  const float* rstd, const T* residual, int64_t rows, int64_t cols) {
    constexpr int W = kVectorSize<T>;
    constexpr int kCached = kCachedVectors<Group>;
    __shared__ float scratch[kWarpSize];
    const RowLane<Group> at(rows);
    const int64_t vectors = at.live ? cols / W : 0;
    const int64_t offset = (at.live ? at.row : 0) * cols;
    const T* x_row = x + offset;
    const T* dout_row = dout + (at.live ? at.row : 0) * dout_stride;
    T* dx_row = dx + offset;

    uint4 cached_x[kCached], cached_dout[kCached];
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
        const int64_t v = at.lane + int64_t{k} * Group;
        if (v < vectors) {
            cached_x[k] = load_raw_vector(x_row + v * W);
            cached_dout[k] = load_raw_vector(dout_row + v * W);
        }
    }
    float dot = 0.0f;
    auto accumulate = [&](int64_t v, const float (&a)[W], const float (&d)[W]) {
        float w[W];
        load_floats(weight + v * W, w);
#pragma unroll
        for (int j = 0; j < W; ++j) dot += d[j] * w[j] * a[j];
    };
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
        const int64_t v = at.lane + int64_t{k} * Group;
        if (v < vectors) {
            float a[W], d[W];
            unpack_vector(cached_x[k], a);
            unpack_vector(cached_dout[k], d);
            accumulate(v, a, d);
        }
    }
    for (int64_t v = at.lane + int64_t{kCached} * Group; v < vectors; v += Group) {
        float a[W], d[W];
        load_vector(x_row + v * W, a);
        load_vector(dout_row + v * W, d);
        accumulate(v, a, d);
    }
    dot = row_sum<Group>(dot, scratch);
    const float r_std = at.live ? rstd[at.row] : 0.0f;
    const float mean_gn = dot / static_cast<float>(cols) * r_std;

    auto write = [&](int64_t v, const float (&a)[W], const float (&d)[W]) {
        float w[W], g[W];
        load_floats(weight + v * W, w);
#pragma unroll
        for (int j = 0; j < W; ++j) {
            const float n = a[j] * r_std;
            g[j] = r_std * (d[j] * w[j] - n * mean_gn);
        }
        if (residual != nullptr) {
            float res[W];
            load_vector(residual + offset + v * W, res);
#pragma unroll
            for (int j = 0; j < W; ++j) g[j] += res[j];
        }
        store_vector(dx_row + v * W, g);
    };
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
        const int64_t v = at.lane + int64_t{k} * Group;
        if (v < vectors) {
            float a[W], d[W];
            unpack_vector(cached_x[k], a);
            unpack_vector(cached_dout[k], d);
            write(v, a, d);
        }
    }
    for (int64_t v = at.lane + int64_t{kCached} * Group; v < vectors; v += Group) {
        float a[W], d[W];
        load_vector(x_row + v * W, a);
        load_vector(dout_row + v * W, d);
        write(v, a, d);
    }
}

// ---- scalar path: any row length and alignment, one block per row ---------------------------

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
rmsnorm_forward_kernel(T* out, int64_t out_stride, float* rstd, const T* x, const float* weight, int64_t cols,
                       float eps) {
    __shared__ float scratch[kWarpSize];
    const int64_t r = blockIdx.x;
    const T* x_row = x + r * cols;
    T* out_row = out + r * out_stride;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads) {
        const float v = to_float(x_row[i]);
        sum_sq += v * v;
    }
    sum_sq = block_sum(sum_sq, scratch);
    const float variance = sum_sq / static_cast<float>(cols);
    const float r_std = 1.0f / sqrtf(variance + eps);
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads)
        out_row[i] = from_float<T>(weight[i] * (to_float(x_row[i]) * r_std));
    if (threadIdx.x == 0) rstd[r] = r_std;
}

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
rmsnorm_backward_dx_kernel(T* dx, const T* dout, int64_t dout_stride, const T* x, const float* weight,
                           const float* rstd, const T* residual, int64_t cols) {
    __shared__ float scratch[kWarpSize];
    const int64_t r = blockIdx.x;
    const T* x_row = x + r * cols;
    const T* dout_row = dout + r * dout_stride;
    T* dx_row = dx + r * cols;
    const float r_std = rstd[r];
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads)
        dot += to_float(dout_row[i]) * weight[i] * to_float(x_row[i]);
    dot = block_sum(dot, scratch);
    const float mean_gn = dot / static_cast<float>(cols) * r_std;
    for (int64_t i = threadIdx.x; i < cols; i += kRowThreads) {
        const float n = to_float(x_row[i]) * r_std;
        float g = r_std * (to_float(dout_row[i]) * weight[i] - n * mean_gn);
        if (residual != nullptr) g += to_float(residual[r * cols + i]);
        dx_row[i] = from_float<T>(g);
    }
}

// dweight[c] += sum over rows of dout[r, c] * (x[r, c] * rstd[r]).
template <typename T>
__global__ void __launch_bounds__(kColumnsPerBlock * kRowGroups)
rmsnorm_backward_dweight_kernel(float* dweight, const T* dout, const T* x, const float* rstd, int64_t rows,
                                int64_t cols) {
    __shared__ float partial[kRowGroups][kColumnsPerBlock];
    const int column_in_block = threadIdx.x % kColumnsPerBlock;
    const int group = threadIdx.x / kColumnsPerBlock;
    const int64_t c = blockIdx.x * int64_t{kColumnsPerBlock} + column_in_block;
    float sum = 0.0f;
    if (c < cols) {
        for (int64_t r = group; r < rows; r += kRowGroups)
            sum += to_float(dout[r * cols + c]) * (to_float(x[r * cols + c]) * rstd[r]);
    }
    partial[group][column_in_block] = sum;
    __syncthreads();
    if (group == 0 && c < cols) {
        float total = 0.0f;
#pragma unroll
        for (int g = 0; g < kRowGroups; ++g) total += partial[g][column_in_block];
        dweight[c] += total;
    }
}

// The same sums with 16-byte loads: needs cols % W == 0 and aligned dout and x. A thread sums
// rows group, group + kStripRowGroups, ... in that order; the block adds the groups' partial
// sums in group order, so the result does not depend on the launch either.
template <typename T>
__global__ void __launch_bounds__(kStripThreads * kStripRowGroups)
rmsnorm_backward_dweight_vector_kernel(float* dweight, const T* dout, const T* x, const float* rstd, int64_t rows,
                                       int64_t cols) {
    constexpr int W = kVectorSize<T>;
    constexpr int kStripColumns = kStripThreads * W;
    __shared__ float partial[kStripRowGroups][kStripColumns];
    const int strip_thread = threadIdx.x % kStripThreads;
    const int group = threadIdx.x / kStripThreads;
    const int64_t c = blockIdx.x * int64_t{kStripColumns} + strip_thread * W;  // cols % W == 0: whole vector or none
    float sum[W] = {};
    auto accumulate = [&](const uint4& d_raw, const uint4& x_raw, float r_std) {
        float d[W], a[W];
        unpack_vector(d_raw, d);
        unpack_vector(x_raw, a);
#pragma unroll
        for (int j = 0; j < W; ++j) sum[j] += d[j] * (a[j] * r_std);
    };
    if (c < cols) {
        constexpr int64_t kStep = kStripRowGroups;
        int64_t r = group;
        for (; r + (kStripRowsAtOnce - 1) * kStep < rows; r += kStripRowsAtOnce * kStep) {
            uint4 d_raw[kStripRowsAtOnce], x_raw[kStripRowsAtOnce];
            float r_std[kStripRowsAtOnce];
#pragma unroll
            for (int u = 0; u < kStripRowsAtOnce; ++u) {
                const int64_t row = r + u * kStep;
                d_raw[u] = load_raw_vector(dout + row * cols + c);
                x_raw[u] = load_raw_vector(x + row * cols + c);
                r_std[u] = rstd[row];
            }
#pragma unroll
            for (int u = 0; u < kStripRowsAtOnce; ++u) accumulate(d_raw[u], x_raw[u], r_std[u]);
        }
        for (; r < rows; r += kStep)
            accumulate(load_raw_vector(dout + r * cols + c), load_raw_vector(x + r * cols + c), rstd[r]);
    }
#pragma unroll
    for (int j = 0; j < W; ++j) partial[group][strip_thread * W + j] = sum[j];
    __syncthreads();
    const int64_t column = blockIdx.x * int64_t{kStripColumns} + threadIdx.x;
    if (threadIdx.x < kStripColumns && column < cols) {
        float total = 0.0f;
        for (int g = 0; g < kStripRowGroups; ++g) total += partial[g][threadIdx.x];
        dweight[column] += total;
    }
}

void check_rows(const char* op, int64_t rows, int64_t cols) {
    require(rows >= 0 && rows < (int64_t{1} << 31) && cols > 0, AXL_ERR_SHAPE, op, ": ", rows, " rows of ", cols,
            " columns");
}

// Blocks for `rows` rows at Group threads a row.
template <int Group>
unsigned row_blocks(int64_t rows) {
    return static_cast<unsigned>(ceil_div(rows, kBlockThreads<Group> / Group));
}

// Calls launch(std::integral_constant<int, Group>) with the lane group row_group_for picks.
template <typename Launch>
void with_row_group(int64_t vectors, Launch&& launch) {
    switch (row_group_for(vectors)) {
        case 8: launch(std::integral_constant<int, 8>{}); break;
        case 16: launch(std::integral_constant<int, 16>{}); break;
        case 32: launch(std::integral_constant<int, 32>{}); break;
        case 256: launch(std::integral_constant<int, 256>{}); break;
        case 512: launch(std::integral_constant<int, 512>{}); break;
        default: launch(std::integral_constant<int, 1024>{});
    }
}

void check_stride(const char* op, int64_t stride, int64_t cols) {
    require(stride >= cols, AXL_ERR_SHAPE, op, ": rows ", stride, " apart for ", cols, " columns");
}

template <typename T>
void launch_rmsnorm_forward(T* out, int64_t out_stride, float* rstd, const T* x, const float* weight, int64_t rows,
                            int64_t cols, float eps, cudaStream_t stream) {
    check_rows("rmsnorm_forward", rows, cols);
    check_stride("rmsnorm_forward", out_stride, cols);
    if (rows == 0) return;
    constexpr int W = kVectorSize<T>;
    if (cols % W == 0 && out_stride % W == 0 && is_vector_aligned(out) && is_vector_aligned(x) &&
        is_vector_aligned(weight)) {
        with_row_group(cols / W, [&](auto group) {
            constexpr int G = decltype(group)::value;
            rmsnorm_forward_vector_kernel<T, G><<<row_blocks<G>(rows), kBlockThreads<G>, 0, stream>>>(
                out, out_stride, rstd, x, weight, rows, cols, eps);
        });
        AXL_CUDA_CHECK_LAUNCH("rmsnorm_forward_vector_kernel");
        return;
    }
    rmsnorm_forward_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(out, out_stride, rstd, x, weight,
                                                                                   cols, eps);
    AXL_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

template <typename T>
void launch_rmsnorm_backward_dx(T* dx, const T* dout, int64_t dout_stride, const T* x, const float* weight,
                                const float* rstd, const T* residual, int64_t rows, int64_t cols,
                                cudaStream_t stream) {
    constexpr int W = kVectorSize<T>;
    if (cols % W == 0 && dout_stride % W == 0 && is_vector_aligned(dx) && is_vector_aligned(dout) &&
        is_vector_aligned(x) && is_vector_aligned(weight) && is_vector_aligned(residual)) {
        with_row_group(cols / W, [&](auto group) {
            constexpr int G = decltype(group)::value;
            rmsnorm_backward_dx_vector_kernel<T, G><<<row_blocks<G>(rows), kBlockThreads<G>, 0, stream>>>(
                dx, dout, dout_stride, x, weight, rstd, residual, rows, cols);
        });
        AXL_CUDA_CHECK_LAUNCH("rmsnorm_backward_dx_vector_kernel");
        return;
    }
    rmsnorm_backward_dx_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
        dx, dout, dout_stride, x, weight, rstd, residual, cols);
    AXL_CUDA_CHECK_LAUNCH("rmsnorm_backward_dx_kernel");
}

template <typename T>
void launch_rmsnorm_backward(T* dx, float* dweight, const T* dout, const T* x, const float* weight,
                             const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
    check_rows("rmsnorm_backward", rows, cols);
    if (rows == 0) return;
    launch_rmsnorm_backward_dx(dx, dout, cols, x, weight, rstd, static_cast<const T*>(nullptr), rows, cols, stream);
    if (dweight == nullptr) return;
    constexpr int W = kVectorSize<T>;
    if (cols % W == 0 && is_vector_aligned(dout) && is_vector_aligned(x)) {
        rmsnorm_backward_dweight_vector_kernel<<<static_cast<unsigned>(ceil_div(cols, kStripThreads * W)),
                                                 kStripThreads * kStripRowGroups, 0, stream>>>(dweight, dout, x, rstd,
                                                                                               rows, cols);
        AXL_CUDA_CHECK_LAUNCH("rmsnorm_backward_dweight_vector_kernel");
        return;
    }
    rmsnorm_backward_dweight_kernel<<<static_cast<unsigned>(ceil_div(cols, kColumnsPerBlock)),
                                      kColumnsPerBlock * kRowGroups, 0, stream>>>(dweight, dout, x, rstd, rows, cols);
    AXL_CUDA_CHECK_LAUNCH("rmsnorm_backward_dweight_kernel");
}

template <typename T>
void launch_rmsnorm_backward_add(T* dx, const T* dout, int64_t dout_stride, const T* x, const float* weight,
                                 const float* rstd, const T* residual_grad, int64_t rows, int64_t cols,
                                 cudaStream_t stream) {
    check_rows("rmsnorm_backward_add", rows, cols);
    check_stride("rmsnorm_backward_add", dout_stride, cols);
    require(residual_grad == nullptr || residual_grad != dx, AXL_ERR_INTERNAL,
            "rmsnorm_backward_add: the residual gradient and dx are the same buffer");
    if (rows == 0) return;
    launch_rmsnorm_backward_dx(dx, dout, dout_stride, x, weight, rstd, residual_grad, rows, cols, stream);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t rows, int64_t cols,
                     float eps, cudaStream_t stream) {
    launch_rmsnorm_forward(out, cols, rstd, x, weight, rows, cols, eps, stream);
}
void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const float* weight, int64_t rows, int64_t cols,
                     float eps, cudaStream_t stream) {
    launch_rmsnorm_forward(out, cols, rstd, x, weight, rows, cols, eps, stream);
}
void rmsnorm_forward_strided(bf16* out, int64_t out_stride, float* rstd, const bf16* x, const float* weight,
                             int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
    launch_rmsnorm_forward(out, out_stride, rstd, x, weight, rows, cols, eps, stream);
}
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward(dx, dweight, dout, x, weight, rstd, rows, cols, stream);
}
void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const float* weight,
                      const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward(dx, dweight, dout, x, weight, rstd, rows, cols, stream);
}
void rmsnorm_backward_add(float* dx, const float* dout, const float* x, const float* weight, const float* rstd,
                          const float* residual_grad, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward_add(dx, dout, cols, x, weight, rstd, residual_grad, rows, cols, stream);
}
void rmsnorm_backward_add(bf16* dx, const bf16* dout, const bf16* x, const float* weight, const float* rstd,
                          const bf16* residual_grad, int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward_add(dx, dout, cols, x, weight, rstd, residual_grad, rows, cols, stream);
}
void rmsnorm_backward_add_strided(bf16* dx, const bf16* dout, int64_t dout_stride, const bf16* x,
                                  const float* weight, const float* rstd, const bf16* residual_grad, int64_t rows,
                                  int64_t cols, cudaStream_t stream) {
    launch_rmsnorm_backward_add(dx, dout, dout_stride, x, weight, rstd, residual_grad, rows, cols, stream);
}

}  // namespace axl::cuda
