// The warp-level tensor-core product both mma.sync users share (attention_mma*.cuh and
// dequant_gemm.cu): D = A B + D for a 16 x 16 bf16 A fragment (4 registers of bf16 pairs), a
// 16 x 8 bf16 B fragment (2 registers) and a 16 x 8 f32 accumulator (4 floats a lane), in the
// PTX ISA's fragment layout for m16n8k16.
#pragma once

#include <cstdint>

namespace axl::cuda {

__device__ __forceinline__ void mma_bf16_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace axl::cuda
