// The bf16 attention backward on Hopper's warpgroup products (wgmma.cuh): the one-pass scheme
// of attention_mma_backward.cuh (dK, dV in registers, dQ added into an f32 buffer with
// atomics; the same scratch and the same dq_to_bf16 pass after it) with warpgroups instead of
// warps. A block owns 64 keys per warpgroup of one kv head and streams 64-query tiles of every
// query head of its group through two cp.async buffers. Per query tile, each warpgroup,
// with its keys as the accumulator rows:
//   S^T = K Q^T, dP^T = V dO^T   Q, dO k-major from shared memory; K, V too, or at d64 from
//                                registers, loaded once
//   P^T = exp2(S^T scale log2e - lse log2e), dS^T = P^T (dP^T - delta)
//   dV += P^T dO, dK += dS^T Q   P^T, dS^T from registers (rounded to bf16); dO, Q mn-major
//   dQ  = dS K                   over the warpgroup's 64 keys: dS^T goes through shared
//                                memory (read mn-major as A), K mn-major; each warpgroup's
//                                64 x D f32 result is staged in shared memory, and the block
//                                sums them and adds the sum to the f32 dQ in global memory
//                                with 4-float atomics
// The adds into global dQ bound this kernel as much as its products: per-element atomics of
// each warpgroup's own sum, or bulk row adds by the copy engine (cp.reduce.async.bulk), ran
// 4-20% slower than the block's one sum (kernels/README.md).
// A warpgroup skips a query tile that ends before its first key. Private to
// kernels/attention.cu.
#pragma once

#include "attention_layout.cuh"
#include "attention_mma.cuh"
#include "wgmma.cuh"

namespace axl::cuda::attention_detail {

// Warpgroups: 64 keys each (the block's key tile). MinBlocks: blocks per SM, which caps a
// thread's registers (65536 / (MinBlocks * kThreads)).
template <int D, int Warpgroups, int MinBlocks>
struct WgmmaBackwardTiles {
    static constexpr int kMinBlocks = MinBlocks;
    static constexpr int kWarpgroups = Warpgroups;
    static constexpr int kThreads = Warpgroups * wgmma::kWarpgroupThreads;
    static constexpr int kKeys = Warpgroups * wgmma::kM;  // keys a block owns
    static constexpr int kQueryRows = 64;                 // queries per streamed tile
    static constexpr int kStages = 2;  // one tile computed while the next one loads
    // dQ rows staged in shared memory: D floats padded by 4 (16 bytes; spreads the banks).
    static constexpr int kDqStride = D + 4;
    // K, V; per stage Q and dO; dS^T of each warpgroup ([64 keys][64 queries]); dQ staging of
    // each warpgroup ([64 queries][kDqStride] f32); alignment slack.
    static constexpr size_t kSharedBytes =
        sizeof(bf16) * (2 * kKeys * D + kStages * 2 * kQueryRows * D + Warpgroups * wgmma::kM * kQueryRows) +
        sizeof(float) * Warpgroups * kQueryRows * kDqStride + wgmma::kAtomBytes;
};

template <int D, typename Tiles>
__global__ void __launch_bounds__(Tiles::kThreads, Tiles::kMinBlocks)
attention_backward_wgmma_kernel(float* dq_sum, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                                const bf16* v, const float* lse, const float* delta, const int32_t* segment,
                                HeadLayout layout, float scale) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kThreads = Tiles::kThreads;
    constexpr int kKeys = Tiles::kKeys;
    constexpr int kStages = Tiles::kStages;
    constexpr int QueryRows = Tiles::kQueryRows;
    constexpr int kDSteps = D / wgmma::kK;
    constexpr int kQueryTiles = QueryRows / kMmaN;
    constexpr int kQuerySteps = QueryRows / wgmma::kK;
    constexpr int kKeySteps = wgmma::kM / wgmma::kK;  // a warpgroup's keys, in k-steps of dQ
    constexpr int kDTiles = D / kMmaN;
    constexpr int kHalfTiles = wgmma::kPanelColumns / kMmaN;  // dQ in 64-column panels
    constexpr int kStreamElements = QueryRows * D;
    constexpr int kDsElements = wgmma::kM * QueryRows;

    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* k_tile = reinterpret_cast<bf16*>(wgmma::align_to_atom(shared_bytes));  // [kKeys][D]
    bf16* v_tile = k_tile + kKeys * D;                                           // [kKeys][D]
    bf16* streams = v_tile + kKeys * D;  // per stage: Q tile, dO tile, [QueryRows][D] each
    __shared__ int32_t query_segment[kStages][QueryRows];
    __shared__ float query_lse[kStages][QueryRows];  // log2 units
    __shared__ float query_delta[kStages][QueryRows];

    const int warpgroup = threadIdx.x / wgmma::kWarpgroupThreads;
    const int warp = (threadIdx.x / kWarpSize) % 4;  // in the warpgroup
    const int quad = lane_id() / 4;
    const int in_quad = lane_id() % 4;
    bf16* ds_tiles = streams + kStages * 2 * kStreamElements;  // per warpgroup: dS^T
    // The dQ staging of every warpgroup: [kWarpgroups][QueryRows][kDqStride] f32.
    float* dq_stages = reinterpret_cast<float*>(ds_tiles + Tiles::kWarpgroups * kDsElements);
    // This warpgroup's dS^T ([64 keys][QueryRows queries], swizzled) and dQ staging.
    bf16* ds_tile = ds_tiles + warpgroup * kDsElements;
    float* dq_stage = dq_stages + warpgroup * QueryRows * Tiles::kDqStride;
    const int s0 = blockIdx.x * kKeys;  // early key tiles see the most queries: they start first
    const int kv = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int group = layout.heads / layout.kv_heads;
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;

    const int k_valid = min(kKeys, seq - s0);
    wgmma::copy_rows_async<kKeys, D, kThreads>(k_tile, k + layout.kv_head(b, kv), layout.kv_stride(), s0, k_valid);
    wgmma::copy_rows_async<kKeys, D, kThreads>(v_tile, v + layout.kv_head(b, kv), layout.kv_stride(), s0, k_valid);
    const int query_end = segment_run_end(segment_row, s0 + k_valid - 1, seq);
    const int query_tiles = ceil_div_device(query_end - s0, QueryRows);
    const int steps = group * query_tiles;  // (query head, query tile) pairs, head-major
    // A query tile's per-query statistics, loaded into one thread each (the first QueryRows)
    // when its Q and dO tiles are requested, stored to shared memory at the end of the step: a
    // thread that stored them at once would wait out the loads, and its warpgroup with it.
    struct QueryStats {
        int32_t segment = 0;
        float lse = 0.0f, delta = 0.0f;
    };
    auto stage_queries = [&](int step, int stage) {
        const int h = kv * group + step / query_tiles;
        const int t0 = s0 + (step % query_tiles) * QueryRows;
        bf16* q_dst = streams + stage * 2 * kStreamElements;
        const int q_valid = min(QueryRows, seq - t0);
        wgmma::copy_rows_async<QueryRows, D, kThreads>(q_dst, q + layout.q_head(b, h), layout.q_stride(), t0, q_valid);
        wgmma::copy_rows_async<QueryRows, D, kThreads>(q_dst + kStreamElements, dout + layout.q_head(b, h),
                                                       layout.q_stride(), t0, q_valid);
        copy_async_commit();
        QueryStats stats;
        if (threadIdx.x < QueryRows && static_cast<int>(threadIdx.x) < q_valid) {
            const int t = t0 + threadIdx.x;
            stats.segment = segment_row ? segment_row[t] : 0;
            stats.lse = lse[layout.stat(b, h, t)];
            stats.delta = delta[layout.stat(b, h, t)];
        }
        return stats;
    };
    auto store_query_stats = [&](const QueryStats& stats, int stage) {
        if (threadIdx.x < QueryRows) {
            query_segment[stage][threadIdx.x] = stats.segment;
            query_lse[stage][threadIdx.x] = stats.lse * kLog2e;
            query_delta[stage][threadIdx.x] = stats.delta;
        }
    };
    store_query_stats(stage_queries(0, 0), 0);  // one group with the K and V tiles

    const int group_key0 = s0 + warpgroup * wgmma::kM;  // this warpgroup's first key
    const int warp_key0 = group_key0 + warp * kMmaM;
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

    // At d64 the warp's K and V rows stay in registers as A fragments (16 registers each): the
    // score products then read only Q and dO from shared memory, which an all-shared product of
    // this size is bound by. At d128 they would not fit beside dK and dV.
    constexpr bool kKeyFragments = D == 64;
    uint32_t k_fragment[kKeyFragments ? kDSteps : 1][4], v_fragment[kKeyFragments ? kDSteps : 1][4];
    if constexpr (kKeyFragments) {
        copy_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int kd = 0; kd < kDSteps; ++kd) {
            wgmma::load_a_fragment(k_fragment[kd], k_tile, kKeys, warpgroup * wgmma::kM + warp * kMmaM, kd);
            wgmma::load_a_fragment(v_fragment[kd], v_tile, kKeys, warpgroup * wgmma::kM + warp * kMmaM, kd);
        }
    }

    for (int step = 0; step < steps; ++step) {
        const int stage = step % kStages;
        copy_async_wait<0>();
        wgmma::fence_shared_writes();
        // This tile is in, and every warpgroup is done with the other stage: refill it.
        __syncthreads();
        QueryStats next_stats;
        if (step + 1 < steps) next_stats = stage_queries(step + 1, (step + 1) % kStages);
        const int h = kv * group + step / query_tiles;
        const int t0 = s0 + (step % query_tiles) * QueryRows;
        // Queries that all precede this warpgroup's keys see none of them (uniform in the
        // warpgroup, as its products require).
        if (t0 + QueryRows > group_key0) {
            const bf16* q_tile = streams + stage * 2 * kStreamElements;
            const bf16* dout_tile = q_tile + kStreamElements;

            float s[kQueryTiles][4], dp[kQueryTiles][4];
            wgmma::fence_operands();
#pragma unroll
            for (int kd = 0; kd < kDSteps; ++kd) {
                const uint64_t q_operand = wgmma::k_major(q_tile, QueryRows, 0, kd);
                if constexpr (kKeyFragments) wgmma::mma_rs_k_major(s, k_fragment[kd], q_operand, kd > 0);
                else wgmma::mma_ss_k_major(s, wgmma::k_major(k_tile, kKeys, warpgroup * wgmma::kM, kd), q_operand,
                                           kd > 0);
            }
#pragma unroll
            for (int kd = 0; kd < kDSteps; ++kd) {
                const uint64_t dout_operand = wgmma::k_major(dout_tile, QueryRows, 0, kd);
                if constexpr (kKeyFragments) wgmma::mma_rs_k_major(dp, v_fragment[kd], dout_operand, kd > 0);
                else wgmma::mma_ss_k_major(dp, wgmma::k_major(v_tile, kKeys, warpgroup * wgmma::kM, kd),
                                           dout_operand, kd > 0);
            }
            wgmma::commit();
            wgmma::wait<0>();
            wgmma::fence_accumulators(s);
            wgmma::fence_accumulators(dp);

            // Rows are keys, columns queries: P^T into s, dS^T into dp.
            probabilities_and_score_gradients(s, dp, warp_key0, t0, seq, segment_row != nullptr, key_s, key_segment,
                                              query_segment[stage], query_lse[stage], query_delta[stage], scale_log2);
            uint32_t a_p[kQuerySteps][4], a_ds[kQuerySteps][4];
#pragma unroll
            for (int kk = 0; kk < kQuerySteps; ++kk) {
                accumulators_as_a(a_p[kk], s[2 * kk], s[2 * kk + 1]);
                accumulators_as_a(a_ds[kk], dp[2 * kk], dp[2 * kk + 1]);
                // dS^T rounded as the products see it, for dQ = dS K below.
                const int row = warp * kMmaM + quad;
                const int column = kk * wgmma::kK + 2 * in_quad;
                *reinterpret_cast<uint32_t*>(ds_tile + wgmma::tile_offset(wgmma::kM, row, column)) = a_ds[kk][0];
                *reinterpret_cast<uint32_t*>(ds_tile + wgmma::tile_offset(wgmma::kM, row + 8, column)) = a_ds[kk][1];
                *reinterpret_cast<uint32_t*>(ds_tile + wgmma::tile_offset(wgmma::kM, row, column + 8)) = a_ds[kk][2];
                *reinterpret_cast<uint32_t*>(ds_tile + wgmma::tile_offset(wgmma::kM, row + 8, column + 8)) = a_ds[kk][3];
            }
            wgmma::fence_shared_writes();
            wgmma::fence_accumulators(dv_acc);
            wgmma::fence_accumulators(dk_acc);
            wgmma::fence_operands();
#pragma unroll
            for (int kk = 0; kk < kQuerySteps; ++kk)
                wgmma::mma_rs_mn_major(dv_acc, a_p[kk], wgmma::mn_major(dout_tile, QueryRows, kk * wgmma::kK, 0), 1);
#pragma unroll
            for (int kk = 0; kk < kQuerySteps; ++kk)
                wgmma::mma_rs_mn_major(dk_acc, a_ds[kk], wgmma::mn_major(q_tile, QueryRows, kk * wgmma::kK, 0), 1);
            wgmma::commit();
            wgmma::warpgroup_barrier(warpgroup);  // the warpgroup's dS^T is in shared memory

            // dQ rows t0.. (this warp's 16), 64 columns at a time: the sum over this warpgroup's
            // keys, staged in shared memory.
#pragma unroll
            for (int half = 0; half < D / wgmma::kPanelColumns; ++half) {
                float dq_acc[kHalfTiles][4];
                wgmma::fence_operands();
#pragma unroll
                for (int kk = 0; kk < kKeySteps; ++kk)
                    wgmma::mma_ss_mn_major(dq_acc, wgmma::mn_major(ds_tile, wgmma::kM, kk * wgmma::kK, 0),
                                           wgmma::mn_major(k_tile, kKeys, warpgroup * wgmma::kM + kk * wgmma::kK,
                                                           half * wgmma::kPanelColumns),
                                           kk > 0);
                wgmma::commit();
                wgmma::wait<0>();
                wgmma::fence_accumulators(dq_acc);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    float* stage_row = dq_stage + (warp * kMmaM + quad + 8 * r) * Tiles::kDqStride +
                                       half * wgmma::kPanelColumns + 2 * in_quad;
#pragma unroll
                    for (int dn = 0; dn < kHalfTiles; ++dn)
                        *reinterpret_cast<float2*>(stage_row + dn * kMmaN) =
                            make_float2(dq_acc[dn][2 * r], dq_acc[dn][2 * r + 1]);
                }
            }
        }
        if (step + 1 < steps) store_query_stats(next_stats, (step + 1) % kStages);
        // Every warpgroup's dQ is staged (a warpgroup that skipped the tile staged none):
        // sum them a 4-float column chunk at a time and add each sum once.
        __syncthreads();
        constexpr int kChunksPerRow = D / 4;
        for (int j = threadIdx.x; j < QueryRows * kChunksPerRow; j += kThreads) {
            const int row = j / kChunksPerRow;
            const int column = (j % kChunksPerRow) * 4;
            if (t0 + row >= seq) continue;
            float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int w = 0; w < Tiles::kWarpgroups; ++w) {
                if (t0 + QueryRows <= s0 + w * wgmma::kM) continue;
                const float4 part =
                    *reinterpret_cast<const float4*>(dq_stages + (w * QueryRows + row) * Tiles::kDqStride + column);
                sum.x += part.x;
                sum.y += part.y;
                sum.z += part.z;
                sum.w += part.w;
            }
            atomicAdd(reinterpret_cast<float4*>(dq_sum + layout.q_head(b, h) + int64_t{t0 + row} * layout.q_stride() +
                                                column),
                      sum);
        }
    }
    wgmma::wait<0>();
    wgmma::fence_accumulators(dv_acc);
    wgmma::fence_accumulators(dk_acc);

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
#else
    __trap();  // launched only on sm_90a builds (kernels/attention.cu checks)
#endif
}

}  // namespace axl::cuda::attention_detail
