// Dequantization of frozen base weights on the device, bit-exact with the CPU reference in
// src/quant (the twin of quant/nf4_fp4.cpp's dequantize_bnb_4bit_rows): bitsandbytes NF4 and
// FP4, f32 block absmax or double-quantized absmax. A thread takes four packed bytes and writes
// their eight elements (the first of each byte's pair from the HIGH nibble) in 16-byte stores. Each value is code_table[code] * absmax in f32 -
// with the CPU's own code table, so the two cannot drift apart - rounded once to the output
// type, as bitsandbytes' kDequantizeBlockwise does.
#include "backend/cuda/ops.hpp"
#include "common.cuh"
#include "quant/nf4_fp4.hpp"

namespace axl::cuda {
namespace {

constexpr int kDequantizeThreads = 256;
constexpr int kCodes = 16;
static_assert(kDoubleQuantBlockSize == 256, "one nested absmax per 256 block absmax codes");

struct CodeTable {
    float value[kCodes];
};

// The block's absmax: stored f32, or (double quant) code_map[code] * nested + offset with
// the two roundings of quant/double_quant.cpp's dequantize_absmax.
__device__ __forceinline__ float block_absmax(const Bnb4BitWeight& w, int64_t block) {
    if (w.absmax != nullptr) return w.absmax[block];
    const float scaled = __fmul_rn(w.code_map[w.absmax_codes[block]], w.nested_absmax[block / kDoubleQuantBlockSize]);
    return __fadd_rn(scaled, w.offset);
}

// Eight outputs (four packed bytes) per thread, stored as 16-byte vectors when Vectorized: the
// kernel is bound by its stores, so their width sets its speed.
constexpr int kBytesPerThread = 4;
constexpr int kValuesPerThread = 2 * kBytesPerThread;

__device__ __forceinline__ void store_values(float* out, const float (&v)[kValuesPerThread]) {
    reinterpret_cast<float4*>(out)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(out)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ void store_values(__nv_bfloat16* out, const float (&v)[kValuesPerThread]) {
    uint4 packed;
    uint32_t* words = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
    for (int i = 0; i < kValuesPerThread / 2; ++i) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);  // .x = v[2i], the lower address
        words[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    *reinterpret_cast<uint4*>(out) = packed;
}

// Bytes [first_byte, first_byte + n_bytes) of the packed weight into out[0 .. 2 n_bytes).
// Vectorized: n_bytes and first_byte are multiples of kBytesPerThread, out is 16-byte aligned
// and a block holds a multiple of kValuesPerThread values (so a thread's values share a block).
template <typename T, bool Vectorized>
__global__ void __launch_bounds__(kDequantizeThreads)
dequantize_bnb_4bit_kernel(T* out, const __grid_constant__ Bnb4BitWeight w, const CodeTable table,
                           int64_t first_byte, int64_t n_bytes) {
    __shared__ float codes[kCodes];
    if (threadIdx.x < kCodes) codes[threadIdx.x] = table.value[threadIdx.x];
    __syncthreads();
    if constexpr (Vectorized) {
        const uint32_t* words = reinterpret_cast<const uint32_t*>(w.packed + first_byte);
        const int64_t n_words = n_bytes / kBytesPerThread;
        for (int64_t i = blockIdx.x * int64_t{kDequantizeThreads} + threadIdx.x; i < n_words;
             i += int64_t{gridDim.x} * kDequantizeThreads) {
            const uint32_t word = words[i];
            const float scale = block_absmax(w, (2 * (first_byte + i * kBytesPerThread)) / w.block_size);
            float v[kValuesPerThread];
#pragma unroll
            for (int b = 0; b < kBytesPerThread; ++b) {
                const uint32_t byte = (word >> (8 * b)) & 0xffu;  // little endian: byte b is element pair b
                v[2 * b] = __fmul_rn(codes[byte >> 4], scale);
                v[2 * b + 1] = __fmul_rn(codes[byte & 0x0fu], scale);
            }
            store_values(out + i * kValuesPerThread, v);
        }
    } else {
        for (int64_t i = blockIdx.x * int64_t{kDequantizeThreads} + threadIdx.x; i < n_bytes;
             i += int64_t{gridDim.x} * kDequantizeThreads) {
            const int64_t byte_index = first_byte + i;
            const uint8_t byte = w.packed[byte_index];
            // block_size is even, so both elements of a byte share a block.
            const float scale = block_absmax(w, (2 * byte_index) / w.block_size);
            out[2 * i] = from_float<T>(__fmul_rn(codes[byte >> 4], scale));
            out[2 * i + 1] = from_float<T>(__fmul_rn(codes[byte & 0x0f], scale));
        }
    }
}

template <typename T>
void launch_dequantize_bnb_4bit(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, T* out,
                                cudaStream_t stream) {
    require(w.format == QuantFormat::NF4 || w.format == QuantFormat::FP4, AXL_ERR_INTERNAL,
            "dequantize_bnb_4bit_rows: ", quant_format_name(w.format), " is not a bitsandbytes 4-bit format");
    require(w.block_size > 0 && w.block_size % 2 == 0 && w.cols % w.block_size == 0, AXL_ERR_SHAPE,
            "dequantize_bnb_4bit_rows: block size ", w.block_size, " for rows of ", w.cols);
    require(w.absmax != nullptr || (w.absmax_codes && w.nested_absmax && w.code_map), AXL_ERR_INTERNAL,
            "dequantize_bnb_4bit_rows: no absmax and no double-quant statistics");
    require(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, AXL_ERR_SHAPE,
            "dequantize_bnb_4bit_rows: rows [", row_begin, ", ", row_end, ") of ", w.rows);
    const int64_t n_bytes = (row_end - row_begin) * w.cols / 2;
    if (n_bytes == 0) return;
    CodeTable table{};
    const float* cpu_table = bnb_4bit_code_table(w.format);
    for (int i = 0; i < kCodes; ++i) table.value[i] = cpu_table[i];
    const int64_t first_byte = row_begin * w.cols / 2;
    const bool vectorized = n_bytes % kBytesPerThread == 0 && first_byte % kBytesPerThread == 0 &&
                            w.block_size % kValuesPerThread == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                            reinterpret_cast<uintptr_t>(w.packed) % kBytesPerThread == 0;
    if (vectorized)
        dequantize_bnb_4bit_kernel<T, true>
            <<<grid_for(n_bytes / kBytesPerThread, kDequantizeThreads, 65536), kDequantizeThreads, 0, stream>>>(
                out, w, table, first_byte, n_bytes);
    else
        dequantize_bnb_4bit_kernel<T, false>
            <<<grid_for(n_bytes, kDequantizeThreads, 65536), kDequantizeThreads, 0, stream>>>(out, w, table,
                                                                                            first_byte, n_bytes);
    AXL_CUDA_CHECK_LAUNCH("dequantize_bnb_4bit_kernel");
}

}  // namespace

void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, float* out,
                              cudaStream_t stream) {
    launch_dequantize_bnb_4bit(w, row_begin, row_end, out, stream);
}

void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, bf16* out,
                              cudaStream_t stream) {
    launch_dequantize_bnb_4bit(w, row_begin, row_end, out, stream);
}

}  // namespace axl::cuda
