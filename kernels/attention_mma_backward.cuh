// The bf16 attention backward on the tensor cores: one pass over (key tile, query tile) pairs
// that produces dK and dV in registers and adds dQ into an f32 buffer with atomics, then a
// small kernel that scales dQ and rounds it to bf16. The delta pass (delta_t = dout_t . out_t)
// runs before, in kernels/attention.cu.
//
// A block owns Tiles::kKeys keys of one kv head (an m16 tile per warp) and streams query tiles
// of every query head of its group through Tiles::kStages cp.async buffers. Per query tile,
// with keys as the accumulator rows:
//   S^T = K Q^T, dP^T = V dO^T          (P^T = exp2(S^T scale log2e - lse log2e), from the saved lse)
//   dS^T = P^T (dP^T - delta)
//   dV += P^T dO, dK += dS^T Q           (P^T, dS^T reused from the accumulators, rounded to bf16)
//   dQ += dS K                           (dS^T staged in shared memory, read transposed)
// Five products per tile instead of the seven of a two-pass (dq, then dk/dv) backward, which
// must recompute S and dP. The price: several blocks add into one dQ row, so the order of the
// f32 additions (and dQ's last bits) varies from run to run. dK and dV have one writer each.
// Private to kernels/attention.cu.
#pragma once

#include "attention_layout.cuh"
#include "attention_mma.cuh"

namespace axl::cuda::attention_detail {

constexpr int kDqConvertThreads = 256;

// The tile shapes: kWarps warps own kMmaM keys each; QueryRows queries per streamed tile;
// kStages tiles of Q and dO in flight (one cp.async group committed per step, empty past the
// last, so that waiting for all but kStages - 1 groups always means "this step's tile is in").
// MinBlocks: blocks per SM, which caps the registers of a thread (255 at 2, 168 at 3).
// Measured on H100 at B4 T2048 H32 KV8: 4 warps beat 8 (one block of 8 warps per SM, 8%
// slower), 32-query tiles beat 64 (the accumulators of 64 spill at d128), a third stage gains
// nothing, and keeping K/V fragments in registers instead of reloading them costs more
// (spills) than it saves. Three blocks per SM beat two at d64 (1.72 ms against 2.01); four,
// and three at d128, spill.
template <int D, int QueryRows, int MinBlocks>
struct BackwardTiles {
    static constexpr int kMinBlocks = MinBlocks;
    static constexpr int kWarps = 4;
    static constexpr int kThreads = kWarps * kWarpSize;
    static constexpr int kKeys = kWarps * kMmaM;  // keys a block owns: 64
    static constexpr int kQueryRows = QueryRows;
    static constexpr int kStages = 2;
    static constexpr int kStride = D + kMmaPad;
    static constexpr int kDsStride = QueryRows + kMmaPad;
    static constexpr size_t kSharedBytes =
        sizeof(bf16) * (kStride * (2 * kKeys + kStages * 2 * QueryRows) + kKeys * kDsStride);
};

__device__ __forceinline__ void add_pair_f32(float* dst, float first, float second) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2*>(dst), make_float2(first, second));  // one vector reduction
#else
    atomicAdd(dst, first);
    atomicAdd(dst + 1, second);
#endif
}

template <int D, typename Tiles>
__global__ void __launch_bounds__(Tiles::kThreads, Tiles::kMinBlocks)
attention_backward_mma_kernel(float* dq_sum, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                              const bf16* v, const float* lse, const float* delta, const int32_t* segment,
                              HeadLayout layout, float scale) {
    constexpr int kBackwardWarps = Tiles::kWarps;
    constexpr int kBackwardThreads = Tiles::kThreads;
    constexpr int kBackwardKeys = Tiles::kKeys;
    constexpr int kBackwardStages = Tiles::kStages;
    constexpr int QueryRows = Tiles::kQueryRows;
    constexpr int kStride = Tiles::kStride;
    constexpr int kDsStride = Tiles::kDsStride;
    constexpr int kDSteps = D / kMmaK;
    constexpr int kQueryTiles = QueryRows / kMmaN;
    constexpr int kQuerySteps = QueryRows / kMmaK;
    constexpr int kKeySteps = kBackwardKeys / kMmaK;
    constexpr int kDTiles = D / kMmaN;
    constexpr int kStreamElements = QueryRows * kStride;
    // dQ of a query tile (QueryRows x D) split over the warps: m16 row tiles x column slices.
    constexpr int kDqRowTiles = QueryRows / kMmaM;
    static_assert(kBackwardWarps % kDqRowTiles == 0, "the warps cover dQ's row tiles evenly");
    constexpr int kDqColumns = D / (kBackwardWarps / kDqRowTiles);
    constexpr int kDqTiles = kDqColumns / kMmaN;
    static_assert(kDqTiles % 2 == 0 && QueryRows <= kBackwardThreads, "tile shapes");

    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* k_tile = reinterpret_cast<bf16*>(shared_bytes);  // [kBackwardKeys][kStride]
    bf16* v_tile = k_tile + kBackwardKeys * kStride;        // [kBackwardKeys][kStride]
    bf16* streams = v_tile + kBackwardKeys * kStride;       // per stage: Q tile, dO tile
    bf16* ds_tile = streams + kBackwardStages * 2 * kStreamElements;  // dS^T: [kBackwardKeys][kDsStride]
    __shared__ int32_t query_segment[kBackwardStages][QueryRows];
    __shared__ float query_lse[kBackwardStages][QueryRows];  // log2 units
    __shared__ float query_delta[kBackwardStages][QueryRows];

    const int warp = threadIdx.x / kWarpSize;
    const int quad = lane_id() / 4;
    const int in_quad = lane_id() % 4;
    const int s0 = blockIdx.x * kBackwardKeys;  // early key tiles see the most queries: they start first
    const int kv = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int group = layout.heads / layout.kv_heads;
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;

    const int k_valid = min(kBackwardKeys, seq - s0);
    copy_rows_async<kBackwardKeys, D, kBackwardThreads>(k_tile, k + layout.kv_head(b, kv), layout.kv_stride(), s0,
                                                        k_valid);
    copy_rows_async<kBackwardKeys, D, kBackwardThreads>(v_tile, v + layout.kv_head(b, kv), layout.kv_stride(), s0,
                                                        k_valid);
    const int query_end = segment_run_end(segment_row, s0 + k_valid - 1, seq);
    const int query_tiles = ceil_div_device(query_end - s0, QueryRows);
    const int steps = group * query_tiles;  // (query head, query tile) pairs, head-major
    auto stage_queries = [&](int step, int stage) {
        const int h = kv * group + step / query_tiles;
        const int t0 = s0 + (step % query_tiles) * QueryRows;
        bf16* q_dst = streams + stage * 2 * kStreamElements;
        const int q_valid = min(QueryRows, seq - t0);
        copy_rows_async<QueryRows, D, kBackwardThreads>(q_dst, q + layout.q_head(b, h), layout.q_stride(), t0,
                                                        q_valid);
        copy_rows_async<QueryRows, D, kBackwardThreads>(q_dst + kStreamElements, dout + layout.q_head(b, h),
                                                        layout.q_stride(), t0, q_valid);
        if (threadIdx.x < QueryRows) {
            const int t = t0 + threadIdx.x;
            const bool valid = static_cast<int>(threadIdx.x) < q_valid;
            query_segment[stage][threadIdx.x] = segment_row && valid ? segment_row[t] : 0;
            query_lse[stage][threadIdx.x] = valid ? lse[layout.stat(b, h, t)] * kLog2e : 0.0f;
            query_delta[stage][threadIdx.x] = valid ? delta[layout.stat(b, h, t)] : 0.0f;
        }
        copy_async_commit();
    };
    stage_queries(0, 0);  // one group with the K and V tiles
    for (int ahead = 1; ahead < kBackwardStages - 1; ++ahead) {
        if (ahead < steps) stage_queries(ahead, ahead);
        else copy_async_commit();
    }

    const int warp_key0 = s0 + warp * kMmaM;
    int key_s[2], key_segment[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        key_s[r] = warp_key0 + quad + 8 * r;
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
    const int dq_row0 = (warp % kDqRowTiles) * kMmaM;     // this warp's slice of dQ
    const int dq_column0 = (warp / kDqRowTiles) * kDqColumns;

    for (int step = 0; step < steps; ++step) {
        const int stage = step % kBackwardStages;
        const int step_ahead = step + kBackwardStages - 1;
        if (step_ahead < steps) stage_queries(step_ahead, step_ahead % kBackwardStages);
        else copy_async_commit();
        copy_async_wait<kBackwardStages - 1>();
        // Also: every warp is done with the previous tile's dS (ds_tile) and stage.
        __syncthreads();
        const int h = kv * group + step / query_tiles;
        const int t0 = s0 + (step % query_tiles) * QueryRows;
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
#pragma unroll
        for (int kd = 0; kd < kDSteps; ++kd) {
            uint32_t a_k[4], a_v[4];
            load_a_fragment(a_k, k_tile, kStride, warp * kMmaM, kd * kMmaK);
            load_a_fragment(a_v, v_tile, kStride, warp * kMmaM, kd * kMmaK);
#pragma unroll
            for (int nt = 0; nt < kQueryTiles; nt += 2) {
                uint32_t b_q[4], b_dout[4];
                load_b_fragments_n_major(b_q, q_tile, kStride, kd * kMmaK, nt * kMmaN);
                load_b_fragments_n_major(b_dout, dout_tile, kStride, kd * kMmaK, nt * kMmaN);
                mma_bf16_m16n8k16(s[nt], a_k, b_q[0], b_q[1]);
                mma_bf16_m16n8k16(s[nt + 1], a_k, b_q[2], b_q[3]);
                mma_bf16_m16n8k16(dp[nt], a_v, b_dout[0], b_dout[1]);
                mma_bf16_m16n8k16(dp[nt + 1], a_v, b_dout[2], b_dout[3]);
            }
        }
        // Rows are keys, columns queries: P^T into s, dS^T into dp.
        probabilities_and_score_gradients(s, dp, warp_key0, t0, seq, segment_row != nullptr, key_s, key_segment,
                                          query_segment[stage], query_lse[stage], query_delta[stage], scale_log2);
#pragma unroll
        for (int kk = 0; kk < kQuerySteps; ++kk) {
            uint32_t a_p[4], a_ds[4];
            accumulators_as_a(a_p, s[2 * kk], s[2 * kk + 1]);
            accumulators_as_a(a_ds, dp[2 * kk], dp[2 * kk + 1]);
            // dS^T rounded as the products see it, for dQ += dS K below.
            bf16* ds_rows = ds_tile + (warp * kMmaM + quad) * kDsStride + kk * kMmaK + 2 * in_quad;
            *reinterpret_cast<uint32_t*>(ds_rows) = a_ds[0];
            *reinterpret_cast<uint32_t*>(ds_rows + 8 * kDsStride) = a_ds[1];
            *reinterpret_cast<uint32_t*>(ds_rows + kMmaN) = a_ds[2];
            *reinterpret_cast<uint32_t*>(ds_rows + 8 * kDsStride + kMmaN) = a_ds[3];
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
        __syncthreads();  // dS^T of every warp is in shared memory

        // dQ rows dq_row0.. of this query tile, columns dq_column0..: sum over the block's keys.
        float dq_acc[kDqTiles][4];
#pragma unroll
        for (int dn = 0; dn < kDqTiles; ++dn)
#pragma unroll
            for (int e = 0; e < 4; ++e) dq_acc[dn][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < kKeySteps; ++kk) {
            uint32_t a_ds[4];
            load_a_fragment_k_major(a_ds, ds_tile, kDsStride, dq_row0, kk * kMmaK);
#pragma unroll
            for (int dn = 0; dn < kDqTiles; dn += 2) {
                uint32_t b_k[4];
                load_b_fragments_k_major(b_k, k_tile, kStride, kk * kMmaK, dq_column0 + dn * kMmaN);
                mma_bf16_m16n8k16(dq_acc[dn], a_ds, b_k[0], b_k[1]);
                mma_bf16_m16n8k16(dq_acc[dn + 1], a_ds, b_k[2], b_k[3]);
            }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int t = t0 + dq_row0 + quad + 8 * r;
            if (t >= seq) continue;
            float* dq_row = dq_sum + layout.q_head(b, h) + int64_t{t} * layout.q_stride() + dq_column0 + 2 * in_quad;
#pragma unroll
            for (int dn = 0; dn < kDqTiles; ++dn) add_pair_f32(dq_row + dn * kMmaN, dq_acc[dn][2 * r], dq_acc[dn][2 * r + 1]);
        }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (key_s[r] >= seq) continue;
        const int64_t row = layout.kv_head(b, kv) + int64_t{key_s[r]} * layout.kv_stride();
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn) {
            const int d = dn * kMmaN + 2 * in_quad;
            *reinterpret_cast<uint32_t*>(dk + row + d) =
                pack_bf16_pair(dk_acc[dn][2 * r] * scale, dk_acc[dn][2 * r + 1] * scale);
            *reinterpret_cast<uint32_t*>(dv + row + d) = pack_bf16_pair(dv_acc[dn][2 * r], dv_acc[dn][2 * r + 1]);
        }
    }
}

// dq = scale * dq_sum, rounded to bf16; n a multiple of 4, both 16-byte aligned.
__global__ void __launch_bounds__(kDqConvertThreads)
attention_dq_to_bf16_kernel(bf16* dq, const float* dq_sum, int64_t n, float scale) {
    for (int64_t i = (blockIdx.x * int64_t{kDqConvertThreads} + threadIdx.x) * 4; i < n;
         i += int64_t{gridDim.x} * kDqConvertThreads * 4) {
        const float4 sum = *reinterpret_cast<const float4*>(dq_sum + i);
        const uint2 packed = {pack_bf16_pair(sum.x * scale, sum.y * scale), pack_bf16_pair(sum.z * scale, sum.w * scale)};
        *reinterpret_cast<uint2*>(dq + i) = packed;
    }
}

}  // namespace axl::cuda::attention_detail
