// Inverted dropout with a counter-based mask: element i of a call is kept iff
// dropout_keep(seed, i, threshold) holds, and kept elements are scaled by 1/(1-p). Backward
// regenerates the same mask from (seed, i) instead of storing it, and a CUDA kernel can
// reproduce it exactly (integer hash and compare only).
//
// Seeds: each dropout site of each micro-batch needs its own seed (dropout_seed below), so masks
// differ between steps and modules yet replay identically when a layer is recomputed.
#pragma once

#include <cstdint>

#include "lora/counter_rng.hpp"

namespace axl {

// Separates dropout streams from the initialisation streams drawn from the same adapter seed.
inline constexpr uint64_t kDropoutDomain = 0x64726f706f7574ull;  // "dropout"

// The seed of one dropout site (`site`: e.g. the module index) in micro-batch `micro_batch`
// (a counter over the whole run) of an adapter seeded with `adapter_seed`.
inline uint64_t dropout_seed(uint64_t adapter_seed, uint64_t micro_batch, uint64_t site) {
    return combine_seeds(combine_seeds(combine_seeds(adapter_seed, kDropoutDomain), micro_batch), site);
}

// Elements whose 32-bit draw is below the threshold are dropped: threshold = round(p * 2^32).
uint32_t dropout_threshold(float p);

inline bool dropout_keep(uint64_t seed, uint64_t index, uint32_t threshold) {
    return static_cast<uint32_t>(counter_random(seed, index) >> 32) >= threshold;
}

// out[i] = keep(i) ? x[i] / (1-p) : 0 for i < n (out may alias x).
void dropout_forward(float* out, const float* x, int64_t n, float p, uint64_t seed);

// dx[i] += keep(i) ? dout[i] / (1-p) : 0 for i < n: the transpose of dropout_forward.
void dropout_backward_accumulate(float* dx, const float* dout, int64_t n, float p, uint64_t seed);

}  // namespace axl
