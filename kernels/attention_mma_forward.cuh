// The bf16 attention forward on the tensor cores (flash-attention 2's layout on mma.sync): a
// block of kForwardWarps warps owns kForwardRows query rows of one head, kForwardRowTiles m16
// tiles per warp, and streams K/V tiles of Keys keys through Stages cp.async buffers.
// Each warp keeps its scores S = Q K^T in accumulators, updates an online softmax (running max
// and sum per row, in log2 units so that exp2 does the work), and reuses the probabilities,
// rounded to bf16 as flash-attention does, as the A operand of O += P V. A warp's two row tiles
// share every K and V fragment it loads, which halves the shared-memory reads per product.
// Only the key tiles that cross the diagonal (or any tile of a packed row) pay for the
// per-element mask. Private to kernels/attention.cu.
#pragma once

#include "attention_layout.cuh"
#include "attention_mma.cuh"

namespace axl::cuda::attention_detail {

constexpr int kForwardWarps = 4;
constexpr int kForwardThreads = kForwardWarps * kWarpSize;
constexpr int kForwardRowTiles = 2;                                  // m16 tiles per warp
constexpr int kForwardWarpRows = kForwardRowTiles * kMmaM;           // 32
constexpr int kForwardRows = kForwardWarps * kForwardWarpRows;       // query rows a block owns: 128
// Keys per streamed tile: 64, or 32 at d128, where the scores of 64 keys next to the output
// accumulators spill (measured 12% slower on H100).
template <int D>
constexpr int forward_keys() { return D <= 64 ? 64 : 32; }

constexpr int kForwardStages = 2;  // a third stage measured no faster

template <int D, int Keys>
constexpr size_t forward_mma_shared_bytes() {
    return sizeof(bf16) * (D + kMmaPad) * (kForwardRows + kForwardStages * 2 * Keys);
}

// kForwardStages K/V tiles in flight; every iteration commits one cp.async group (empty past
// the last tile), so that waiting for all but kForwardStages - 1 groups always means "this
// tile is in". Two blocks per SM (255 registers a thread): at three the accumulators spill.
template <int D, int kForwardKeys>
__global__ void __launch_bounds__(kForwardThreads, 2)
attention_forward_mma_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const int32_t* segment, HeadLayout layout, float scale) {
    constexpr int kStride = D + kMmaPad;
    constexpr int kDSteps = D / kMmaK;
    constexpr int kKeyTiles = kForwardKeys / kMmaN;
    constexpr int kKeySteps = kForwardKeys / kMmaK;
    constexpr int kDTiles = D / kMmaN;
    constexpr int kStreamElements = kForwardKeys * kStride;
    constexpr int M = kForwardRowTiles;
    static_assert(kForwardKeys <= kForwardThreads && kForwardKeys % kMmaK == 0, "tile shapes");
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* q_tile = reinterpret_cast<bf16*>(shared_bytes);  // [kForwardRows][kStride]
    bf16* streams = q_tile + kForwardRows * kStride;        // per stage: K tile, V tile
    __shared__ int32_t key_segment[kForwardStages][kForwardKeys];

    const int warp = threadIdx.x / kWarpSize;
    const int quad = lane_id() / 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kForwardRows;  // later tiles see more keys: start them first
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int kv = h / (layout.heads / layout.kv_heads);
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;
    const bf16* k_rows = k + layout.kv_head(b, kv);
    const bf16* v_rows = v + layout.kv_head(b, kv);

    const int q_valid = min(kForwardRows, seq - q0);
    const int key_begin = segment_run_begin(segment_row, q0);
    const int first_key = key_begin - key_begin % kForwardKeys;
    const int key_end = q0 + q_valid;
    auto stage_keys = [&](int k0, int stage) {
        bf16* k_dst = streams + stage * 2 * kStreamElements;
        const int k_valid = min(kForwardKeys, seq - k0);
        copy_rows_async<kForwardKeys, D, kForwardThreads>(k_dst, k_rows, layout.kv_stride(), k0, k_valid);
        copy_rows_async<kForwardKeys, D, kForwardThreads>(k_dst + kStreamElements, v_rows, layout.kv_stride(), k0,
                                                          k_valid);
        if (threadIdx.x < kForwardKeys)
            key_segment[stage][threadIdx.x] = segment_row && static_cast<int>(threadIdx.x) < k_valid
                                                  ? segment_row[k0 + threadIdx.x] : 0;
        copy_async_commit();
    };
    copy_rows_async<kForwardRows, D, kForwardThreads>(q_tile, q + layout.q_head(b, h), layout.q_stride(), q0, q_valid);
    stage_keys(first_key, 0);  // one group with the Q tile
    for (int ahead = 1; ahead < kForwardStages - 1; ++ahead) {
        const int k0 = first_key + ahead * kForwardKeys;
        if (k0 < key_end) stage_keys(k0, ahead);
        else copy_async_commit();
    }

    const int warp_row0 = q0 + warp * kForwardWarpRows;
    // Accumulator row r of row tile m is query row_of(m, r).
    auto row_of = [&](int m, int r) { return warp_row0 + m * kMmaM + quad + 8 * r; };
    int row_segment[M][2];
    float row_max[M][2], row_sum[M][2];  // max of the unscaled scores
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            row_segment[m][r] = segment_row && row_of(m, r) < seq ? segment_row[row_of(m, r)] : 0;
            row_max[m][r] = -INFINITY;
            row_sum[m][r] = 0.0f;
        }
    float o[M][kDTiles][4];
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[m][dn][e] = 0.0f;
    const float scale_log2 = scale * kLog2e;

    int stage = 0;
    for (int k0 = first_key; k0 < key_end; k0 += kForwardKeys, stage = (stage + 1) % kForwardStages) {
        const int k_ahead = k0 + (kForwardStages - 1) * kForwardKeys;
        if (k_ahead < key_end) stage_keys(k_ahead, (stage + kForwardStages - 1) % kForwardStages);
        else copy_async_commit();
        copy_async_wait<kForwardStages - 1>();
        __syncthreads();
        const bf16* k_tile = streams + stage * 2 * kStreamElements;
        const bf16* v_tile = k_tile + kStreamElements;

        // A warp whose rows all precede the tile sees none of it (warp-uniform, no barrier inside).
        if (k0 < warp_row0 + kForwardWarpRows) {
            float s[M][kKeyTiles][4];
#pragma unroll
            for (int m = 0; m < M; ++m)
#pragma unroll
                for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) s[m][nt][e] = 0.0f;
#pragma unroll
            for (int kd = 0; kd < kDSteps; ++kd) {
                uint32_t a[M][4];
#pragma unroll
                for (int m = 0; m < M; ++m)
                    load_a_fragment(a[m], q_tile, kStride, warp * kForwardWarpRows + m * kMmaM, kd * kMmaK);
#pragma unroll
                for (int nt = 0; nt < kKeyTiles; nt += 2) {
                    uint32_t bk[4];
                    load_b_fragments_n_major(bk, k_tile, kStride, kd * kMmaK, nt * kMmaN);
#pragma unroll
                    for (int m = 0; m < M; ++m) {
                        mma_bf16_m16n8k16(s[m][nt], a[m], bk[0], bk[1]);
                        mma_bf16_m16n8k16(s[m][nt + 1], a[m], bk[2], bk[3]);
                    }
                }
            }
            // Keys past the warp's first row, or a packed row: mask per element.
            if (segment_row != nullptr || k0 + kForwardKeys - 1 > warp_row0) {
#pragma unroll
                for (int m = 0; m < M; ++m)
                    mask_scores(s[m], k0, row_of(m, 0), seq, key_segment[stage], row_segment[m]);
            }
#pragma unroll
            for (int m = 0; m < M; ++m) online_softmax_step(s[m], o[m], row_max[m], row_sum[m], scale_log2);
#pragma unroll
            for (int kk = 0; kk < kKeySteps; ++kk) {
                uint32_t a[M][4];
#pragma unroll
                for (int m = 0; m < M; ++m) accumulators_as_a(a[m], s[m][2 * kk], s[m][2 * kk + 1]);
#pragma unroll
                for (int dn = 0; dn < kDTiles; dn += 2) {
                    uint32_t bv[4];
                    load_b_fragments_k_major(bv, v_tile, kStride, kk * kMmaK, dn * kMmaN);
#pragma unroll
                    for (int m = 0; m < M; ++m) {
                        mma_bf16_m16n8k16(o[m][dn], a[m], bv[0], bv[1]);
                        mma_bf16_m16n8k16(o[m][dn + 1], a[m], bv[2], bv[3]);
                    }
                }
            }
        }
        __syncthreads();  // a later iteration refills this stage
    }

    const int in_quad = lane_id() % 4;
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int t = row_of(m, r);
            if (t >= seq) continue;
            const float inv_sum = 1.0f / row_sum[m][r];  // key t itself is visible: row_sum >= 1
            bf16* out_row = out + layout.q_head(b, h) + int64_t{t} * layout.q_stride();
#pragma unroll
            for (int dn = 0; dn < kDTiles; ++dn)
                *reinterpret_cast<uint32_t*>(out_row + dn * kMmaN + 2 * in_quad) =
                    pack_bf16_pair(o[m][dn][2 * r] * inv_sum, o[m][dn][2 * r + 1] * inv_sum);
            if (in_quad == 0) lse[layout.stat(b, h, t)] = row_max[m][r] * scale + logf(row_sum[m][r]);
        }
}

}  // namespace axl::cuda::attention_detail
