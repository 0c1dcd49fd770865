// The warpgroup tensor-core product of Hopper (sm_90a: wgmma.mma_async) and what feeding it
// takes: operand tiles in shared memory in the 128-byte-swizzled layout the hardware reads,
// their 64-bit matrix descriptors, and the fences and waits of an asynchronous product.
// Used by the attention kernels (attention_wgmma_*.cuh); the mma.sync blocks
// (attention_mma.cuh) remain for other architectures.
//
// A warpgroup is 4 consecutive warps (128 threads). One wgmma computes D (64 x N, f32) =
// A (64 x 16) B (16 x N) (+ D) for the whole warpgroup: warp w holds rows 16w..16w+15 of D in
// the m16n8k16 accumulator layout (n-tile i of 8 columns in d[i][0..3]), so the accumulators of
// a warpgroup product read like the mma.sync ones of attention_mma.cuh, and an A operand in
// registers is the m16n8k16 A fragment of the warp's 16 rows.
//
// Shared tiles: a tile of R rows x C bf16 columns (C a multiple of 64) is stored as C / 64
// panels of R rows x 64 columns (128 bytes a row); inside a panel, the 16-byte chunk c of row r
// sits at chunk c ^ (r % 8) (the 128-byte swizzle: the 8 rows of a 1024-byte atom spread one
// column's chunks over all banks). Panels start on 1024 bytes. The same tile serves as an
// operand either way round:
//   k-major   the operand's k runs along the tile's columns (Q, K in Q K^T): the k-step kk
//             (16 columns) starts 32 bytes into a row, in panel kk / 4; 8-row groups 1024
//             bytes apart (the descriptor's stride offset).
//   mn-major  the operand's k runs down the tile's rows (V in P V): the k-step is 16 rows;
//             8-row groups along k 1024 bytes apart, 64-column panels along m/n R * 128 bytes
//             apart (the descriptor's leading offset).
// PTX ISA: "Asynchronous Warpgroup Level Matrix Multiply-Accumulate" (matrix descriptor,
// shared memory layouts, register fragments).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace axl::cuda::wgmma {

using bf16 = __nv_bfloat16;

constexpr int kWarpgroupThreads = 128;
constexpr int kM = 64;              // rows of D per product
constexpr int kK = 16;              // k per product
constexpr int kPanelColumns = 64;   // bf16 in a 128-byte swizzled row
constexpr int kAtomBytes = 1024;    // 8 rows x 128 bytes: the swizzle pattern's period
constexpr int kChunkElements = 8;   // bf16 in a 16-byte chunk

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Element offset of (row, column) in a swizzled tile of `rows` rows.
__device__ __forceinline__ int tile_offset(int rows, int row, int column) {
    const int panel = column / kPanelColumns;
    const int chunk = (column % kPanelColumns) / kChunkElements;
    return (panel * rows + row) * kPanelColumns + ((chunk ^ (row % 8)) * kChunkElements) + column % kChunkElements;
}

// The first 1024-byte boundary at or after p (dynamic shared memory is only 16-byte aligned).
__device__ __forceinline__ unsigned char* align_to_atom(unsigned char* p) {
    const uint32_t misalignment = shared_address(p) % kAtomBytes;
    return p + (misalignment == 0 ? 0 : kAtomBytes - misalignment);
}

// Rows first..first+Rows-1 (rows from `valid` on become zeros) of a strided bf16 matrix of Columns
// columns into a swizzled tile, asynchronously (cp.async, 16 bytes a copy), by Threads threads.
template <int Rows, int Columns, int Threads>
__device__ __forceinline__ void copy_rows_async(bf16* tile, const bf16* src, int64_t stride, int first, int valid) {
    constexpr int kChunksPerRow = Columns / kChunkElements;
    constexpr int kChunks = Rows * kChunksPerRow;
#pragma unroll
    for (int j = 0; j < (kChunks + Threads - 1) / Threads; ++j) {
        const int i = j * Threads + static_cast<int>(threadIdx.x);
        if (kChunks % Threads != 0 && i >= kChunks) break;
        const int r = i / kChunksPerRow;
        const int c = (i % kChunksPerRow) * kChunkElements;
        const bool in_range = r < valid;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                         shared_address(tile + tile_offset(Rows, r, c))),
                     "l"(src + int64_t{first + (in_range ? r : 0)} * stride + c), "r"(in_range ? 16 : 0));
    }
}

// The m16n8k16 A fragment of rows first_row..+15, k-step kk (columns 16 kk..+15) of a swizzled
// tile whose rows are the operand's m (ldmatrix: each lane names one 16-byte chunk, which the
// swizzle keeps whole).
__device__ __forceinline__ void load_a_fragment(uint32_t (&a)[4], const bf16* tile, int rows, int first_row, int kk) {
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const bf16* p = tile + tile_offset(rows, first_row + lane % 16, kk * kK + 8 * (lane / 16));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(shared_address(p)));
}

// A matrix descriptor with the 128-byte swizzle: start address, leading and stride byte
// offsets in 16-byte units (bits 0-13, 16-29, 32-45), layout type 1 (bits 62-63).
__device__ __forceinline__ uint64_t descriptor(const bf16* start, uint32_t leading_bytes) {
    return uint64_t{(shared_address(start) & 0x3FFFF) >> 4} | uint64_t{(leading_bytes >> 4) & 0x3FFF} << 16 |
           uint64_t{(kAtomBytes >> 4) & 0x3FFF} << 32 | uint64_t{1} << 62;
}

// The k-major operand of rows first_row.. (a multiple of 8) of a tile of `rows` rows, k-step kk.
__device__ __forceinline__ uint64_t k_major(const bf16* tile, int rows, int first_row, int kk) {
    const int panel = kk * kK / kPanelColumns;
    return descriptor(tile + (panel * rows + first_row) * kPanelColumns + (kk * kK) % kPanelColumns, 16);
}

// The mn-major operand whose k-step starts at tile row first_row (a multiple of 8) and whose
// m/n starts at column first_column (a multiple of 64) of a tile of `rows` rows.
__device__ __forceinline__ uint64_t mn_major(const bf16* tile, int rows, int first_row, int first_column) {
    const int panel = first_column / kPanelColumns;
    return descriptor(tile + (panel * rows + first_row) * kPanelColumns, rows * kPanelColumns * 2);
}

// Orders this thread's register writes before the products that read them (accumulators, A).
__device__ __forceinline__ void fence_operands() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most Pending committed groups of this warpgroup are still running.
template <int Pending>
__device__ __forceinline__ void wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}
// Makes this thread's generic-proxy writes to shared memory (st.shared, cp.async) visible to
// the products, which read through the async proxy; a barrier must follow.
__device__ __forceinline__ void fence_shared_writes() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Keeps the compiler from moving reads or writes of accumulators across a wait: to it, the asm
// of a product has written them when issued.
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
}

// A barrier of one warpgroup's 128 threads (named barrier 1 + warpgroup; 0 is __syncthreads).
__device__ __forceinline__ void warpgroup_barrier(int warpgroup) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(1 + warpgroup), "n"(kWarpgroupThreads) : "memory");
}

// ---- the products (m64nNk16, bf16 in, f32 accumulate) ----------------------------------------
// mma_ss_*: A and B from shared memory, both k-major or both mn-major; mma_rs_*: A in
// registers (load_a_fragment), B k-major or mn-major. D = A B + (scale_d ? D : 0): scale_d = 0
// starts a sum without zeroing. Only the (N, form) pairs the kernels use exist; the register
// lists are spelled out because inline PTX takes no arrays.

__device__ __forceinline__ void mma_ss_k_major(float (&d)[8][4], uint64_t a, uint64_t b, int scale_d) {
    float* c = &d[0][0];
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]),
          "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]),
          "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]),
          "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31])
        : "l"(a), "l"(b), "r"(scale_d));
}

__device__ __forceinline__ void mma_ss_mn_major(float (&d)[8][4], uint64_t a, uint64_t b, int scale_d) {
    float* c = &d[0][0];
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, p, 1, 1, 1, 1;\n}\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]),
          "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]),
          "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]),
          "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31])
        : "l"(a), "l"(b), "r"(scale_d));
}

__device__ __forceinline__ void mma_rs_mn_major(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b,
                                                int scale_d) {
    float* c = &d[0][0];
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]),
          "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]),
          "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]),
          "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}

__device__ __forceinline__ void mma_ss_k_major(float (&d)[16][4], uint64_t a, uint64_t b, int scale_d) {
    float* c = &d[0][0];
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]),
          "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]),
          "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]),
          "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]),
          "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]),
          "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]),
          "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]),
          "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63])
        : "l"(a), "l"(b), "r"(scale_d));
}

__device__ __forceinline__ void mma_rs_mn_major(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b,
                                                int scale_d) {
    float* c = &d[0][0];
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]),
          "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]),
          "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]),
          "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31]),
          "+f"(c[32]), "+f"(c[33]), "+f"(c[34]), "+f"(c[35]), "+f"(c[36]), "+f"(c[37]), "+f"(c[38]), "+f"(c[39]),
          "+f"(c[40]), "+f"(c[41]), "+f"(c[42]), "+f"(c[43]), "+f"(c[44]), "+f"(c[45]), "+f"(c[46]), "+f"(c[47]),
          "+f"(c[48]), "+f"(c[49]), "+f"(c[50]), "+f"(c[51]), "+f"(c[52]), "+f"(c[53]), "+f"(c[54]), "+f"(c[55]),
          "+f"(c[56]), "+f"(c[57]), "+f"(c[58]), "+f"(c[59]), "+f"(c[60]), "+f"(c[61]), "+f"(c[62]), "+f"(c[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}

__device__ __forceinline__ void mma_rs_k_major(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b,
                                               int scale_d) {
    float* c = &d[0][0];
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]), "+f"(c[4]), "+f"(c[5]), "+f"(c[6]), "+f"(c[7]),
          "+f"(c[8]), "+f"(c[9]), "+f"(c[10]), "+f"(c[11]), "+f"(c[12]), "+f"(c[13]), "+f"(c[14]), "+f"(c[15]),
          "+f"(c[16]), "+f"(c[17]), "+f"(c[18]), "+f"(c[19]), "+f"(c[20]), "+f"(c[21]), "+f"(c[22]), "+f"(c[23]),
          "+f"(c[24]), "+f"(c[25]), "+f"(c[26]), "+f"(c[27]), "+f"(c[28]), "+f"(c[29]), "+f"(c[30]), "+f"(c[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}
}  // namespace axl::cuda::wgmma
