// Causal attention with grouped-query heads and packed sequences on the device, flash-attention
// style (the twin of backend/cpu/attention.cpp, same contract): scores exist one tile at a
// time in registers and shared memory, never as a T x T matrix.
//
// Two implementations:
//   bf16 on the tensor cores (aligned rows): on Hopper (an sm_90a build on a 9.x device)
//             warpgroup products, attention_wgmma_forward.cuh and attention_wgmma_backward.cuh
//             on wgmma.cuh; elsewhere attention_mma_forward.cuh and attention_mma_backward.cuh
//             on the mma.sync blocks of attention_mma.cuh (tensor_core_kernels says which).
//             The backward is one pass over (key tile, query tile) pairs that adds dQ into an
//             f32 buffer with atomics: dq is not bit-reproducible from run to run (dk, dv are).
//   f32 FMA   (f32 tensors, and bf16 rows not aligned to 16 bytes): the tiled kernels below,
//             deterministic:
//   forward   a block owns kQueryTile query rows of one head and streams key/value tiles of
//             kKeyStream rows, keeping an online softmax (running max, running sum) per row;
//             it saves lse = max + log(sum) per row.
//   backward  delta_t = dout_t . out_t; then two passes, like the CPU twin, so that every
//             output row has one writer (no atomics):
//             dq    a block owns kQueryTile query rows, streams key tiles:
//                   dq_t = scale * sum_s p_ts (dp_ts - delta_t) k_s
//             dk/dv a block owns kKeyTile key rows of one kv head, streams query tiles of
//                   every query head of its group: dv_s = sum_t p_ts dout_t,
//                   dk_s = scale * sum_t p_ts (dp_ts - delta_t) q_t
//             with p_ts = exp(scale * q_t.k_s - lse_t) rebuilt from the saved lse.
//
// Which keys a tile visits: segment ids form contiguous runs (prepare_batch checks it), so the
// keys a query tile can see start at the run holding its first query, and the queries that
// can see a key tile end with the run holding its last key; the tiles outside are skipped,
// and inside a tile the causal and segment masks are applied per element.
//
// The tiled kernels are a 16 x 16 grid of threads. Thread (ty, tx) owns rows ty*R .. ty*R + R-1
// of its block's tile and columns tx, tx + 16, ... of the streamed tile and of the head
// dimension. Tiles sit in shared memory as f32 rows padded by one float, so that walking down a
// column touches 16 distinct banks.
//
// Backward scratch (attention_backward_scratch_floats): delta [B, H, T], then, from a 16-byte
// boundary, the f32 dQ sum of the tensor-core backward, [B, T, H, kMaxHeadDim].
#include <atomic>
#include <cfloat>
#include <type_traits>

#include "attention_layout.cuh"
#include "attention_mma_backward.cuh"
#include "attention_mma_forward.cuh"
#include "attention_wgmma_backward.cuh"
#include "attention_wgmma_forward.cuh"
#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

using namespace attention_detail;

constexpr int64_t kMaxHeadDim = 128;
constexpr int kGridRows = 16;
constexpr int kGridCols = 16;
constexpr int kAttentionThreads = kGridRows * kGridCols;

constexpr int kQueryTile = 64;    // query rows a forward / dq block owns
constexpr int kKeyStream = 32;    // key rows per streamed tile (forward, dq)
constexpr int kKeyTile = 64;      // key rows a dk/dv block owns
constexpr int kQueryStream = 32;  // query rows per streamed tile (dk/dv)
static_assert(kQueryTile % kGridRows == 0 && kKeyTile % kGridRows == 0, "owned tiles split evenly over ty");
static_assert(kKeyStream % kGridCols == 0 && kQueryStream % kGridCols == 0, "streamed tiles split evenly over tx");
static_assert(kKeyStream <= kAttentionThreads && kQueryStream <= kAttentionThreads, "one thread per streamed row");

constexpr int kDeltaThreads = 256;  // delta pass: one warp per (token, head) row

// Floats of a padded f32 tile of `rows` rows of width `width`.
__host__ __device__ constexpr int padded_tile(int rows, int width) { return rows * (width + 1); }

template <int D>
constexpr size_t forward_shared_bytes() {
    return sizeof(float) * (padded_tile(kQueryTile, D) + 2 * padded_tile(kKeyStream, D) +
                            padded_tile(kQueryTile, kKeyStream));
}
template <int D>
constexpr size_t dq_shared_bytes() {
    return sizeof(float) * (2 * padded_tile(kQueryTile, D) + 2 * padded_tile(kKeyStream, D) +
                            padded_tile(kQueryTile, kKeyStream));
}
template <int D>
constexpr size_t dkdv_shared_bytes() {
    return sizeof(float) * (2 * padded_tile(kKeyTile, D) + 2 * padded_tile(kQueryStream, D) +
                            2 * padded_tile(kKeyTile, kQueryStream));
}

// Rows 0 .. valid-1 of a strided matrix (row r at src + r * stride) into a padded f32 tile of
// Rows rows; rows from `valid` on are zero.
template <int Rows, int D, typename T>
__device__ __forceinline__ void load_rows(float* tile, const T* src, int64_t stride, int valid) {
    for (int i = threadIdx.x; i < Rows * D; i += kAttentionThreads) {
        const int r = i / D;
        const int d = i % D;
        tile[r * (D + 1) + d] = r < valid ? to_float(src[r * stride + d]) : 0.0f;
    }
}

// s[i][j] = row (ty*R + i) of `a` . row (tx + 16 j) of `b` (padded tiles of width D).
template <int R, int C, int D>
__device__ __forceinline__ void tile_dot(float (&s)[R][C], const float* a, const float* b, int ty, int tx) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < C; ++j) s[i][j] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < D; ++d) {
        float a_values[R];
        float b_values[C];
#pragma unroll
        for (int i = 0; i < R; ++i) a_values[i] = a[(ty * R + i) * (D + 1) + d];
#pragma unroll
        for (int j = 0; j < C; ++j) b_values[j] = b[(tx + kGridCols * j) * (D + 1) + d];
#pragma unroll
        for (int i = 0; i < R; ++i)
#pragma unroll
            for (int j = 0; j < C; ++j) s[i][j] = fmaf(a_values[i], b_values[j], s[i][j]);
    }
}

// acc[i][e] += sum over c < Cols of p[ty*R + i][c] * m[c][tx + 16 e]; p is a padded
// [rows x Cols] tile, m a padded [Cols x D] tile.
template <int R, int Cols, int D>
__device__ __forceinline__ void tile_accumulate(float (&acc)[R][D / kGridCols], const float* p, const float* m,
                                                int ty, int tx) {
    constexpr int E = D / kGridCols;
#pragma unroll 4
    for (int c = 0; c < Cols; ++c) {
        float p_values[R];
        float m_values[E];
#pragma unroll
        for (int i = 0; i < R; ++i) p_values[i] = p[(ty * R + i) * (Cols + 1) + c];
#pragma unroll
        for (int e = 0; e < E; ++e) m_values[e] = m[c * (D + 1) + tx + kGridCols * e];
#pragma unroll
        for (int i = 0; i < R; ++i)
#pragma unroll
            for (int e = 0; e < E; ++e) acc[i][e] = fmaf(p_values[i], m_values[e], acc[i][e]);
    }
}
template <typename T, int D>
__global__ void __launch_bounds__(kAttentionThreads)
attention_forward_kernel(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* segment,
                         HeadLayout layout, float scale) {
    constexpr int R = kQueryTile / kGridRows;
    constexpr int C = kKeyStream / kGridCols;
    constexpr int E = D / kGridCols;
    extern __shared__ float shared[];
    float* q_tile = shared;
    float* k_tile = q_tile + padded_tile(kQueryTile, D);
    float* v_tile = k_tile + padded_tile(kKeyStream, D);
    float* p_tile = v_tile + padded_tile(kKeyStream, D);
    __shared__ int32_t key_segment[kKeyStream];

    const int tx = threadIdx.x % kGridCols;
    const int ty = threadIdx.x / kGridCols;
    const int q0 = blockIdx.x * kQueryTile;
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int kv = h / (layout.heads / layout.kv_heads);
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;
    const T* k_rows = k + layout.kv_head(b, kv);
    const T* v_rows = v + layout.kv_head(b, kv);

    const int q_valid = min(kQueryTile, seq - q0);
    load_rows<kQueryTile, D>(q_tile, q + layout.q_head(b, h) + int64_t{q0} * layout.q_stride(), layout.q_stride(),
                             q_valid);
    int row_segment[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int t = q0 + ty * R + i;
        row_segment[i] = segment_row && t < seq ? segment_row[t] : 0;
    }
    const int key_begin = segment_run_begin(segment_row, q0);
    const int key_end = q0 + q_valid;

    float row_max[R], row_sum[R], acc[R][E];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[i][e] = 0.0f;
    }

    for (int k0 = key_begin - key_begin % kKeyStream; k0 < key_end; k0 += kKeyStream) {
        const int k_valid = min(kKeyStream, seq - k0);
        __syncthreads();  // the previous tile's readers are done
        load_rows<kKeyStream, D>(k_tile, k_rows + int64_t{k0} * layout.kv_stride(), layout.kv_stride(), k_valid);
        load_rows<kKeyStream, D>(v_tile, v_rows + int64_t{k0} * layout.kv_stride(), layout.kv_stride(), k_valid);
        if (threadIdx.x < kKeyStream)
            key_segment[threadIdx.x] = segment_row && static_cast<int>(threadIdx.x) < k_valid
                                           ? segment_row[k0 + threadIdx.x] : 0;
        __syncthreads();

        float s[R][C];
        tile_dot<R, C, D>(s, q_tile, k_tile, ty, tx);
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int t = q0 + ty * R + i;
            float tile_max = -INFINITY;
#pragma unroll
            for (int j = 0; j < C; ++j) {
                const int key = k0 + tx + kGridCols * j;
                const bool visible = key <= t && t < seq && key_segment[tx + kGridCols * j] == row_segment[i];
                s[i][j] = visible ? s[i][j] * scale : -INFINITY;
                tile_max = fmaxf(tile_max, s[i][j]);
            }
            tile_max = group_max<kGridCols>(tile_max);
            const float new_max = fmaxf(row_max[i], tile_max);
            // A row that has seen no visible key keeps max -inf; exp(-inf - base) = 0 then.
            const float base = new_max == -INFINITY ? 0.0f : new_max;
            const float correction = expf(row_max[i] - base);
            float tile_sum = 0.0f;
#pragma unroll
            for (int j = 0; j < C; ++j) {
                const float p = expf(s[i][j] - base);
                p_tile[(ty * R + i) * (kKeyStream + 1) + tx + kGridCols * j] = p;
                tile_sum += p;
            }
            tile_sum = group_sum<kGridCols>(tile_sum);
            row_sum[i] = row_sum[i] * correction + tile_sum;
            row_max[i] = new_max;
#pragma unroll
            for (int e = 0; e < E; ++e) acc[i][e] *= correction;
        }
        __syncthreads();
        tile_accumulate<R, kKeyStream, D>(acc, p_tile, v_tile, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int t = q0 + ty * R + i;
        if (t >= seq) continue;
        // Key t itself is always visible, so row_sum >= 1.
        const float inv_sum = 1.0f / row_sum[i];
        T* out_row = out + layout.q_head(b, h) + int64_t{t} * layout.q_stride();
#pragma unroll
        for (int e = 0; e < E; ++e) out_row[tx + kGridCols * e] = from_float<T>(acc[i][e] * inv_sum);
        if (tx == 0) lse[layout.stat(b, h, t)] = row_max[i] + logf(row_sum[i]);
    }
}

// delta[b, h, t] = dout . out over the head dimension; one warp per (b, t, h) row.
template <typename T>
__global__ void __launch_bounds__(kDeltaThreads)
attention_delta_kernel(float* delta, const T* dout, const T* out, int64_t rows, HeadLayout layout) {
    const int64_t row = (blockIdx.x * int64_t{kDeltaThreads} + threadIdx.x) / kWarpSize;  // (b*seq + t)*heads + h
    const int lane = threadIdx.x % kWarpSize;
    if (row >= rows) return;
    const T* dout_row = dout + row * layout.head_dim;
    const T* out_row = out + row * layout.head_dim;
    float sum = 0.0f;
    for (int d = lane; d < layout.head_dim; d += kWarpSize) sum += to_float(dout_row[d]) * to_float(out_row[d]);
    sum = group_sum(sum);
    if (lane == 0) {
        const int h = static_cast<int>(row % layout.heads);
        const int64_t bt = row / layout.heads;
        const int t = static_cast<int>(bt % layout.seq);
        const int b = static_cast<int>(bt / layout.seq);
        delta[layout.stat(b, h, t)] = sum;
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(kAttentionThreads)
attention_backward_dq_kernel(T* dq, const T* dout, const T* q, const T* k, const T* v, const float* lse,
                             const float* delta, const int32_t* segment, HeadLayout layout, float scale) {
    constexpr int R = kQueryTile / kGridRows;
    constexpr int C = kKeyStream / kGridCols;
    constexpr int E = D / kGridCols;
    extern __shared__ float shared[];
    float* q_tile = shared;
    float* dout_tile = q_tile + padded_tile(kQueryTile, D);
    float* k_tile = dout_tile + padded_tile(kQueryTile, D);
    float* v_tile = k_tile + padded_tile(kKeyStream, D);
    float* ds_tile = v_tile + padded_tile(kKeyStream, D);
    __shared__ int32_t key_segment[kKeyStream];

    const int tx = threadIdx.x % kGridCols;
    const int ty = threadIdx.x / kGridCols;
    const int q0 = blockIdx.x * kQueryTile;
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int kv = h / (layout.heads / layout.kv_heads);
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;
    const T* k_rows = k + layout.kv_head(b, kv);
    const T* v_rows = v + layout.kv_head(b, kv);

    const int q_valid = min(kQueryTile, seq - q0);
    const int64_t q_offset = layout.q_head(b, h) + int64_t{q0} * layout.q_stride();
    load_rows<kQueryTile, D>(q_tile, q + q_offset, layout.q_stride(), q_valid);
    load_rows<kQueryTile, D>(dout_tile, dout + q_offset, layout.q_stride(), q_valid);
    int row_segment[R];
    float row_lse[R], row_delta[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int t = q0 + ty * R + i;
        const bool valid = t < seq;
        row_segment[i] = segment_row && valid ? segment_row[t] : 0;
        row_lse[i] = valid ? lse[layout.stat(b, h, t)] : 0.0f;
        row_delta[i] = valid ? delta[layout.stat(b, h, t)] : 0.0f;
    }
    const int key_begin = segment_run_begin(segment_row, q0);
    const int key_end = q0 + q_valid;

    float acc[R][E];
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int e = 0; e < E; ++e) acc[i][e] = 0.0f;

    for (int k0 = key_begin - key_begin % kKeyStream; k0 < key_end; k0 += kKeyStream) {
        const int k_valid = min(kKeyStream, seq - k0);
        __syncthreads();
        load_rows<kKeyStream, D>(k_tile, k_rows + int64_t{k0} * layout.kv_stride(), layout.kv_stride(), k_valid);
        load_rows<kKeyStream, D>(v_tile, v_rows + int64_t{k0} * layout.kv_stride(), layout.kv_stride(), k_valid);
        if (threadIdx.x < kKeyStream)
            key_segment[threadIdx.x] = segment_row && static_cast<int>(threadIdx.x) < k_valid
                                           ? segment_row[k0 + threadIdx.x] : 0;
        __syncthreads();

        float s[R][C], dp[R][C];
        tile_dot<R, C, D>(s, q_tile, k_tile, ty, tx);
        tile_dot<R, C, D>(dp, dout_tile, v_tile, ty, tx);
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int t = q0 + ty * R + i;
#pragma unroll
            for (int j = 0; j < C; ++j) {
                const int key = k0 + tx + kGridCols * j;
                const bool visible = key <= t && t < seq && key_segment[tx + kGridCols * j] == row_segment[i];
                const float p = visible ? expf(s[i][j] * scale - row_lse[i]) : 0.0f;
                ds_tile[(ty * R + i) * (kKeyStream + 1) + tx + kGridCols * j] = p * (dp[i][j] - row_delta[i]);
            }
        }
        __syncthreads();
        tile_accumulate<R, kKeyStream, D>(acc, ds_tile, k_tile, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int t = q0 + ty * R + i;
        if (t >= seq) continue;
        T* dq_row = dq + layout.q_head(b, h) + int64_t{t} * layout.q_stride();
#pragma unroll
        for (int e = 0; e < E; ++e) dq_row[tx + kGridCols * e] = from_float<T>(acc[i][e] * scale);
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(kAttentionThreads)
attention_backward_dkdv_kernel(T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const float* lse,
                               const float* delta, const int32_t* segment, HeadLayout layout, float scale) {
    constexpr int R = kKeyTile / kGridRows;
    constexpr int C = kQueryStream / kGridCols;
    constexpr int E = D / kGridCols;
    extern __shared__ float shared[];
    float* k_tile = shared;
    float* v_tile = k_tile + padded_tile(kKeyTile, D);
    float* q_tile = v_tile + padded_tile(kKeyTile, D);
    float* dout_tile = q_tile + padded_tile(kQueryStream, D);
    float* p_tile = dout_tile + padded_tile(kQueryStream, D);
    float* ds_tile = p_tile + padded_tile(kKeyTile, kQueryStream);
    __shared__ int32_t query_segment[kQueryStream];
    __shared__ float query_lse[kQueryStream];
    __shared__ float query_delta[kQueryStream];

    const int tx = threadIdx.x % kGridCols;
    const int ty = threadIdx.x / kGridCols;
    const int s0 = blockIdx.x * kKeyTile;
    const int kv = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int group = layout.heads / layout.kv_heads;
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;

    const int k_valid = min(kKeyTile, seq - s0);
    const int64_t kv_offset = layout.kv_head(b, kv) + int64_t{s0} * layout.kv_stride();
    load_rows<kKeyTile, D>(k_tile, k + kv_offset, layout.kv_stride(), k_valid);
    load_rows<kKeyTile, D>(v_tile, v + kv_offset, layout.kv_stride(), k_valid);
    int row_segment[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int s = s0 + ty * R + i;
        row_segment[i] = segment_row && s < seq ? segment_row[s] : 0;
    }
    const int query_end = segment_run_end(segment_row, s0 + k_valid - 1, seq);

    float dk_acc[R][E], dv_acc[R][E];
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int e = 0; e < E; ++e) {
            dk_acc[i][e] = 0.0f;
            dv_acc[i][e] = 0.0f;
        }

    for (int h = kv * group; h < (kv + 1) * group; ++h) {
        const T* q_rows = q + layout.q_head(b, h);
        const T* dout_rows = dout + layout.q_head(b, h);
        for (int t0 = s0 - s0 % kQueryStream; t0 < query_end; t0 += kQueryStream) {
            const int q_valid = min(kQueryStream, seq - t0);
            __syncthreads();
            load_rows<kQueryStream, D>(q_tile, q_rows + int64_t{t0} * layout.q_stride(), layout.q_stride(), q_valid);
            load_rows<kQueryStream, D>(dout_tile, dout_rows + int64_t{t0} * layout.q_stride(), layout.q_stride(),
                                       q_valid);
            if (threadIdx.x < kQueryStream) {
                const int t = t0 + threadIdx.x;
                const bool valid = static_cast<int>(threadIdx.x) < q_valid;
                query_segment[threadIdx.x] = segment_row && valid ? segment_row[t] : 0;
                query_lse[threadIdx.x] = valid ? lse[layout.stat(b, h, t)] : 0.0f;
                query_delta[threadIdx.x] = valid ? delta[layout.stat(b, h, t)] : 0.0f;
            }
            __syncthreads();

            float s[R][C], dp[R][C];
            tile_dot<R, C, D>(s, k_tile, q_tile, ty, tx);
            tile_dot<R, C, D>(dp, v_tile, dout_tile, ty, tx);
#pragma unroll
            for (int i = 0; i < R; ++i) {
                const int key = s0 + ty * R + i;
#pragma unroll
                for (int j = 0; j < C; ++j) {
                    const int column = tx + kGridCols * j;
                    const int t = t0 + column;
                    const bool visible = key <= t && t < seq && key < seq && query_segment[column] == row_segment[i];
                    const float p = visible ? expf(s[i][j] * scale - query_lse[column]) : 0.0f;
                    p_tile[(ty * R + i) * (kQueryStream + 1) + column] = p;
                    ds_tile[(ty * R + i) * (kQueryStream + 1) + column] = p * (dp[i][j] - query_delta[column]);
                }
            }
            __syncthreads();
            tile_accumulate<R, kQueryStream, D>(dv_acc, p_tile, dout_tile, ty, tx);
            tile_accumulate<R, kQueryStream, D>(dk_acc, ds_tile, q_tile, ty, tx);
        }
    }

#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int s = s0 + ty * R + i;
        if (s >= seq) continue;
        const int64_t row = layout.kv_head(b, kv) + int64_t{s} * layout.kv_stride();
#pragma unroll
        for (int e = 0; e < E; ++e) {
            dk[row + tx + kGridCols * e] = from_float<T>(dk_acc[i][e] * scale);
            dv[row + tx + kGridCols * e] = from_float<T>(dv_acc[i][e]);
        }
    }
}

HeadLayout check_attention(const char* op, int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                           int64_t head_dim) {
    require(batch > 0 && batch < 65536 && seq > 0 && seq < (int64_t{1} << 30) && heads > 0 && heads < 65536 &&
                kv_heads > 0 && heads % kv_heads == 0,
            AXL_ERR_SHAPE, op, ": batch ", batch, ", seq ", seq, ", heads ", heads, ", kv_heads ", kv_heads);
    require(head_dim == 64 || head_dim == 128, AXL_ERR_UNSUPPORTED, op, ": head_dim ", head_dim,
            " has no CUDA kernel (64 and 128 do)");
    return HeadLayout{static_cast<int>(seq), static_cast<int>(heads), static_cast<int>(kv_heads),
                      static_cast<int>(head_dim)};
}

template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
    AXL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <typename T, int D>
void launch_forward(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* segment, int64_t batch,
                    const HeadLayout& layout, float scale, cudaStream_t stream) {
    constexpr size_t shared_bytes = forward_shared_bytes<D>();
    allow_shared_memory(attention_forward_kernel<T, D>, shared_bytes);
    const dim3 grid(static_cast<unsigned>(ceil_div(layout.seq, kQueryTile)), layout.heads, static_cast<unsigned>(batch));
    attention_forward_kernel<T, D><<<grid, kAttentionThreads, shared_bytes, stream>>>(out, lse, q, k, v, segment,
                                                                                      layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

template <typename Kernel>
void prefer_shared_memory(Kernel kernel, size_t bytes) {
    allow_shared_memory(kernel, bytes);
    AXL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                        cudaSharedmemCarveoutMaxShared));
}

template <int D>
void launch_forward_mma(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* segment,
                        int64_t batch, const HeadLayout& layout, float scale, cudaStream_t stream) {
    constexpr int kKeys = forward_keys<D>();
    constexpr size_t shared_bytes = forward_mma_shared_bytes<D, kKeys>();
    prefer_shared_memory(attention_forward_mma_kernel<D, kKeys>, shared_bytes);
    const dim3 grid(static_cast<unsigned>(ceil_div(layout.seq, kForwardRows)), layout.heads,
                    static_cast<unsigned>(batch));
    attention_forward_mma_kernel<D, kKeys><<<grid, kForwardThreads, shared_bytes, stream>>>(out, lse, q, k, v,
                                                                                            segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_forward_mma_kernel");
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

std::atomic<int> g_kernel_variant{0};

enum class TensorCoreKernels { mma_sync, wgmma };

// Which tensor-core kernels run: wgmma needs an sm_90a build (AXL_CUDA_SM90A, set by
// cmake/cuda.cmake) and a 9.x device; variant 1 (set by the kernel checks) forces mma.sync.
TensorCoreKernels tensor_core_kernels() {
    if (g_kernel_variant.load(std::memory_order_relaxed) == 1) return TensorCoreKernels::mma_sync;
#if defined(AXL_CUDA_SM90A)
    int device = 0, major = 0;
    AXL_CUDA_CHECK(cudaGetDevice(&device));
    AXL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major == 9) return TensorCoreKernels::wgmma;
#endif
    return TensorCoreKernels::mma_sync;
}

template <int D, typename Tiles>
void launch_forward_wgmma(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* segment,
                          int64_t batch, const HeadLayout& layout, float scale, cudaStream_t stream) {
    prefer_shared_memory(attention_forward_wgmma_kernel<D, Tiles>, Tiles::kSharedBytes);
    const dim3 grid(static_cast<unsigned>(ceil_div(layout.seq, Tiles::kRows)), layout.heads,
                    static_cast<unsigned>(batch));
    attention_forward_wgmma_kernel<D, Tiles><<<grid, Tiles::kThreads, Tiles::kSharedBytes, stream>>>(
        out, lse, q, k, v, segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_forward_wgmma_kernel");
}

// Forward tiles measured on H100 at B4 T2048 H32 KV8 (kernels/README.md): d64 takes 64-key
// tiles and two blocks of two warpgroups per SM; d128 128-key tiles and one block.
template <int D>
using ForwardTiles = std::conditional_t<D == 64, WgmmaForwardTiles<64, 64, 2, 2>, WgmmaForwardTiles<128, 128, 2, 1>>;

template <int D>
void launch_forward_tensor_cores(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                 const int32_t* segment, int64_t batch, const HeadLayout& layout, float scale,
                                 cudaStream_t stream) {
    if (tensor_core_kernels() == TensorCoreKernels::mma_sync)
        launch_forward_mma<D>(out, lse, q, k, v, segment, batch, layout, scale, stream);
    else
        launch_forward_wgmma<D, ForwardTiles<D>>(out, lse, q, k, v, segment, batch, layout, scale, stream);
}

template <typename T>
void launch_attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* segment,
                              int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim,
                              float scale, cudaStream_t stream) {
    const HeadLayout layout = check_attention("attention_forward", batch, seq, heads, kv_heads, head_dim);
    // bf16 rows that start on 16 bytes take the tensor cores; the rest the f32 tiled kernel.
    if constexpr (std::is_same_v<T, bf16>) {
        if (aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out)) {
            if (head_dim == 64)
                launch_forward_tensor_cores<64>(out, lse, q, k, v, segment, batch, layout, scale, stream);
            else
                launch_forward_tensor_cores<128>(out, lse, q, k, v, segment, batch, layout, scale, stream);
            return;
        }
    }
    if (head_dim == 64)
        launch_forward<T, 64>(out, lse, q, k, v, segment, batch, layout, scale, stream);
    else
        launch_forward<T, 128>(out, lse, q, k, v, segment, batch, layout, scale, stream);
}

template <typename T, int D>
void launch_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const float* lse,
                     const float* delta, const int32_t* segment, int64_t batch, const HeadLayout& layout, float scale,
                     cudaStream_t stream) {
    constexpr size_t dq_bytes = dq_shared_bytes<D>();
    allow_shared_memory(attention_backward_dq_kernel<T, D>, dq_bytes);
    const dim3 dq_grid(static_cast<unsigned>(ceil_div(layout.seq, kQueryTile)), layout.heads,
                       static_cast<unsigned>(batch));
    attention_backward_dq_kernel<T, D><<<dq_grid, kAttentionThreads, dq_bytes, stream>>>(dq, dout, q, k, v, lse, delta,
                                                                                         segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_backward_dq_kernel");

    constexpr size_t dkdv_bytes = dkdv_shared_bytes<D>();
    allow_shared_memory(attention_backward_dkdv_kernel<T, D>, dkdv_bytes);
    const dim3 dkdv_grid(static_cast<unsigned>(ceil_div(layout.seq, kKeyTile)), layout.kv_heads,
                         static_cast<unsigned>(batch));
    attention_backward_dkdv_kernel<T, D><<<dkdv_grid, kAttentionThreads, dkdv_bytes, stream>>>(
        dk, dv, dout, q, k, v, lse, delta, segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_backward_dkdv_kernel");
}

// Floats of the backward scratch that delta takes, rounded up so that the dQ sum after it
// starts on 16 bytes.
int64_t delta_floats(int64_t batch, int64_t seq, int64_t heads) { return (batch * seq * heads + 3) / 4 * 4; }

template <int D, typename Tiles>
void launch_backward_mma_tiles(float* dq_sum, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                               const bf16* v, const float* lse, const float* delta, const int32_t* segment,
                               int64_t batch, const HeadLayout& layout, float scale, cudaStream_t stream) {
    prefer_shared_memory(attention_backward_mma_kernel<D, Tiles>, Tiles::kSharedBytes);
    const dim3 grid(static_cast<unsigned>(ceil_div(layout.seq, Tiles::kKeys)), layout.kv_heads,
                    static_cast<unsigned>(batch));
    attention_backward_mma_kernel<D, Tiles><<<grid, Tiles::kThreads, Tiles::kSharedBytes, stream>>>(
        dq_sum, dk, dv, dout, q, k, v, lse, delta, segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_backward_mma_kernel");
}

template <int D, typename Tiles>
void launch_backward_wgmma(float* dq_sum, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                           const bf16* v, const float* lse, const float* delta, const int32_t* segment, int64_t batch,
                           const HeadLayout& layout, float scale, cudaStream_t stream) {
    prefer_shared_memory(attention_backward_wgmma_kernel<D, Tiles>, Tiles::kSharedBytes);
    const dim3 grid(static_cast<unsigned>(ceil_div(layout.seq, Tiles::kKeys)), layout.kv_heads,
                    static_cast<unsigned>(batch));
    attention_backward_wgmma_kernel<D, Tiles><<<grid, Tiles::kThreads, Tiles::kSharedBytes, stream>>>(
        dq_sum, dk, dv, dout, q, k, v, lse, delta, segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_backward_wgmma_kernel");
}

template <int D>
void launch_backward_tensor_cores(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                                  const bf16* v, const float* lse, float* scratch, const int32_t* segment,
                                  int64_t batch, const HeadLayout& layout, float scale, cudaStream_t stream) {
    const float* delta = scratch;
    float* dq_sum = scratch + delta_floats(batch, layout.seq, layout.heads);
    const int64_t dq_elements = batch * layout.seq * layout.heads * D;
    AXL_CUDA_CHECK(cudaMemsetAsync(dq_sum, 0, sizeof(float) * dq_elements, stream));
    if (tensor_core_kernels() == TensorCoreKernels::wgmma) {
        // Two warpgroups (128 keys) a block, one block per SM (kernels/README.md has the
        // measurements behind it).
        launch_backward_wgmma<D, WgmmaBackwardTiles<D, 2, 1>>(dq_sum, dk, dv, dout, q, k, v, lse, delta, segment, batch,
                                                              layout, scale, stream);
    } else {
        // 32-query tiles; three blocks per SM at d64, two at d128 (BackwardTiles says why).
        launch_backward_mma_tiles<D, BackwardTiles<D, 32, D == 64 ? 3 : 2>>(dq_sum, dk, dv, dout, q, k, v, lse, delta,
                                                                            segment, batch, layout, scale, stream);
    }
    attention_dq_to_bf16_kernel<<<grid_for(dq_elements / 4, kDqConvertThreads), kDqConvertThreads, 0, stream>>>(
        dq, dq_sum, dq_elements, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_dq_to_bf16_kernel");
}

template <typename T>
void launch_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* q, const T* k, const T* v,
                               const float* lse, float* delta, const int32_t* segment, int64_t batch, int64_t seq,
                               int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, cudaStream_t stream) {
    const HeadLayout layout = check_attention("attention_backward", batch, seq, heads, kv_heads, head_dim);
    const int64_t rows = batch * seq * heads;
    attention_delta_kernel<<<static_cast<unsigned>(ceil_div(rows * kWarpSize, kDeltaThreads)), kDeltaThreads, 0,
                             stream>>>(delta, dout, out, rows, layout);
    AXL_CUDA_CHECK_LAUNCH("attention_delta_kernel");
    if constexpr (std::is_same_v<T, bf16>) {
        if (aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout) && aligned16(dq) && aligned16(dk) &&
            aligned16(dv) && aligned16(delta)) {
            if (head_dim == 64)
                launch_backward_tensor_cores<64>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout,
                                                  scale, stream);
            else
                launch_backward_tensor_cores<128>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout,
                                                  scale, stream);
            return;
        }
    }
    if (head_dim == 64)
        launch_backward<T, 64>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout, scale, stream);
    else
        launch_backward<T, 128>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout, scale, stream);
}

}  // namespace

void set_attention_kernel_variant(int tensor_core_variant) {
    g_kernel_variant.store(tensor_core_variant, std::memory_order_relaxed);
}

size_t attention_backward_scratch_floats(int64_t batch, int64_t seq, int64_t heads) {
    return static_cast<size_t>(delta_floats(batch, seq, heads) + batch * seq * heads * kMaxHeadDim);
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* segment,
                       int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
                       cudaStream_t stream) {
    launch_attention_forward(out, lse, q, k, v, segment, batch, seq, heads, kv_heads, head_dim, scale, stream);
}

void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* segment,
                       int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
                       cudaStream_t stream) {
    launch_attention_forward(out, lse, q, k, v, segment, batch, seq, heads, kv_heads, head_dim, scale, stream);
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* q,
                        const float* k, const float* v, const float* lse, float* delta, const int32_t* segment,
                        int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
                        cudaStream_t stream) {
    launch_attention_backward(dq, dk, dv, dout, out, q, k, v, lse, delta, segment, batch, seq, heads, kv_heads,
                              head_dim, scale, stream);
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const bf16* q,
                        const bf16* k, const bf16* v, const float* lse, float* delta, const int32_t* segment,
                        int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale,
                        cudaStream_t stream) {
    launch_attention_backward(dq, dk, dv, dout, out, q, k, v, lse, delta, segment, batch, seq, heads, kv_heads,
                              head_dim, scale, stream);
}

}  // namespace axl::cuda
