// Dequantization of the base-weight formats other than bitsandbytes 4-bit on the device, each
// bit-exact with its CPU twin in src/quant: the same products and sums in the same order, each
// rounded once to f32 (__fmul_rn/__fadd_rn, so nothing is contracted into an FMA), then rounded
// once to bf16 for the GEMM. A format is a small traits struct: the statistics of the block an
// element lies in, and the value of one code given them.
//
// The fast kernel gives a thread 16 consecutive elements of one block: one 16-byte load of
// 8-bit codes (8 bytes of 4-bit codes), the block's statistics read once, two 16-byte bf16
// stores (four for f32). It needs rows and blocks that split into such groups and aligned
// pointers; any other shape takes the one-element-a-thread kernel.
#include <cuda_fp8.h>

#include "backend/cuda/dequantize_formats.hpp"
#include "common.cuh"
#include "core/error.hpp"

namespace axl::cuda {
namespace {

constexpr int kDequantizeThreads = 256;
constexpr int kGroup = 16;  // elements per thread in the fast kernel

// ---- code decoding (exact: every code's value is an f32) ---------------------------------

__device__ __forceinline__ float int8_value(uint32_t code) { return static_cast<float>(static_cast<int8_t>(code)); }

// torchao/mslk int4: the nibble is q - 8 as two's complement, i.e. q with bit 3 flipped.
__device__ __forceinline__ float int4_value(uint32_t nibble) { return static_cast<float>(static_cast<int>(nibble ^ 0x8u) - 8); }

// float8_e4m3fn through the hardware conversion (sm_89+): every e4m3 value is an f16, so
// e4m3 -> f16 -> f32 is exact, and 0x7f/0xff become NaN as in quant/minifloat.cpp.
__device__ __forceinline__ float e4m3_value(uint32_t code) {
    const __half_raw as_f16 = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E4M3);
    return __half2float(__half(as_f16));
}

// E2M1 magnitudes times two {0, 1, 2, 3, 4, 6, 8, 12}, one a nibble, so decoding needs no
// memory; code 8 is -0 as decode_e2m1 gives it.
constexpr uint32_t kE2M1TwiceMagnitudes = 0xC8643210u;
__device__ __forceinline__ float e2m1_value(uint32_t code) {
    const float magnitude = static_cast<float>((kE2M1TwiceMagnitudes >> (4 * (code & 0x7u))) & 0xfu) * 0.5f;
    return (code & 0x8u) ? -magnitude : magnitude;
}

// E8M0: 2^(code - 127); code 0 is the subnormal 2^-127 and 255 is NaN, as decode_e8m0.
__device__ __forceinline__ float e8m0_value(uint32_t code) {
    if (code == 0xffu) return __int_as_float(0x7fc00000);
    if (code == 0u) return __int_as_float(0x00400000);
    return __int_as_float(static_cast<int>(code << 23));
}

// ---- formats ---------------------------------------------------------------------------
// Each: kCodeBits, Block (the statistics an element needs), block(w, element) for the flat
// element index, and value(code, block) with the arithmetic of the CPU twin named.

// quant/int8_row.cpp: (q * SCB) * (1/127), bitsandbytes' f32 constant for 1/127.
struct Int8RowFormat {
    static constexpr int kCodeBits = 8;
    static constexpr float kInverse127 = static_cast<float>(7.874015718698502e-3);
    struct Block {
        float scale;
    };
    __device__ static Block block(const PackedWeight& w, int64_t element) { return {w.scales[element / w.block_size]}; }
    __device__ static float value(uint32_t code, Block b) {
        return __fmul_rn(__fmul_rn(int8_value(code), b.scale), kInverse127);
    }
};

// quant/int8_channel.cpp: q * scale.
struct Int8ChannelFormat {
    static constexpr int kCodeBits = 8;
    struct Block {
        float scale;
    };
    __device__ static Block block(const PackedWeight& w, int64_t element) { return {w.scales[element / w.block_size]}; }
    __device__ static float value(uint32_t code, Block b) { return __fmul_rn(int8_value(code), b.scale); }
};

// quant/int4_group.cpp: q * scale + zero, two roundings.
struct Int4GroupFormat {
    static constexpr int kCodeBits = 4;
    struct Block {
        float scale, zero;
    };
    __device__ static Block block(const PackedWeight& w, int64_t element) {
        const int64_t group = element / w.block_size;
        return {w.scales[group], w.zeros[group]};
    }
    __device__ static float value(uint32_t code, Block b) {
        return __fadd_rn(__fmul_rn(int4_value(code), b.scale), b.zero);
    }
};

// quant/fp8_e4m3.cpp: e4m3 * scale, the scale of the row or of the 2-D tile (edge tiles partial).
struct Fp8E4M3Format {
    static constexpr int kCodeBits = 8;
    struct Block {
        float scale;
    };
    __device__ static Block block(const PackedWeight& w, int64_t element) {
        if (w.block_rows == 0) return {w.scales[element / w.block_size]};
        const int64_t row = element / w.cols;
        const int64_t col = element - row * w.cols;
        const int64_t tiles_per_row = (w.cols + w.block_size - 1) / w.block_size;
        return {w.scales[(row / w.block_rows) * tiles_per_row + col / w.block_size]};
    }
    __device__ static float value(uint32_t code, Block b) { return __fmul_rn(e4m3_value(code), b.scale); }
};

// quant/nvfp4.cpp: e2m1 * (P * s), or e2m1 * s without the per-tensor scale.
struct Nvfp4Format {
    static constexpr int kCodeBits = 4;
    struct Block {
        float scale;
    };
    __device__ static Block block(const PackedWeight& w, int64_t element) {
        const float decoded = e4m3_value(w.scale_codes[element / w.block_size]);
        return {w.has_tensor_scale ? __fmul_rn(w.tensor_scale, decoded) : decoded};
    }
    __device__ static float value(uint32_t code, Block b) { return __fmul_rn(e2m1_value(code), b.scale); }
};

// quant/mxfp4.cpp: e2m1 * 2^(byte - 127).
struct Mxfp4Format {
    static constexpr int kCodeBits = 4;
    struct Block {
        float scale;
    };
    __device__ static Block block(const PackedWeight& w, int64_t element) {
        return {e8m0_value(w.scale_codes[element / w.block_size])};
    }
    __device__ static float value(uint32_t code, Block b) { return __fmul_rn(e2m1_value(code), b.scale); }
};

// ---- kernels ------------------------------------------------------------------------------

__device__ __forceinline__ void store_group(float* out, const float (&v)[kGroup]) {
#pragma unroll
    for (int i = 0; i < kGroup / 4; ++i)
        reinterpret_cast<float4*>(out)[i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
}

__device__ __forceinline__ void store_group(__nv_bfloat16* out, const float (&v)[kGroup]) {
    uint32_t words[kGroup / 2];
#pragma unroll
    for (int i = 0; i < kGroup / 2; ++i) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);  // .x at the lower address
        words[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
#pragma unroll
    for (int i = 0; i < kGroup / 8; ++i)
        reinterpret_cast<uint4*>(out)[i] = make_uint4(words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]);
}

// The code of element `element`: a byte, or a nibble with element 2i in the LOW half.
template <typename Format>
__device__ __forceinline__ uint32_t code_at(const uint8_t* packed, int64_t element) {
    if constexpr (Format::kCodeBits == 8) return packed[element];
    const uint32_t byte = packed[element / 2];
    return (element % 2 == 0) ? (byte & 0xfu) : (byte >> 4);
}

// Elements [first, first + n_groups * kGroup) into out[0 ..). first, the row length and the
// block size are multiples of kGroup (a group lies in one block and one row), out is 16-byte
// aligned and so is the group's first code byte (8-byte for 4-bit codes).
template <typename Format, typename T>
__global__ void __launch_bounds__(kDequantizeThreads)
dequantize_groups_kernel(T* out, const __grid_constant__ PackedWeight w, int64_t first, int64_t n_groups) {
    for (int64_t g = blockIdx.x * int64_t{kDequantizeThreads} + threadIdx.x; g < n_groups;
         g += int64_t{gridDim.x} * kDequantizeThreads) {
        const int64_t element = first + g * kGroup;
        const typename Format::Block block = Format::block(w, element);
        float v[kGroup];
        if constexpr (Format::kCodeBits == 8) {
            const uint4 bytes = __ldcs(reinterpret_cast<const uint4*>(w.packed + element));
            const uint32_t words[4] = {bytes.x, bytes.y, bytes.z, bytes.w};
#pragma unroll
            for (int i = 0; i < kGroup; ++i) v[i] = Format::value((words[i / 4] >> (8 * (i % 4))) & 0xffu, block);
        } else {
            const uint2 bytes = __ldcs(reinterpret_cast<const uint2*>(w.packed + element / 2));
            const uint32_t words[2] = {bytes.x, bytes.y};
#pragma unroll
            for (int i = 0; i < kGroup; ++i) {
                // Little endian: byte i/2 holds elements i and i+1, the even one in the low nibble.
                v[i] = Format::value((words[i / 8] >> (4 * (i % 8))) & 0xfu, block);
            }
        }
        store_group(out + (element - first), v);
    }
}

// Any shape and alignment: one element a thread.
template <typename Format, typename T>
__global__ void __launch_bounds__(kDequantizeThreads)
dequantize_elements_kernel(T* out, const __grid_constant__ PackedWeight w, int64_t first, int64_t count) {
    for (int64_t i = blockIdx.x * int64_t{kDequantizeThreads} + threadIdx.x; i < count;
         i += int64_t{gridDim.x} * kDequantizeThreads) {
        const int64_t element = first + i;
        out[i] = from_float<T>(Format::value(code_at<Format>(w.packed, element), Format::block(w, element)));
    }
}

template <typename Format, typename T>
void launch_format(const PackedWeight& w, int64_t first, int64_t count, T* out, cudaStream_t stream) {
    constexpr uintptr_t kCodeAlignment = Format::kCodeBits == 8 ? 16 : 8;
    const bool grouped = w.cols % kGroup == 0 && w.block_size % kGroup == 0 &&
                         reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(w.packed) % kCodeAlignment == 0;
    if (grouped) {
        const int64_t n_groups = count / kGroup;
        dequantize_groups_kernel<Format, T>
            <<<grid_for(n_groups, kDequantizeThreads, 65536), kDequantizeThreads, 0, stream>>>(out, w, first, n_groups);
        AXL_CUDA_CHECK_LAUNCH("dequantize_groups_kernel");
    } else {
        dequantize_elements_kernel<Format, T>
            <<<grid_for(count, kDequantizeThreads, 65536), kDequantizeThreads, 0, stream>>>(out, w, first, count);
        AXL_CUDA_CHECK_LAUNCH("dequantize_elements_kernel");
    }
}

void check_packed_weight(const PackedWeight& w, int64_t row_begin, int64_t row_end) {
    const char* name = quant_format_name(w.format);
    require(has_packed_dequantizer(w.format), AXL_ERR_UNSUPPORTED, "dequantize_packed_rows: no device dequantizer for ",
            name, " (nf4/fp4 go through dequantize_bnb_4bit_rows)");
    require(w.rows > 0 && w.cols > 0 && w.block_size > 0 && w.block_rows >= 0, AXL_ERR_SHAPE,
            "dequantize_packed_rows: ", name, " weight [", w.rows, ", ", w.cols, "] in blocks of ", w.block_size);
    require(w.block_rows == 0 || w.format == QuantFormat::Fp8E4M3, AXL_ERR_SHAPE, "dequantize_packed_rows: ", name,
            " has no 2-D tile scales");
    require(w.block_rows > 0 || w.cols % w.block_size == 0, AXL_ERR_SHAPE, "dequantize_packed_rows: ", name,
            " rows of ", w.cols, " do not split into blocks of ", w.block_size);
    require(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, AXL_ERR_SHAPE, "dequantize_packed_rows: rows [",
            row_begin, ", ", row_end, ") of ", w.rows);
    const bool block_codes = w.format == QuantFormat::NVFP4 || w.format == QuantFormat::MXFP4;
    require(w.packed != nullptr && (block_codes ? w.scale_codes != nullptr : w.scales != nullptr) &&
                (w.format != QuantFormat::Int4Group || w.zeros != nullptr),
            AXL_ERR_INTERNAL, "dequantize_packed_rows: ", name, " weight without its codes or statistics");
}

template <typename T>
void launch_dequantize_packed(const PackedWeight& w, int64_t row_begin, int64_t row_end, T* out, cudaStream_t stream) {
    check_packed_weight(w, row_begin, row_end);
    const int64_t first = row_begin * w.cols;
    const int64_t count = (row_end - row_begin) * w.cols;
    if (count == 0) return;
    switch (w.format) {
        case QuantFormat::Int8Row: launch_format<Int8RowFormat>(w, first, count, out, stream); break;
        case QuantFormat::Int8Channel: launch_format<Int8ChannelFormat>(w, first, count, out, stream); break;
        case QuantFormat::Int4Group: launch_format<Int4GroupFormat>(w, first, count, out, stream); break;
        case QuantFormat::Fp8E4M3: launch_format<Fp8E4M3Format>(w, first, count, out, stream); break;
        case QuantFormat::NVFP4: launch_format<Nvfp4Format>(w, first, count, out, stream); break;
        case QuantFormat::MXFP4: launch_format<Mxfp4Format>(w, first, count, out, stream); break;
        case QuantFormat::NF4:
        case QuantFormat::FP4: break;  // refused by check_packed_weight
    }
}

}  // namespace

bool has_packed_dequantizer(QuantFormat format) {
    switch (format) {
        case QuantFormat::Int8Row:
        case QuantFormat::Int8Channel:
        case QuantFormat::Int4Group:
        case QuantFormat::Fp8E4M3:
        case QuantFormat::NVFP4:
        case QuantFormat::MXFP4: return true;
        case QuantFormat::NF4:
        case QuantFormat::FP4: return false;
    }
    return false;
}

void dequantize_packed_rows(const PackedWeight& w, int64_t row_begin, int64_t row_end, float* out,
                            cudaStream_t stream) {
    launch_dequantize_packed(w, row_begin, row_end, out, stream);
}

void dequantize_packed_rows(const PackedWeight& w, int64_t row_begin, int64_t row_end, bf16* out,
                            cudaStream_t stream) {
    launch_dequantize_packed(w, row_begin, row_end, out, stream);
}

}  // namespace axl::cuda
