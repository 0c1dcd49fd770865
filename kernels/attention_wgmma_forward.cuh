// The bf16 attention forward on Hopper's warpgroup products (wgmma.h): a block of Warpgroups
// warpgroups owns 64 query rows per warpgroup of one head, and streams K/V tiles of Keys keys
// through two cp.async buffers (swizzled for wgmma). Per key tile, each warpgroup
//   S = Q K^T           one product from shared memory (Q and K k-major)
//   online softmax      running max and sum per row, in log2 units (exp2), as the mma.sync
//                       forward (attention_mma_forward.cuh) does
//   O += P V            P from registers (the accumulators rounded to bf16, as flash-attention
//                       does), V mn-major from shared memory
// The products read their operands straight from shared memory, so no warp reloads fragments
// (what bounds the mma.sync kernel), and the warpgroups of a block (and their softmax) overlap
// on the SM. Private to kernels/attention.cu.
#pragma once

#include "attention_layout.cuh"
#include "attention_mma.cuh"
#include "wgmma.cuh"

namespace axl::cuda::attention_detail {

// MinBlocks: blocks per SM, which caps a thread's registers (65536 / (MinBlocks * kThreads)).
template <int D, int Keys, int Warpgroups, int MinBlocks>
struct WgmmaForwardTiles {
    static constexpr int kMinBlocks = MinBlocks;
    static constexpr int kKeys = Keys;
    static constexpr int kWarpgroups = Warpgroups;
    static constexpr int kThreads = Warpgroups * wgmma::kWarpgroupThreads;
    static constexpr int kRows = Warpgroups * wgmma::kM;  // query rows a block owns
    static constexpr int kStages = 2;  // one tile computed while the next one loads
    // Q, then per stage K and V; plus the slack to align the first tile to 1024 bytes.
    static constexpr size_t kSharedBytes = sizeof(bf16) * D * (kRows + kStages * 2 * Keys) + wgmma::kAtomBytes;
};

template <int D, typename Tiles>
__global__ void __launch_bounds__(Tiles::kThreads, Tiles::kMinBlocks)
attention_forward_wgmma_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                               const int32_t* segment, HeadLayout layout, float scale) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kKeys = Tiles::kKeys;
    constexpr int kRows = Tiles::kRows;
    constexpr int kStages = Tiles::kStages;
    constexpr int kThreads = Tiles::kThreads;
    constexpr int kDSteps = D / wgmma::kK;
    constexpr int kKeyTiles = kKeys / kMmaN;
    constexpr int kKeySteps = kKeys / wgmma::kK;
    constexpr int kDTiles = D / kMmaN;
    constexpr int kStreamElements = kKeys * D;
    static_assert(kKeys <= kThreads && (kKeys == 64 || kKeys == 128) && (D == 64 || D == 128), "tile shapes");
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    bf16* q_tile = reinterpret_cast<bf16*>(wgmma::align_to_atom(shared_bytes));  // [kRows][D]
    bf16* streams = q_tile + kRows * D;  // per stage: K tile, V tile, [kKeys][D] each
    __shared__ int32_t key_segment[kStages][kKeys];

    const int warpgroup = threadIdx.x / wgmma::kWarpgroupThreads;
    const int warp = (threadIdx.x / kWarpSize) % 4;  // in the warpgroup
    const int quad = lane_id() / 4;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;  // later tiles see more keys: start them first
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int seq = layout.seq;
    const int kv = h / (layout.heads / layout.kv_heads);
    const int32_t* segment_row = segment ? segment + int64_t{b} * seq : nullptr;
    const bf16* k_rows = k + layout.kv_head(b, kv);
    const bf16* v_rows = v + layout.kv_head(b, kv);

    const int q_valid = min(kRows, seq - q0);
    const int key_begin = segment_run_begin(segment_row, q0);
    const int first_key = key_begin - key_begin % kKeys;
    const int key_end = q0 + q_valid;
    auto stage_keys = [&](int k0, int stage) {
        bf16* k_dst = streams + stage * 2 * kStreamElements;
        const int k_valid = min(kKeys, seq - k0);
        wgmma::copy_rows_async<kKeys, D, kThreads>(k_dst, k_rows, layout.kv_stride(), k0, k_valid);
        wgmma::copy_rows_async<kKeys, D, kThreads>(k_dst + kStreamElements, v_rows, layout.kv_stride(), k0, k_valid);
        if (threadIdx.x < kKeys)
            key_segment[stage][threadIdx.x] =
                segment_row && static_cast<int>(threadIdx.x) < k_valid ? segment_row[k0 + threadIdx.x] : 0;
        copy_async_commit();
    };
    wgmma::copy_rows_async<kRows, D, kThreads>(q_tile, q + layout.q_head(b, h), layout.q_stride(), q0, q_valid);
    stage_keys(first_key, 0);  // one group with the Q tile

    const int group_row0 = q0 + warpgroup * wgmma::kM;  // this warpgroup's first query row
    const int warp_row0 = group_row0 + warp * kMmaM;
    auto row_of = [&](int r) { return warp_row0 + quad + 8 * r; };  // accumulator row r's query
    int row_segment[2];
    float row_max[2], row_sum[2];  // max of the unscaled scores
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_segment[r] = segment_row && row_of(r) < seq ? segment_row[row_of(r)] : 0;
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
    for (int k0 = first_key; k0 < key_end; k0 += kKeys, stage ^= 1) {
        copy_async_wait<0>();
        wgmma::fence_shared_writes();
        // This tile is in, and every warpgroup is done with the other stage: refill it.
        __syncthreads();
        if (k0 + kKeys < key_end) stage_keys(k0 + kKeys, stage ^ 1);
        const bf16* k_tile = streams + stage * 2 * kStreamElements;
        const bf16* v_tile = k_tile + kStreamElements;

        // A warpgroup whose rows all precede the tile sees none of it (uniform in the warpgroup,
        // as its products require).
        if (k0 < group_row0 + wgmma::kM) {
            float s[kKeyTiles][4];
            wgmma::fence_operands();
#pragma unroll
            for (int kd = 0; kd < kDSteps; ++kd)
                wgmma::mma_ss_k_major(s, wgmma::k_major(q_tile, kRows, warpgroup * wgmma::kM, kd),
                                      wgmma::k_major(k_tile, kKeys, 0, kd), kd > 0);
            wgmma::commit();
            wgmma::wait<0>();
            wgmma::fence_accumulators(s);
            // Keys past the warp's first row, or a packed row: mask per element.
            if (segment_row != nullptr || k0 + kKeys - 1 > warp_row0)
                mask_scores(s, k0, row_of(0), seq, key_segment[stage], row_segment);
            online_softmax_step(s, o, row_max, row_sum, scale_log2);
            uint32_t p[kKeySteps][4];
#pragma unroll
            for (int kk = 0; kk < kKeySteps; ++kk) accumulators_as_a(p[kk], s[2 * kk], s[2 * kk + 1]);
            wgmma::fence_accumulators(o);
            wgmma::fence_operands();
#pragma unroll
            for (int kk = 0; kk < kKeySteps; ++kk)
                wgmma::mma_rs_mn_major(o, p[kk], wgmma::mn_major(v_tile, kKeys, kk * wgmma::kK, 0), 1);
            wgmma::commit();
            wgmma::wait<0>();
            wgmma::fence_accumulators(o);
        }
    }

    const int in_quad = lane_id() % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = row_of(r);
        if (t >= seq) continue;
        const float inv_sum = 1.0f / row_sum[r];  // key t itself is visible: row_sum >= 1
        bf16* out_row = out + layout.q_head(b, h) + int64_t{t} * layout.q_stride();
#pragma unroll
        for (int dn = 0; dn < kDTiles; ++dn)
            *reinterpret_cast<uint32_t*>(out_row + dn * kMmaN + 2 * in_quad) =
                pack_bf16_pair(o[dn][2 * r] * inv_sum, o[dn][2 * r + 1] * inv_sum);
        if (in_quad == 0) lse[layout.stat(b, h, t)] = row_max[r] * scale + logf(row_sum[r]);
    }
#else
    __trap();  // launched only on sm_90a builds (kernels/attention.cu checks)
#endif
}

}  // namespace axl::cuda::attention_detail
