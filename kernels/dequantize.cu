// Dequantization of frozen base weights on the device, bit-exact with the CPU reference in
// src/quant (the twin of quant/nf4_fp4.cpp's dequantize_bnb_4bit_rows): bitsandbytes NF4 and
// FP4, f32 block absmax or double-quantized absmax. Each value is code_table[code] * absmax in
// f32 - with the CPU's own code table, so the two cannot drift apart - rounded once to the output
// type, as bitsandbytes' kDequantizeBlockwise does.
//
// The kernel is bound by its stores (four output bytes of bf16 for every half byte of codes),
// so the fast path is built around them: a thread takes kWordsPerThread words of four packed
// bytes, each word's eight values one 16-byte bf16 store (two float4 for f32), and the words of
// a block's threads interleave so that every load and every store of a warp is one contiguous
// run. All of a thread's code loads and block statistics are issued before the first value is
// computed, and the statistic's block index is a shift (power-of-two block sizes), not a 64-bit
// division. Other shapes and alignments take the one-byte-a-thread kernel.
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

// Four packed bytes (a 32-bit word) give eight outputs, stored together.
constexpr int kBytesPerWord = 4;
constexpr int kValuesPerWord = 2 * kBytesPerWord;
constexpr int kWordsPerThread = 4;
constexpr int kWordsPerTile = kWordsPerThread * kDequantizeThreads;  // a block's words per loop step

__device__ __forceinline__ void store_values(float* out, const float (&v)[kValuesPerWord]) {
    reinterpret_cast<float4*>(out)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(out)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ void store_values(__nv_bfloat16* out, const float (&v)[kValuesPerWord]) {
    store_vector(out, v);
}

// The eight values of one word: byte b holds elements 2b (HIGH nibble) and 2b + 1 (little
// endian: byte b of the word is the b-th byte in memory).
__device__ __forceinline__ void decode_word(uint32_t word, float scale, const float* codes,
                                            float (&v)[kValuesPerWord]) {
#pragma unroll
    for (int b = 0; b < kBytesPerWord; ++b) {
        const uint32_t byte = (word >> (8 * b)) & 0xffu;
        v[2 * b] = __fmul_rn(codes[byte >> 4], scale);
        v[2 * b + 1] = __fmul_rn(codes[byte & 0x0fu], scale);
    }
}

// Where value e (counted from the first dequantized row) goes in an output whose rows are
// `out_ld` apart: with out_ld == cols (Strided false) simply e; otherwise row e / cols at
// out_ld, a 32-bit division (the launcher checks that the values fit), which costs nothing
// next to the stores.
template <bool Strided>
__device__ __forceinline__ int64_t output_index(int64_t e, int64_t cols, int64_t out_ld) {
    if constexpr (!Strided) {
        return e;
    } else {
        const uint32_t row = static_cast<uint32_t>(e) / static_cast<uint32_t>(cols);
        return int64_t{row} * out_ld + (e - int64_t{row} * cols);
    }
}

// Words [0, n_words) of the packed weight from byte first_byte into out[0 .. 8 n_words) (rows
// out_ld apart when Strided). Needs first_byte a multiple of 4 with packed 4-byte aligned, out
// 16-byte aligned, a block size 2^block_shift >= 8 (so a word's values share a block, and a
// row), and out_ld a multiple of 8. Word w of a tile goes to thread w % kDequantizeThreads: for
// each k, the block's threads load consecutive words and store consecutive 16-byte vectors.
template <typename T, bool Strided>
__global__ void __launch_bounds__(kDequantizeThreads)
dequantize_bnb_4bit_vector_kernel(T* out, const __grid_constant__ Bnb4BitWeight w, const CodeTable table,
                                  int64_t first_byte, int64_t n_words, int block_shift, int64_t out_ld) {
    __shared__ float codes[kCodes];
    if (threadIdx.x < kCodes) codes[threadIdx.x] = table.value[threadIdx.x];
    __syncthreads();
    const uint32_t* words = reinterpret_cast<const uint32_t*>(w.packed + first_byte);
    const int64_t first_element = 2 * first_byte;
    for (int64_t tile = blockIdx.x; tile * kWordsPerTile < n_words; tile += gridDim.x) {
        const int64_t base = tile * kWordsPerTile + threadIdx.x;
        uint32_t word[kWordsPerThread];
        float scale[kWordsPerThread];
#pragma unroll
        for (int k = 0; k < kWordsPerThread; ++k) {
            const int64_t i = base + int64_t{k} * kDequantizeThreads;
            if (i < n_words) word[k] = words[i];
        }
#pragma unroll
        for (int k = 0; k < kWordsPerThread; ++k) {
            const int64_t i = base + int64_t{k} * kDequantizeThreads;
            if (i < n_words) scale[k] = block_absmax(w, (first_element + i * kValuesPerWord) >> block_shift);
        }
#pragma unroll
        for (int k = 0; k < kWordsPerThread; ++k) {
            const int64_t i = base + int64_t{k} * kDequantizeThreads;
            if (i < n_words) {
                float v[kValuesPerWord];
                decode_word(word[k], scale[k], codes, v);
                store_values(out + output_index<Strided>(i * kValuesPerWord, w.cols, out_ld), v);
            }
        }
    }
}

// Bytes [first_byte, first_byte + n_bytes) of the packed weight into out[0 .. 2 n_bytes) (rows
// out_ld apart), one byte a thread: any alignment, any even block size (rows are whole blocks,
// so a byte's two values share a row).
template <typename T>
__global__ void __launch_bounds__(kDequantizeThreads)
dequantize_bnb_4bit_kernel(T* out, const __grid_constant__ Bnb4BitWeight w, const CodeTable table,
                           int64_t first_byte, int64_t n_bytes, int64_t out_ld) {
    __shared__ float codes[kCodes];
    if (threadIdx.x < kCodes) codes[threadIdx.x] = table.value[threadIdx.x];
    __syncthreads();
    for (int64_t i = grid_thread_index(); i < n_bytes; i += grid_thread_count()) {
        const int64_t byte_index = first_byte + i;
        const uint8_t byte = w.packed[byte_index];
        // block_size is even, so both elements of a byte share a block.
        const float scale = block_absmax(w, (2 * byte_index) / w.block_size);
        const int64_t row = (2 * i) / w.cols;
        T* at = out + row * out_ld + (2 * i - row * w.cols);
        at[0] = from_float<T>(__fmul_rn(codes[byte >> 4], scale));
        at[1] = from_float<T>(__fmul_rn(codes[byte & 0x0f], scale));
    }
}

// log2(block_size) when it is a power of two, -1 otherwise.
int power_of_two_shift(int64_t block_size) {
    if (block_size <= 0 || (block_size & (block_size - 1)) != 0) return -1;
    int shift = 0;
    while ((int64_t{1} << shift) < block_size) ++shift;
    return shift;
}

template <typename T>
void launch_dequantize_bnb_4bit(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, T* out, int64_t out_ld,
                                cudaStream_t stream) {
    require(w.format == QuantFormat::NF4 || w.format == QuantFormat::FP4, AXL_ERR_INTERNAL,
            "dequantize_bnb_4bit_rows: ", quant_format_name(w.format), " is not a bitsandbytes 4-bit format");
    require(w.block_size > 0 && w.block_size % 2 == 0 && w.cols % w.block_size == 0, AXL_ERR_SHAPE,
            "dequantize_bnb_4bit_rows: block size ", w.block_size, " for rows of ", w.cols);
    require(w.absmax != nullptr || (w.absmax_codes && w.nested_absmax && w.code_map), AXL_ERR_INTERNAL,
            "dequantize_bnb_4bit_rows: no absmax and no double-quant statistics");
    require(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, AXL_ERR_SHAPE,
            "dequantize_bnb_4bit_rows: rows [", row_begin, ", ", row_end, ") of ", w.rows);
    require(out_ld >= w.cols, AXL_ERR_SHAPE, "dequantize_bnb_4bit_rows: output rows ", out_ld, " apart for ",
            w.cols, " values");
    const int64_t n_bytes = (row_end - row_begin) * w.cols / 2;
    if (n_bytes == 0) return;
    const bool strided = out_ld != w.cols;
    CodeTable table{};
    const float* cpu_table = bnb_4bit_code_table(w.format);
    for (int i = 0; i < kCodes; ++i) table.value[i] = cpu_table[i];
    const int64_t first_byte = row_begin * w.cols / 2;
    const int block_shift = power_of_two_shift(w.block_size);
    const bool vectorized = n_bytes % kBytesPerWord == 0 && first_byte % kBytesPerWord == 0 &&
                            block_shift >= 0 && w.block_size % kValuesPerWord == 0 && is_vector_aligned(out) &&
                            reinterpret_cast<uintptr_t>(w.packed) % kBytesPerWord == 0 &&
                            (!strided || (out_ld % kValuesPerWord == 0 && 2 * n_bytes <= UINT32_MAX));
    if (vectorized) {
        auto* kernel = strided ? dequantize_bnb_4bit_vector_kernel<T, true> : dequantize_bnb_4bit_vector_kernel<T, false>;
        const int64_t n_words = n_bytes / kBytesPerWord;
        kernel<<<grid_for_resident(kernel, n_words, kWordsPerTile, kDequantizeThreads), kDequantizeThreads, 0,
                 stream>>>(out, w, table, first_byte, n_words, block_shift, out_ld);
    } else {
        auto* kernel = dequantize_bnb_4bit_kernel<T>;
        kernel<<<grid_for_resident(kernel, n_bytes, kDequantizeThreads, kDequantizeThreads), kDequantizeThreads, 0,
                 stream>>>(out, w, table, first_byte, n_bytes, out_ld);
    }
    AXL_CUDA_CHECK_LAUNCH("dequantize_bnb_4bit_kernel");
}

}  // namespace

void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, float* out,
                              cudaStream_t stream) {
    launch_dequantize_bnb_4bit(w, row_begin, row_end, out, w.cols, stream);
}

void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, bf16* out,
                              cudaStream_t stream) {
    launch_dequantize_bnb_4bit(w, row_begin, row_end, out, w.cols, stream);
}

void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, bf16* out, int64_t out_ld,
                              cudaStream_t stream) {
    launch_dequantize_bnb_4bit(w, row_begin, row_end, out, out_ld, stream);
}

}  // namespace axl::cuda
