// Counter-based random numbers: the i-th value of a stream is a pure function of (seed, i), so
// any element can be drawn on its own, in parallel, in any order, and a CUDA kernel can draw
// the same values bit for bit. Used for LoRA initialisation and dropout masks.
#pragma once

#include <cstdint>

namespace axl {

// splitmix64's output function; a bijection on 64 bits with good avalanche.
inline uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The index-th output of splitmix64 started from `seed` (computed without the earlier ones).
inline uint64_t counter_random(uint64_t seed, uint64_t index) {
    return splitmix64_mix(seed + (index + 1) * 0x9e3779b97f4a7c15ull);
}

// Derives an independent stream seed, e.g. combine_seeds(adapter_seed, module_index).
inline uint64_t combine_seeds(uint64_t seed, uint64_t value) { return counter_random(seed, value); }

// Uniform double in [0, 1) from the top 53 bits.
inline double counter_uniform(uint64_t seed, uint64_t index) {
    return static_cast<double>(counter_random(seed, index) >> 11) * 0x1.0p-53;
}

}  // namespace axl
