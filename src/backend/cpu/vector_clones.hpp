// Load-time selection of vector code for the CPU kernels. The library is distributed, so it is
// built for the baseline x86-64 and cannot assume AVX; a function marked AXL_VECTOR_CLONES is
// compiled three times, for AVX-512 (x86-64-v4), for AVX2 with FMA (x86-64-v3) and for the
// baseline, and the dynamic loader picks the best one the CPU supports. fp-contract=fast lets
// GCC fuse multiplies and adds into FMA instructions, which ISO C++ mode otherwise forbids.
#pragma once

#define AXL_VECTOR_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("fp-contract=fast")))
