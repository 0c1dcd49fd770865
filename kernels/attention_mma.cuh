// The tensor-core building blocks of the bf16 attention kernels (attention_mma_forward.cuh,
// attention_mma_backward.cuh): mma.sync.m16n8k16 (bf16 in, f32 accumulate), its operand
// fragments loaded from shared memory with ldmatrix, and cp.async copies of row tiles; and
// the elementwise steps between products (masking, online softmax, P and dS), which the
// wgmma kernels (attention_wgmma_*.cuh) share because their accumulators have the same layout.
//
// Fragments (PTX ISA, "mma.m16n8k16"): in an accumulator, lane l holds row l/4 (and + 8),
// columns 2 (l % 4) and + 1; so a row's values sit in the 4 lanes of a quad. Tiles sit in
// shared memory row-major, rows padded by kMmaPad elements, so that the 8 rows that one
// ldmatrix reads fall 4 banks apart (conflict-free). Which loader a product needs depends on
// whether the tile's rows run along the operand's m/n dimension or along its k dimension.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "mma_sync.cuh"

namespace axl::cuda::attention_detail {

using bf16 = __nv_bfloat16;

constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;  // the mma.sync shape
constexpr int kMmaPad = 8;                        // bf16 of padding per shared row
constexpr int kVectorElements = 8;                // bf16 per 16-byte copy

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(p)));
}

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x) % kWarpSize; }

// The A fragment of rows m0..m0+15, k-step k0..k0+15, from a tile whose rows are m.
__device__ __forceinline__ void load_a_fragment(uint32_t (&a)[4], const bf16* tile, int stride, int m0, int k0) {
    const int lane = lane_id();
    ldmatrix_x4(a, tile + (m0 + lane % 8 + 8 * ((lane / 8) % 2)) * stride + k0 + 8 * (lane / 16));
}

// The same A fragment from a tile whose rows are k (the tile holds the operand transposed).
__device__ __forceinline__ void load_a_fragment_k_major(uint32_t (&a)[4], const bf16* tile, int stride, int m0,
                                                        int k0) {
    const int lane = lane_id();
    ldmatrix_x4_trans(a, tile + (k0 + lane % 8 + 8 * (lane / 16)) * stride + m0 + 8 * ((lane / 8) % 2));
}

// B fragments of two n-tiles (n0..n0+7 in b[0], b[1]; n0+8..n0+15 in b[2], b[3]) for the
// k-step k0..k0+15, from a tile whose rows are n (K in Q K^T).
__device__ __forceinline__ void load_b_fragments_n_major(uint32_t (&b)[4], const bf16* tile, int stride, int k0,
                                                         int n0) {
    const int lane = lane_id();
    ldmatrix_x4(b, tile + (n0 + lane % 8 + 8 * (lane / 16)) * stride + k0 + 8 * ((lane / 8) % 2));
}

// The same B fragments from a tile whose rows are k (V in P V).
__device__ __forceinline__ void load_b_fragments_k_major(uint32_t (&b)[4], const bf16* tile, int stride, int k0,
                                                         int n0) {
    const int lane = lane_id();
    ldmatrix_x4_trans(b, tile + (k0 + lane % 8 + 8 * ((lane / 8) % 2)) * stride + n0 + 8 * (lane / 16));
}

__device__ __forceinline__ uint32_t pack_bf16_pair(float first, float second) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(first, second);  // .x (first) at the lower address
    return *reinterpret_cast<const uint32_t*>(&pair);
}

// Accumulators of n-tiles 2 kk and 2 kk + 1 (rows x 16 columns), rounded to bf16, are the A
// fragment of k-step kk of the next product: how P and dS feed P V, P^T dO, dS^T Q.
__device__ __forceinline__ void accumulators_as_a(uint32_t (&a)[4], const float (&left)[4], const float (&right)[4]) {
    a[0] = pack_bf16_pair(left[0], left[1]);
    a[1] = pack_bf16_pair(left[2], left[3]);
    a[2] = pack_bf16_pair(right[0], right[1]);
    a[3] = pack_bf16_pair(right[2], right[3]);
}

// Accumulator element e of an n-tile sits in row quad + 8 * (e / 2) and this column.
__device__ __forceinline__ int fragment_column(int e) { return 2 * (lane_id() % 4) + (e & 1); }

// ---- the elementwise steps between products (mma.sync and wgmma kernels alike) --------------
// Both keep scores in the m16n8k16 accumulator layout (a wgmma warp's 16 rows read the same),
// so these take one warp's 16 rows: n-tile nt, element e sits in row quad + 8 (e / 2) and
// column nt * 8 + fragment_column(e).
//
// With one or two warps per scheduler these steps are bound by latency, not by throughput
// (Nsight Compute on the d64 backward: an instruction issued every 3.5 cycles, stalls on
// dependencies, branches and shared loads). So masks are selects, not branches (a short-circuit
// condition on a shared load compiles to branches around every element), exponentials are one
// MUFU.EX2 each (fast_exp2), and the per-column statistics are loaded in pairs.

// 2^x on the special-function unit with denormal results flushed to zero: a probability below
// 2^-126 is zero to the bf16 products that read it. (exp2f wraps the same MUFU.EX2 in a
// compare and two multiplies that keep denormals.) 2^-inf is 0.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Forward: scores of keys the rows may not see become -inf (later keys, keys of another
// segment, rows at or past seq). Row r of the accumulators is query first_row + 8 r; key
// column c is key k0 + c with segment key_segment[c].
template <int KeyTiles>
__device__ __forceinline__ void mask_scores(float (&s)[KeyTiles][4], int k0, int first_row, int seq,
                                            const int32_t* key_segment, const int (&row_segment)[2]) {
#pragma unroll
    for (int nt = 0; nt < KeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int column = nt * kMmaN + fragment_column(e);
            const int t = first_row + 8 * (e >> 1);
            const bool visible = (k0 + column <= t) & (t < seq) & (key_segment[column] == row_segment[e >> 1]);
            if (!visible) s[nt][e] = -INFINITY;
        }
}

// Forward: one key tile's online-softmax step (running max and sum per row, in log2 units so
// that exp2 does the work): the scores become probabilities against the new running max, and
// the running sum and the output accumulators are rescaled to it. row_max is of the unscaled
// scores.
template <int KeyTiles, int DTiles>
__device__ __forceinline__ void online_softmax_step(float (&s)[KeyTiles][4], float (&o)[DTiles][4],
                                                    float (&row_max)[2], float (&row_sum)[2], float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < KeyTiles; ++nt) tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
        tile_max = group_max<4>(tile_max);
        const float new_max = fmaxf(row_max[r], tile_max);
        // Nothing visible yet: every p is exp2(-inf) = 0 against base 0.
        const float base = new_max == -INFINITY ? 0.0f : new_max * scale_log2;
        const float correction = fast_exp2(row_max[r] * scale_log2 - base);
        float tile_sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < KeyTiles; ++nt)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const float p = fast_exp2(fmaf(s[nt][2 * r + c], scale_log2, -base));
                s[nt][2 * r + c] = p;
                tile_sum += p;
            }
        row_sum[r] = row_sum[r] * correction + group_sum<4>(tile_sum);
        row_max[r] = new_max;
#pragma unroll
        for (int dn = 0; dn < DTiles; ++dn) {
            o[dn][2 * r] *= correction;
            o[dn][2 * r + 1] *= correction;
        }
    }
}

// Backward, rows keys (key_s[r], segment key_segment[r]) and columns queries t0 + c (segment,
// lse in log2 units and delta per column, as staged): P^T into s, dS^T into dp, in place:
// p = exp2(s scale log2e - lse) where the query sees the key, dS = p (dP - delta). A tile whose
// queries all follow the warp's 16 keys (and hold no padding or segment boundary) needs no mask.
template <int QueryTiles>
__device__ __forceinline__ void probabilities_and_score_gradients(
    float (&s)[QueryTiles][4], float (&dp)[QueryTiles][4], int warp_key0, int t0, int seq, bool packed,
    const int (&key_s)[2], const int (&key_segment)[2], const int32_t* query_segment, const float* query_lse,
    const float* query_delta, float scale_log2) {
    constexpr int kQueryRows = QueryTiles * kMmaN;
    const bool unmasked = !packed && t0 >= warp_key0 + kMmaM - 1 && t0 + kQueryRows <= seq && warp_key0 + kMmaM <= seq;
#pragma unroll
    for (int nt = 0; nt < QueryTiles; ++nt) {
        const int first_column = nt * kMmaN + fragment_column(0);  // even: the pair's first
        const float lse[2] = {query_lse[first_column], query_lse[first_column + 1]};
        const float delta[2] = {query_delta[first_column], query_delta[first_column + 1]};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int column = first_column + (e & 1);
            const int t = t0 + column;
            const int r = e >> 1;
            const bool same_segment = !packed || query_segment[column] == key_segment[r];
            const bool visible = unmasked | ((key_s[r] <= t) & (t < seq) & (key_s[r] < seq) & same_segment);
            const float p = visible ? fast_exp2(fmaf(s[nt][e], scale_log2, -lse[e & 1])) : 0.0f;
            s[nt][e] = p;
            dp[nt][e] = p * (dp[nt][e] - delta[e & 1]);
        }
    }
}

// 16 bytes global -> shared, asynchronously; zeros when !valid (src is then not read).
__device__ __forceinline__ void copy_async_16(bf16* shared_dst, const bf16* global_src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared_dst)),
                 "l"(global_src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending)); }

// Rows first..first+Rows-1 of a strided bf16 matrix (rows from `valid` on become zeros) into a
// padded row-major shared tile, asynchronously, by the block's Threads threads.
template <int Rows, int D, int Threads>
__device__ __forceinline__ void copy_rows_async(bf16* tile, const bf16* src, int64_t stride, int first, int valid) {
    constexpr int kVectorsPerRow = D / kVectorElements;
    constexpr int kStride = D + kMmaPad;
    static_assert(Rows * kVectorsPerRow % Threads == 0, "every thread copies the same number of vectors");
#pragma unroll
    for (int j = 0; j < Rows * kVectorsPerRow / Threads; ++j) {
        const int i = j * Threads + static_cast<int>(threadIdx.x);
        const int r = i / kVectorsPerRow;
        const int c = (i % kVectorsPerRow) * kVectorElements;
        const bool in_range = r < valid;
        copy_async_16(tile + r * kStride + c, src + int64_t{first + (in_range ? r : 0)} * stride + c, in_range);
    }
}

}  // namespace axl::cuda::attention_detail
