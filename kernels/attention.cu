// Causal attention with grouped-query heads and packed sequences on the device, flash-attention
// style (the twin of backend/cpu/attention.cpp, same contract): scores exist one tile at a
// time in registers and shared memory, never as a T x T matrix.
//
//   forward   a block owns kQueryTile query rows of one head and streams key/value tiles of
//             kKeyStream rows, keeping an online softmax (running max, running sum) per row;
//             it saves lse = max + log(sum) per row.
//   backward  delta_t = dout_t . out_t; then two passes, like the CPU twin, so that every
//             output row has one writer (deterministic, no atomics):
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
// Every kernel is a 16 x 16 grid of threads. Thread (ty, tx) owns rows ty*R .. ty*R + R-1 of its
// block's tile and columns tx, tx + 16, ... of the streamed tile and of the head dimension.
// Tiles sit in shared memory as f32 rows padded by one float, so that walking down a column
// touches 16 distinct banks. This tiled version runs on f32 FMAs and serves f32 tensors (and
// bf16 rows not aligned to 16 bytes); bf16 runs on the tensor cores (the *_mma_kernel below).
#include <cfloat>
#include <type_traits>

#include "backend/cuda/ops.hpp"
#include "common.cuh"

namespace axl::cuda {
namespace {

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

// First position of the segment run holding position t (0 without segment ids). The whole
// block scans backwards from t, blockDim.x positions a step; runs are short next to the tiles
// they save.
__device__ int segment_run_begin(const int32_t* segment_row, int t) {
    __shared__ int begin;
    if (segment_row == nullptr) return 0;
    const int32_t id = segment_row[t];
    if (threadIdx.x == 0) begin = 0;
    __syncthreads();
    for (int base = t; base > 0; base -= static_cast<int>(blockDim.x)) {
        const int p = base - 1 - static_cast<int>(threadIdx.x);
        const bool boundary = p >= 0 && segment_row[p] != id;
        if (boundary) atomicMax(&begin, p + 1);
        if (__syncthreads_or(boundary)) break;
    }
    return begin;
}

// One past the last position of the run holding position t (seq without segment ids).
__device__ int segment_run_end(const int32_t* segment_row, int t, int seq) {
    __shared__ int end;
    if (segment_row == nullptr) return seq;
    const int32_t id = segment_row[t];
    if (threadIdx.x == 0) end = seq;
    __syncthreads();
    for (int base = t + 1; base < seq; base += static_cast<int>(blockDim.x)) {
        const int p = base + static_cast<int>(threadIdx.x);
        const bool boundary = p < seq && segment_row[p] != id;
        if (boundary) atomicMin(&end, p);
        if (__syncthreads_or(boundary)) break;
    }
    return end;
}

__device__ __forceinline__ int ceil_div_device(int a, int b) { return (a + b - 1) / b; }

// Where the rows of batch row b live: [B, T, heads, D] and [B, T, kv_heads, D] layouts.
struct HeadLayout {
    int seq, heads, kv_heads, head_dim;

    __device__ int64_t q_stride() const { return int64_t{heads} * head_dim; }
    __device__ int64_t kv_stride() const { return int64_t{kv_heads} * head_dim; }
    // Offset of row t = 0 of query head h (or kv head) of batch row b.
    __device__ int64_t q_head(int b, int h) const { return (int64_t{b} * seq * heads + h) * head_dim; }
    __device__ int64_t kv_head(int b, int h) const { return (int64_t{b} * seq * kv_heads + h) * head_dim; }
    __device__ int64_t stat(int b, int h, int t) const { return (int64_t{b} * heads + h) * seq + t; }
};

// ---- the tensor-core kernels (bf16) ---------------------------------------------------------
// Flash-attention 2's layout on mma.sync.m16n8k16 (bf16 in, f32 accumulate). A block of
// kMmaWarps warps owns a tile of rows, 16 per warp (the m of the instruction); a warp's score
// tile S (16 x a streamed tile) lives in accumulator fragments, where a row's values sit in the 4
// lanes of a quad, so the softmax needs two shuffles; probabilities (or dS) are reused straight
// from the accumulators as the A operand of the next product, rounded to bf16 as flash-attention
// does. Tiles are staged in shared memory row-major, rows padded by kMmaPad elements so that the
// 8 rows of a fragment load fall 4 banks apart (conflict-free); the streamed tiles are double
// buffered with cp.async. Operands that the product needs "k-major" (V in P V, dO and Q in the
// backward) are read with ldmatrix.trans.
//   forward  rows = queries; S = Q K^T, O += P V.
//   dq       rows = queries; S = Q K^T, dP = dO V^T, dS = P (dP - delta), dQ += dS K.
//   dk/dv    rows = keys of one kv head; streams query tiles of every head of its group:
//            S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q.
constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * kWarpSize;
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;  // the mma.sync shape
constexpr int kMmaRowTile = kMmaWarps * kMmaM;    // rows a block owns: 64
constexpr int kMmaKeyStream = 64;                 // keys per streamed tile (forward, dq)
constexpr int kMmaQueryStream = 32;               // queries per streamed tile (dk/dv)
constexpr int kMmaPad = 8;
constexpr int kMmaStages = 2;
constexpr int kVectorElements = 8;  // bf16 per 16-byte copy
static_assert(kMmaKeyStream <= kMmaThreads && kMmaQueryStream <= kMmaThreads, "one thread per streamed row's ids");
static_assert(kMmaKeyStream % kMmaK == 0 && kMmaQueryStream % kMmaK == 0, "streamed tiles split into k-steps");
static_assert(kMmaRowTile % kMmaQueryStream == 0, "key tiles start on query-tile boundaries");

template <int D>
constexpr int mma_row_stride() { return D + kMmaPad; }

template <int D>
constexpr size_t mma_forward_shared_bytes() {
    return sizeof(bf16) * mma_row_stride<D>() * (kMmaRowTile + kMmaStages * 2 * kMmaKeyStream);
}
template <int D>
constexpr size_t mma_dq_shared_bytes() {
    return sizeof(bf16) * mma_row_stride<D>() * (2 * kMmaRowTile + kMmaStages * 2 * kMmaKeyStream);
}
template <int D>
constexpr size_t mma_dkdv_shared_bytes() {
    return sizeof(bf16) * mma_row_stride<D>() * (2 * kMmaRowTile + kMmaStages * 2 * kMmaQueryStream);
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mma_bf16_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The A fragment of rows row0..row0+15, columns col0..col0+15 of a row-major shared tile.
__device__ __forceinline__ void load_a_fragment(uint32_t (&a)[4], const bf16* tile, int stride, int row0, int col0) {
    const int lane = threadIdx.x % kWarpSize;
    const bf16* p = tile + (row0 + lane % 8 + 8 * ((lane / 8) % 2)) * stride + col0 + 8 * (lane / 16);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(shared_address(p)));
}

// B fragments of two n-tiles (columns n0..n0+7 and n0+8..n0+15) for the k-step k0..k0+15, from a
// row-major shared tile whose rows are k (b[0], b[1] for the first n-tile, b[2], b[3] for the
// second).
__device__ __forceinline__ void load_b_fragments_k_major(uint32_t (&b)[4], const bf16* tile, int stride, int k0,
                                                         int n0) {
    const int lane = threadIdx.x % kWarpSize;
    const bf16* p = tile + (k0 + lane % 8 + 8 * ((lane / 8) % 2)) * stride + n0 + 8 * (lane / 16);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(shared_address(p)));
}

// Two consecutive bf16 of shared memory as one register: with rows that are n (K in Q K^T), the
// B fragment of n-tile n0, k-step k0 is {pair(row n0 + quad, k0 + 2 in_quad), the same + 8}.
__device__ __forceinline__ uint32_t load_pair(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint32_t pack_bf16_pair(float first, float second) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(first, second);  // .x (first) at the lower address
    return *reinterpret_cast<const uint32_t*>(&pair);
}

// 16 bytes global -> shared, asynchronously; zeros when !valid (src is then not read).
__device__ __forceinline__ void copy_async_16(bf16* shared_dst, const bf16* global_src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared_dst)),
                 "l"(global_src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending)); }

// Rows 0..Rows-1 of a strided bf16 matrix starting at row `first` (rows >= valid become zeros)
// into a padded row-major shared tile, asynchronously.
template <int Rows, int D>
__device__ __forceinline__ void copy_rows_async(bf16* tile, const bf16* src, int64_t stride, int first, int valid) {
    constexpr int kVectorsPerRow = D / kVectorElements;
    for (int i = threadIdx.x; i < Rows * kVectorsPerRow; i += kMmaThreads) {
        const int r = i / kVectorsPerRow;
        const int c = (i % kVectorsPerRow) * kVectorElements;
        const bool in_range = r < valid;
        copy_async_16(tile + r * mma_row_stride<D>() + c, src + int64_t{first + (in_range ? r : 0)} * stride + c,
                      in_range);
    }
}

// Accumulator element e of an n-tile sits in row quad + 8 * (e / 2) and this column.
__device__ __forceinline__ int fragment_column(int e) { return 2 * (threadIdx.x % 4) + (e & 1); }

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
__global__ void __launch_bounds__(kMmaThreads)
attention_forward_mma_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const int32_t* segment, HeadLayout layout, float scale) {
    constexpr int kStride = mma_row_stride<D>();
    constexpr int kDSteps = D / kMmaK;
    constexpr int kKeyTiles = kMmaKeyStream / kMmaN;
    constexpr int kKeySteps = kMmaKeyStream / kMmaK;
    constexpr int kDTiles = D / kMmaN;
    constexpr int kStreamElements = kMmaKeyStream * kStride;
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* q_tile = reinterpret_cast<bf16*>(shared_bytes);  // [kMmaRowTile][kStride]
    bf16* streams = q_tile + kMmaRowTile * kStride;         // per stage: K tile, V tile
    __shared__ int32_t key_segment[kMmaStages][kMmaKeyStream];

    const int warp = threadIdx.x / kWarpSize;
    const int quad = (threadIdx.x % kWarpSize) / 4;
    const int in_quad = threadIdx.x % 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kMmaRowTile;  // later tiles see more keys: start them first
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int kv = h / (layout.heads / layout.kv_heads);
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;
    const bf16* k_rows = k + layout.kv_head(b, kv);
    const bf16* v_rows = v + layout.kv_head(b, kv);

    const int q_valid = min(kMmaRowTile, seq - q0);
    const int key_begin = segment_run_begin(segment_row, q0);
    const int first_key = key_begin - key_begin % kMmaKeyStream;
    const int key_end = q0 + q_valid;
    auto stage_keys = [&](int k0, int stage) {
        bf16* k_dst = streams + stage * 2 * kStreamElements;
        const int k_valid = min(kMmaKeyStream, seq - k0);
        copy_rows_async<kMmaKeyStream, D>(k_dst, k_rows, layout.kv_stride(), k0, k_valid);
        copy_rows_async<kMmaKeyStream, D>(k_dst + kStreamElements, v_rows, layout.kv_stride(), k0, k_valid);
        if (threadIdx.x < kMmaKeyStream)
            key_segment[stage][threadIdx.x] = segment_row && static_cast<int>(threadIdx.x) < k_valid
                                                  ? segment_row[k0 + threadIdx.x] : 0;
        copy_async_commit();
    };
    copy_rows_async<kMmaRowTile, D>(q_tile, q + layout.q_head(b, h), layout.q_stride(), q0, q_valid);
    stage_keys(first_key, 0);  // one group with the Q tile

    int row_t[2], row_segment[2];
    float row_max[2], row_sum[2];  // max in log2 units: scores are scaled by scale * log2(e)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_t[r] = q0 + warp * kMmaM + quad + 8 * r;
        row_segment[r] = segment_row && row_t[r] < seq ? segment_row[row_t[r]] : 0;
        row_max[r] = -INFINITY;
        row_sum[r] = 0.0f;
    }
    float o[kDTiles][4];
#pragma unroll
    for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[dn][e] = 0.0f;
    const float scale_log2 = scale * kLog2e;

    int stage = 0;
    for (int k0 = first_key; k0 < key_end; k0 += kMmaKeyStream, stage ^= 1) {
        if (k0 + kMmaKeyStream < key_end) {
            stage_keys(k0 + kMmaKeyStream, stage ^ 1);
            copy_async_wait<1>();
        } else {
            copy_async_wait<0>();
        }
        __syncthreads();
        const bf16* k_tile = streams + stage * 2 * kStreamElements;
        const bf16* v_tile = k_tile + kStreamElements;

        float s[kKeyTiles][4];
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[nt][e] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < kDSteps; ++kd) {
            uint32_t a[4];
            load_a_fragment(a, q_tile, kStride, warp * kMmaM, kd * kMmaK);
#pragma unroll
            for (int nt = 0; nt < kKeyTiles; ++nt) {
                const bf16* key_row = k_tile + (nt * kMmaN + quad) * kStride + kd * kMmaK + 2 * in_quad;
                mma_bf16_m16n8k16(s[nt], a, load_pair(key_row), load_pair(key_row + 8));
            }
        }
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int column = nt * kMmaN + fragment_column(e);
                const int t = row_t[e >> 1];
                const bool visible = k0 + column <= t && t < seq && key_segment[stage][column] == row_segment[e >> 1];
                s[nt][e] = visible ? s[nt][e] * scale_log2 : -INFINITY;
            }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float tile_max = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < kKeyTiles; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            tile_max = group_max<4>(tile_max);
            const float new_max = fmaxf(row_max[r], tile_max);
            const float base = new_max == -INFINITY ? 0.0f : new_max;  // nothing visible yet: all p = 0
            const float correction = exp2f(row_max[r] - base);
            float tile_sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < kKeyTiles; ++nt) {
                s[nt][2 * r] = exp2f(s[nt][2 * r] - base);
                s[nt][2 * r + 1] = exp2f(s[nt][2 * r + 1] - base);
                tile_sum += s[nt][2 * r] + s[nt][2 * r + 1];
            }
            row_sum[r] = row_sum[r] * correction + group_sum<4>(tile_sum);
            row_max[r] = new_max;
#pragma unroll
            for (int dn = 0; dn < kDTiles; ++dn) {
                o[dn][2 * r] *= correction;
                o[dn][2 * r + 1] *= correction;
            }
        }
        // The accumulators of n-tiles 2kk and 2kk+1 are the A fragment of k-step kk.
#pragma unroll
        for (int kk = 0; kk < kKeySteps; ++kk) {
            const uint32_t a[4] = {pack_bf16_pair(s[2 * kk][0], s[2 * kk][1]), pack_bf16_pair(s[2 * kk][2], s[2 * kk][3]),
                                   pack_bf16_pair(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack_bf16_pair(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dn = 0; dn < kDTiles; dn += 2) {
                uint32_t bv[4];
                load_b_fragments_k_major(bv, v_tile, kStride, kk * kMmaK, dn * kMmaN);
                mma_bf16_m16n8k16(o[dn], a, bv[0], bv[1]);
                mma_bf16_m16n8k16(o[dn + 1], a, bv[2], bv[3]);
            }
        }
        __syncthreads();  // the next iteration refills this stage
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = row_t[r];
        if (t >= seq) continue;
        const float inv_sum = 1.0f / row_sum[r];  // key t itself is visible: row_sum >= 1
        bf16* out_row = out + layout.q_head(b, h) + int64_t{t} * layout.q_stride();
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
            *reinterpret_cast<uint32_t*>(out_row + dn * kMmaN + 2 * in_quad) =
                pack_bf16_pair(o[dn][2 * r] * inv_sum, o[dn][2 * r + 1] * inv_sum);
        if (in_quad == 0) lse[layout.stat(b, h, t)] = row_max[r] * kLn2 + logf(row_sum[r]);
    }
}

template <int D>
__global__ void __launch_bounds__(kMmaThreads)
attention_backward_dq_mma_kernel(bf16* dq, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                                 const float* lse, const float* delta, const int32_t* segment, HeadLayout layout,
                                 float scale) {
    constexpr int kStride = mma_row_stride<D>();
    constexpr int kDSteps = D / kMmaK;
    constexpr int kKeyTiles = kMmaKeyStream / kMmaN;
    constexpr int kKeySteps = kMmaKeyStream / kMmaK;
    constexpr int kDTiles = D / kMmaN;
    constexpr int kStreamElements = kMmaKeyStream * kStride;
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* q_tile = reinterpret_cast<bf16*>(shared_bytes);  // [kMmaRowTile][kStride]
    bf16* dout_tile = q_tile + kMmaRowTile * kStride;       // [kMmaRowTile][kStride]
    bf16* streams = dout_tile + kMmaRowTile * kStride;      // per stage: K tile, V tile
    __shared__ int32_t key_segment[kMmaStages][kMmaKeyStream];

    const int warp = threadIdx.x / kWarpSize;
    const int quad = (threadIdx.x % kWarpSize) / 4;
    const int in_quad = threadIdx.x % 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kMmaRowTile;
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int kv = h / (layout.heads / layout.kv_heads);
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;
    const bf16* k_rows = k + layout.kv_head(b, kv);
    const bf16* v_rows = v + layout.kv_head(b, kv);

    const int q_valid = min(kMmaRowTile, seq - q0);
    const int key_begin = segment_run_begin(segment_row, q0);
    const int first_key = key_begin - key_begin % kMmaKeyStream;
    const int key_end = q0 + q_valid;
    auto stage_keys = [&](int k0, int stage) {
        bf16* k_dst = streams + stage * 2 * kStreamElements;
        const int k_valid = min(kMmaKeyStream, seq - k0);
        copy_rows_async<kMmaKeyStream, D>(k_dst, k_rows, layout.kv_stride(), k0, k_valid);
        copy_rows_async<kMmaKeyStream, D>(k_dst + kStreamElements, v_rows, layout.kv_stride(), k0, k_valid);
        if (threadIdx.x < kMmaKeyStream)
            key_segment[stage][threadIdx.x] = segment_row && static_cast<int>(threadIdx.x) < k_valid
                                                  ? segment_row[k0 + threadIdx.x] : 0;
        copy_async_commit();
    };
    copy_rows_async<kMmaRowTile, D>(q_tile, q + layout.q_head(b, h), layout.q_stride(), q0, q_valid);
    copy_rows_async<kMmaRowTile, D>(dout_tile, dout + layout.q_head(b, h), layout.q_stride(), q0, q_valid);
    stage_keys(first_key, 0);

    int row_t[2], row_segment[2];
    float row_lse[2], row_delta[2];  // lse in log2 units
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_t[r] = q0 + warp * kMmaM + quad + 8 * r;
        const bool valid = row_t[r] < seq;
        row_segment[r] = segment_row && valid ? segment_row[row_t[r]] : 0;
        row_lse[r] = valid ? lse[layout.stat(b, h, row_t[r])] * kLog2e : 0.0f;
        row_delta[r] = valid ? delta[layout.stat(b, h, row_t[r])] : 0.0f;
    }
    float acc[kDTiles][4];
#pragma unroll
    for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[dn][e] = 0.0f;
    const float scale_log2 = scale * kLog2e;

    int stage = 0;
    for (int k0 = first_key; k0 < key_end; k0 += kMmaKeyStream, stage ^= 1) {
        if (k0 + kMmaKeyStream < key_end) {
            stage_keys(k0 + kMmaKeyStream, stage ^ 1);
            copy_async_wait<1>();
        } else {
            copy_async_wait<0>();
        }
        __syncthreads();
        const bf16* k_tile = streams + stage * 2 * kStreamElements;
        const bf16* v_tile = k_tile + kStreamElements;

        float s[kKeyTiles][4], dp[kKeyTiles][4];
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[nt][e] = 0.0f;
                dp[nt][e] = 0.0f;
            }
#pragma unroll
        for (int kd = 0; kd < kDSteps; ++kd) {
            uint32_t a_q[4], a_dout[4];
            load_a_fragment(a_q, q_tile, kStride, warp * kMmaM, kd * kMmaK);
            load_a_fragment(a_dout, dout_tile, kStride, warp * kMmaM, kd * kMmaK);
#pragma unroll
            for (int nt = 0; nt < kKeyTiles; ++nt) {
                const int offset = (nt * kMmaN + quad) * kStride + kd * kMmaK + 2 * in_quad;
                mma_bf16_m16n8k16(s[nt], a_q, load_pair(k_tile + offset), load_pair(k_tile + offset + 8));
                mma_bf16_m16n8k16(dp[nt], a_dout, load_pair(v_tile + offset), load_pair(v_tile + offset + 8));
            }
        }
        // dS = P (dP - delta), P = exp(scale q.k - lse); kept in s.
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int column = nt * kMmaN + fragment_column(e);
                const int r = e >> 1;
                const bool visible =
                    k0 + column <= row_t[r] && row_t[r] < seq && key_segment[stage][column] == row_segment[r];
                const float p = visible ? exp2f(s[nt][e] * scale_log2 - row_lse[r]) : 0.0f;
                s[nt][e] = p * (dp[nt][e] - row_delta[r]);
            }
#pragma unroll
        for (int kk = 0; kk < kKeySteps; ++kk) {
            const uint32_t a[4] = {pack_bf16_pair(s[2 * kk][0], s[2 * kk][1]), pack_bf16_pair(s[2 * kk][2], s[2 * kk][3]),
                                   pack_bf16_pair(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack_bf16_pair(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dn = 0; dn < kDTiles; dn += 2) {
                uint32_t bk[4];
                load_b_fragments_k_major(bk, k_tile, kStride, kk * kMmaK, dn * kMmaN);
                mma_bf16_m16n8k16(acc[dn], a, bk[0], bk[1]);
                mma_bf16_m16n8k16(acc[dn + 1], a, bk[2], bk[3]);
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = row_t[r];
        if (t >= seq) continue;
        bf16* dq_row = dq + layout.q_head(b, h) + int64_t{t} * layout.q_stride();
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
            *reinterpret_cast<uint32_t*>(dq_row + dn * kMmaN + 2 * in_quad) =
                pack_bf16_pair(acc[dn][2 * r] * scale, acc[dn][2 * r + 1] * scale);
    }
}

template <int D>
__global__ void __launch_bounds__(kMmaThreads)
attention_backward_dkdv_mma_kernel(bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                                   const float* lse, const float* delta, const int32_t* segment, HeadLayout layout,
                                   float scale) {
    constexpr int kStride = mma_row_stride<D>();
    constexpr int kDSteps = D / kMmaK;
    constexpr int kQueryTiles = kMmaQueryStream / kMmaN;
    constexpr int kQuerySteps = kMmaQueryStream / kMmaK;
    constexpr int kDTiles = D / kMmaN;
    constexpr int kStreamElements = kMmaQueryStream * kStride;
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* k_tile = reinterpret_cast<bf16*>(shared_bytes);  // [kMmaRowTile][kStride]
    bf16* v_tile = k_tile + kMmaRowTile * kStride;          // [kMmaRowTile][kStride]
    bf16* streams = v_tile + kMmaRowTile * kStride;         // per stage: Q tile, dO tile
    __shared__ int32_t query_segment[kMmaStages][kMmaQueryStream];
    __shared__ float query_lse[kMmaStages][kMmaQueryStream];  // log2 units
    __shared__ float query_delta[kMmaStages][kMmaQueryStream];

    const int warp = threadIdx.x / kWarpSize;
    const int in_quad = threadIdx.x % 4;
    const int s0 = blockIdx.x * kMmaRowTile;
    const int kv = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int group = layout.heads / layout.kv_heads;
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;

    const int k_valid = min(kMmaRowTile, seq - s0);
    copy_rows_async<kMmaRowTile, D>(k_tile, k + layout.kv_head(b, kv), layout.kv_stride(), s0, k_valid);
    copy_rows_async<kMmaRowTile, D>(v_tile, v + layout.kv_head(b, kv), layout.kv_stride(), s0, k_valid);
    const int query_end = segment_run_end(segment_row, s0 + k_valid - 1, seq);
    const int query_tiles = static_cast<int>(ceil_div_device(query_end - s0, kMmaQueryStream));
    const int steps = group * query_tiles;  // (query head, query tile) pairs, head-major
    auto stage_queries = [&](int step, int stage) {
        const int h = kv * group + step / query_tiles;
        const int t0 = s0 + (step % query_tiles) * kMmaQueryStream;
        bf16* q_dst = streams + stage * 2 * kStreamElements;
        const int q_valid = min(kMmaQueryStream, seq - t0);
        copy_rows_async<kMmaQueryStream, D>(q_dst, q + layout.q_head(b, h), layout.q_stride(), t0, q_valid);
        copy_rows_async<kMmaQueryStream, D>(q_dst + kStreamElements, dout + layout.q_head(b, h), layout.q_stride(), t0,
                                            q_valid);
        if (threadIdx.x < kMmaQueryStream) {
            const int t = t0 + threadIdx.x;
            const bool valid = static_cast<int>(threadIdx.x) < q_valid;
            query_segment[stage][threadIdx.x] = segment_row && valid ? segment_row[t] : 0;
            query_lse[stage][threadIdx.x] = valid ? lse[layout.stat(b, h, t)] * kLog2e : 0.0f;
            query_delta[stage][threadIdx.x] = valid ? delta[layout.stat(b, h, t)] : 0.0f;
        }
        copy_async_commit();
    };
    stage_queries(0, 0);  // one group with the K and V tiles

    int key_s[2], key_segment[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        key_s[r] = s0 + warp * kMmaM + (threadIdx.x % kWarpSize) / 4 + 8 * r;
        key_segment[r] = segment_row && key_s[r] < seq ? segment_row[key_s[r]] : 0;
    }
    float dk_acc[kDTiles][4], dv_acc[kDTiles][4];
#pragma unroll
    for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            dk_acc[dn][e] = 0.0f;
            dv_acc[dn][e] = 0.0f;
        }
    const float scale_log2 = scale * kLog2e;

    for (int step = 0; step < steps; ++step) {
        const int stage = step % kMmaStages;
        if (step + 1 < steps) {
            stage_queries(step + 1, stage ^ 1);
            copy_async_wait<1>();
        } else {
            copy_async_wait<0>();
        }
        __syncthreads();
        const int t0 = s0 + (step % query_tiles) * kMmaQueryStream;
        const bf16* q_tile = streams + stage * 2 * kStreamElements;
        const bf16* dout_tile = q_tile + kStreamElements;

        float s[kQueryTiles][4], dp[kQueryTiles][4];
#pragma unroll
        for (int nt = 0; nt < kQueryTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[nt][e] = 0.0f;
                dp[nt][e] = 0.0f;
            }
        const int quad = (threadIdx.x % kWarpSize) / 4;
#pragma unroll
        for (int kd = 0; kd < kDSteps; ++kd) {
            uint32_t a_k[4], a_v[4];
            load_a_fragment(a_k, k_tile, kStride, warp * kMmaM, kd * kMmaK);
            load_a_fragment(a_v, v_tile, kStride, warp * kMmaM, kd * kMmaK);
#pragma unroll
            for (int nt = 0; nt < kQueryTiles; ++nt) {
                const int offset = (nt * kMmaN + quad) * kStride + kd * kMmaK + 2 * in_quad;
                mma_bf16_m16n8k16(s[nt], a_k, load_pair(q_tile + offset), load_pair(q_tile + offset + 8));
                mma_bf16_m16n8k16(dp[nt], a_v, load_pair(dout_tile + offset), load_pair(dout_tile + offset + 8));
            }
        }
        // Rows are keys, columns queries: P^T into s, dS^T into dp.
#pragma unroll
        for (int nt = 0; nt < kQueryTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int column = nt * kMmaN + fragment_column(e);
                const int t = t0 + column;
                const int r = e >> 1;
                const bool visible = key_s[r] <= t && t < seq && key_s[r] < seq &&
                                     query_segment[stage][column] == key_segment[r];
                const float p = visible ? exp2f(s[nt][e] * scale_log2 - query_lse[stage][column]) : 0.0f;
                s[nt][e] = p;
                dp[nt][e] = p * (dp[nt][e] - query_delta[stage][column]);
            }
#pragma unroll
        for (int kk = 0; kk < kQuerySteps; ++kk) {
            const uint32_t a_p[4] = {pack_bf16_pair(s[2 * kk][0], s[2 * kk][1]), pack_bf16_pair(s[2 * kk][2], s[2 * kk][3]),
                                     pack_bf16_pair(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                     pack_bf16_pair(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const uint32_t a_ds[4] = {pack_bf16_pair(dp[2 * kk][0], dp[2 * kk][1]),
                                      pack_bf16_pair(dp[2 * kk][2], dp[2 * kk][3]),
                                      pack_bf16_pair(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                                      pack_bf16_pair(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
            for (int dn = 0; dn < kDTiles; dn += 2) {
                uint32_t b_dout[4], b_q[4];
                load_b_fragments_k_major(b_dout, dout_tile, kStride, kk * kMmaK, dn * kMmaN);
                load_b_fragments_k_major(b_q, q_tile, kStride, kk * kMmaK, dn * kMmaN);
                mma_bf16_m16n8k16(dv_acc[dn], a_p, b_dout[0], b_dout[1]);
                mma_bf16_m16n8k16(dv_acc[dn + 1], a_p, b_dout[2], b_dout[3]);
                mma_bf16_m16n8k16(dk_acc[dn], a_ds, b_q[0], b_q[1]);
                mma_bf16_m16n8k16(dk_acc[dn + 1], a_ds, b_q[2], b_q[3]);
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (key_s[r] >= seq) continue;
        const int64_t row = layout.kv_head(b, kv) + int64_t{key_s[r]} * layout.kv_stride();
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn) {
            const int d = dn * kMmaN + 2 * in_quad;
            *reinterpret_cast<uint32_t*>(dk + row + d) = pack_bf16_pair(dk_acc[dn][2 * r] * scale, dk_acc[dn][2 * r + 1] * scale);
            *reinterpret_cast<uint32_t*>(dv + row + d) = pack_bf16_pair(dv_acc[dn][2 * r], dv_acc[dn][2 * r + 1]);
        }
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

template <int D>
void launch_forward_mma(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* segment,
                        int64_t batch, const HeadLayout& layout, float scale, cudaStream_t stream) {
    constexpr size_t shared_bytes = mma_forward_shared_bytes<D>();
    allow_shared_memory(attention_forward_mma_kernel<D>, shared_bytes);
    const dim3 grid(static_cast<unsigned>(ceil_div(layout.seq, kMmaRowTile)), layout.heads,
                    static_cast<unsigned>(batch));
    attention_forward_mma_kernel<D><<<grid, kMmaThreads, shared_bytes, stream>>>(out, lse, q, k, v, segment, layout,
                                                                                 scale);
    AXL_CUDA_CHECK_LAUNCH("attention_forward_mma_kernel");
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T>
void launch_attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* segment,
                              int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim,
                              float scale, cudaStream_t stream) {
    const HeadLayout layout = check_attention("attention_forward", batch, seq, heads, kv_heads, head_dim);
    // bf16 rows that start on 16 bytes take the tensor cores; the rest the f32 tiled kernel.
    if constexpr (std::is_same_v<T, bf16>) {
        if (aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out)) {
            if (head_dim == 64)
                launch_forward_mma<64>(out, lse, q, k, v, segment, batch, layout, scale, stream);
            else
                launch_forward_mma<128>(out, lse, q, k, v, segment, batch, layout, scale, stream);
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

template <int D>
void launch_backward_mma(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                         const float* lse, const float* delta, const int32_t* segment, int64_t batch,
                         const HeadLayout& layout, float scale, cudaStream_t stream) {
    constexpr size_t dq_bytes = mma_dq_shared_bytes<D>();
    allow_shared_memory(attention_backward_dq_mma_kernel<D>, dq_bytes);
    const dim3 dq_grid(static_cast<unsigned>(ceil_div(layout.seq, kMmaRowTile)), layout.heads,
                       static_cast<unsigned>(batch));
    attention_backward_dq_mma_kernel<D><<<dq_grid, kMmaThreads, dq_bytes, stream>>>(dq, dout, q, k, v, lse, delta,
                                                                                   segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_backward_dq_mma_kernel");

    constexpr size_t dkdv_bytes = mma_dkdv_shared_bytes<D>();
    allow_shared_memory(attention_backward_dkdv_mma_kernel<D>, dkdv_bytes);
    const dim3 dkdv_grid(static_cast<unsigned>(ceil_div(layout.seq, kMmaRowTile)), layout.kv_heads,
                         static_cast<unsigned>(batch));
    attention_backward_dkdv_mma_kernel<D><<<dkdv_grid, kMmaThreads, dkdv_bytes, stream>>>(
        dk, dv, dout, q, k, v, lse, delta, segment, layout, scale);
    AXL_CUDA_CHECK_LAUNCH("attention_backward_dkdv_mma_kernel");
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
            aligned16(dv)) {
            if (head_dim == 64)
                launch_backward_mma<64>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout, scale, stream);
            else
                launch_backward_mma<128>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout, scale, stream);
            return;
        }
    }
    if (head_dim == 64)
        launch_backward<T, 64>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout, scale, stream);
    else
        launch_backward<T, 128>(dq, dk, dv, dout, q, k, v, lse, delta, segment, batch, layout, scale, stream);
}

}  // namespace

size_t attention_backward_scratch_floats(int64_t batch, int64_t seq, int64_t heads) {
    return static_cast<size_t>(batch * heads * seq);
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
