// Fused dequantize + GEMM for few tokens (src/backend/cuda/dequant_gemm.hpp): the packed 4-bit
// codes are read once from memory, dequantized in registers exactly as dequantize.cu does
// (bf16(code_table[code] * absmax), f32 product), and fed straight into mma.sync.m16n8k16 (bf16
// in, f32 accumulate) as fragments. At 1..16 tokens the product is bound by the weight's bytes,
// so the kernels are built around reading the codes in wide, coalesced loads; the tensor cores
// only spare the CUDA cores the token dimension's FMAs.
//
// Both products may visit the k dimension in any order that the two operands agree on. Each
// thread therefore takes whole runs of contiguous codes from one load, and its fragment
// positions are mapped to whatever physical elements it holds (the x/dy fragment follows the
// same mapping), instead of gathering codes into the PTX fragment order.
//
//   forward   y = x W^T: the mma's M is the weight rows (o), N the tokens, K the inputs (i).
//             Lane (g, c) (g = lane / 4, c = lane % 4) loads 16 bytes (32 inputs) of rows g and
//             g + 8 of each m-tile; a quad covers 128 contiguous inputs ("chunk"). A block's 8
//             warps share 32 rows and split the chunks; their partial sums meet in shared memory.
//   backward  dx = dy W: M is the weight columns (i), N the tokens, K the weight rows (o). Lane
//             (g, c) loads 8 bytes (16 columns) of rows 4c .. 4c + 3 of a 16-row step; a byte's
//             two nibbles are rows g and g + 8 of one m-tile. A block's 4 warps share 128
//             columns and split the steps of its rows; `out` is split across blocks, whose f32
//             partials a second kernel sums in a fixed order (no atomics: deterministic).
#include <algorithm>
#include <bit>

#include "backend/cuda/dequant_gemm.hpp"
#include "common.cuh"
#include "mma_sync.cuh"
#include "quant/nf4_fp4.hpp"

namespace axl::cuda {
namespace {

constexpr int kCodes = 16;
// mma.sync.m16n8k16: A is 16 x 16, B 16 x 8, C 16 x 8.
constexpr int kMmaM = 16, kMmaN = 8, kMmaK = 16;
constexpr int kMaxTokenTiles = static_cast<int>(kFusedDequantMaxTokens) / kMmaN;
static_assert(kMaxTokenTiles * kMmaN == kFusedDequantMaxTokens, "tokens are whole n-tiles");
static_assert(kDoubleQuantBlockSize == 256, "one nested absmax per 256 block absmax codes");

// Rows a multiple of this: a forward chunk is 128 inputs, and the last may be half of one.
constexpr int64_t kRowMultiple = 64;
// A forward thread's 32 inputs and a backward thread's 16 columns share one absmax; blocks are
// powers of two (as bitsandbytes makes them), so a block index is a shift.
constexpr int64_t kBlockSizeMultiple = 32;

struct CodeTable {
    float value[kCodes];
};

CodeTable code_table_of(QuantFormat format) {
    CodeTable table{};
    const float* cpu_table = bnb_4bit_code_table(format);
    for (int i = 0; i < kCodes; ++i) table.value[i] = cpu_table[i];
    return table;
}

// dequantize.cu's block absmax: stored f32, or the double-quant statistics with the same two
// roundings, so that the dequantized weights are bit-identical to its output.
template <bool DoubleQuant>
__device__ __forceinline__ float block_absmax(const Bnb4BitWeight& w, uint64_t block) {
    if constexpr (!DoubleQuant) {
        return w.absmax[block];
    } else {
        const float scaled = __fmul_rn(w.code_map[w.absmax_codes[block]], w.nested_absmax[block / kDoubleQuantBlockSize]);
        return __fadd_rn(scaled, w.offset);
    }
}

// The code table in shared memory, 256-byte aligned: an entry's address is the table's with
// its low byte replaced by code * 4, which one byte permute builds from a word of packed
// offsets. Per code that is one permute and one load, the fewest instructions a lookup takes;
// the kernels issue about as many instructions as the codes' bytes arrive, so each one counts.
struct alignas(256) SharedCodeTable {
    float value[kCodes];
};

// code * 4 of each byte's high nibble (`high`) and low nibble (`low`), byte for byte.
struct NibbleOffsets {
    uint32_t high, low;
};

__device__ __forceinline__ NibbleOffsets nibble_offsets(uint32_t word) {
    return {(word >> 2) & 0x3c3c3c3cu, (word << 2) & 0x3c3c3c3cu};
}

// code_table[code] * absmax in f32 for the code whose offset is byte `byte` of `offsets`.
__device__ __forceinline__ float dequantized(uint32_t table_address, uint32_t offsets, int byte, float absmax) {
    const uint32_t address = __byte_perm(offsets, table_address, 0x7650u + byte);
    float code_value;
    // volatile: the compiler must not move the load above the barrier that publishes the table.
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(code_value) : "r"(address));
    return __fmul_rn(code_value, absmax);
}

__device__ __forceinline__ uint32_t load_table(SharedCodeTable& shared, const CodeTable& table) {
    if (threadIdx.x < kCodes) shared.value[threadIdx.x] = table.value[threadIdx.x];
    __syncthreads();
    return static_cast<uint32_t>(__cvta_generic_to_shared(&shared));
}

__device__ __forceinline__ uint32_t pack_bf16_pair(float low, float high) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);  // .x (low) in the lower 16 bits
    return *reinterpret_cast<const uint32_t*>(&pair);
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// ---- forward: y = x W^T -----------------------------------------------------------------

constexpr int kForwardWarps = 8;
constexpr int kForwardThreads = kForwardWarps * kWarpSize;
constexpr int kForwardRowTiles = 2;  // m-tiles a warp takes: both reuse one load of x's fragments
constexpr int kForwardBlockRows = kForwardRowTiles * kMmaM;
constexpr int kPieceInputs = 32;                // one thread's 16-byte load of codes
constexpr int kChunkInputs = 4 * kPieceInputs;  // a quad's four pieces
constexpr int64_t kChunkStride = int64_t{kForwardWarps} * kChunkInputs;

// Where the thread's rows g and g + 8 of each m-tile start in the flattened weight (row * in);
// -1 for a row past `out`.
struct ForwardRows {
    int64_t element[kForwardRowTiles][2];
};

// Codes of the thread's piece in those rows, with their absmax.
struct ForwardCodes {
    uint4 bits[kForwardRowTiles][2];
    float absmax[kForwardRowTiles][2];
};

// Rows past `out` and pieces past `in` read nothing and dequantize to zero.
template <bool DoubleQuant>
__device__ __forceinline__ ForwardCodes load_forward_codes(const Bnb4BitWeight& w, const ForwardRows& rows,
                                                           int64_t piece, int64_t in, int block_shift) {
    ForwardCodes codes;
#pragma unroll
    for (int m = 0; m < kForwardRowTiles; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            codes.bits[m][h] = make_uint4(0, 0, 0, 0);
            codes.absmax[m][h] = 0.0f;
            if (rows.element[m][h] >= 0 && piece < in) {
                const uint64_t element = static_cast<uint64_t>(rows.element[m][h] + piece);
                // Streaming: each code is read once; x keeps the cache.
                codes.bits[m][h] = __ldcs(reinterpret_cast<const uint4*>(w.packed + (element >> 1)));
                codes.absmax[m][h] = block_absmax<DoubleQuant>(w, element >> block_shift);
            }
        }
    return codes;
}

// x[t, piece .. piece + 32) of the thread's tokens t = 8 n + g: the B fragments of the piece's 8
// k-steps. Tokens past `tokens` and pieces past `in` are zero.
template <int TokenTiles>
__device__ __forceinline__ void load_forward_inputs(uint4 (&xs)[TokenTiles][4], const bf16* x, int g, int64_t piece,
                                                    int64_t tokens, int64_t in) {
#pragma unroll
    for (int n = 0; n < TokenTiles; ++n) {
        const int64_t t = n * kMmaN + g;
        const bool valid = t < tokens && piece < in;
        const uint4* src = reinterpret_cast<const uint4*>(x + t * in + piece);
#pragma unroll
        for (int v = 0; v < 4; ++v) xs[n][v] = valid ? src[v] : make_uint4(0, 0, 0, 0);
    }
}

// The piece's 8 k-steps. In k-step s = 2 word + half the thread gives inputs 4s .. 4s + 3 of
// its piece: bytes 2 half and 2 half + 1 of code word `word` (each byte's high nibble first).
// Fragment k positions 2c, 2c + 1 hold inputs 4s, 4s + 1 and 2c + 8, 2c + 9 hold 4s + 2,
// 4s + 3, in both operands; x's inputs 4s .. 4s + 3 are words 2 half and 2 half + 1 of its
// vector `word`.
template <int TokenTiles>
__device__ __forceinline__ void multiply_forward_piece(float (&acc)[kForwardRowTiles][TokenTiles][4],
                                                       const ForwardCodes& codes, const uint4 (&xs)[TokenTiles][4],
                                                       uint32_t table) {
#pragma unroll
    for (int word = 0; word < 4; ++word) {
        NibbleOffsets offsets[kForwardRowTiles][2];
#pragma unroll
        for (int m = 0; m < kForwardRowTiles; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h) offsets[m][h] = nibble_offsets(word_of(codes.bits[m][h], word));
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int first = 2 * half, second = 2 * half + 1;  // the step's two bytes in the word
#pragma unroll
            for (int m = 0; m < kForwardRowTiles; ++m) {
                uint32_t a[4];
#pragma unroll
                for (int h = 0; h < 2; ++h) {  // fragment rows g (h = 0) and g + 8 (h = 1)
                    const NibbleOffsets& o = offsets[m][h];
                    const float scale = codes.absmax[m][h];
                    a[h] = pack_bf16_pair(dequantized(table, o.high, first, scale),
                                          dequantized(table, o.low, first, scale));
                    a[2 + h] = pack_bf16_pair(dequantized(table, o.high, second, scale),
                                              dequantized(table, o.low, second, scale));
                }
#pragma unroll
                for (int n = 0; n < TokenTiles; ++n)
                    mma_bf16_m16n8k16(acc[m][n], a, word_of(xs[n][word], first), word_of(xs[n][word], second));
            }
        }
    }
}

// A block: 32 rows, all of `in`; warp w takes chunks w, w + 8, ... and the warps' sums are added
// in warp order.
template <int TokenTiles, bool DoubleQuant>
__global__ void __launch_bounds__(kForwardThreads, 2)
fused_dequant_gemm_forward_kernel(bf16* y, const bf16* x, const __grid_constant__ Bnb4BitWeight w,
                                  const __grid_constant__ CodeTable code_table, int64_t tokens, int64_t out, int64_t in,
                                  int block_shift, float beta) {
    __shared__ SharedCodeTable shared_table;
    // +1: the epilogue reads a row's tokens at a stride that would otherwise hit one bank.
    __shared__ float partial[kForwardWarps][kForwardBlockRows][kFusedDequantMaxTokens + 1];
    const uint32_t table = load_table(shared_table, code_table);

    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    const int g = lane / 4, c = lane % 4;
    const int64_t first_row = int64_t{blockIdx.x} * kForwardBlockRows;
    ForwardRows rows;
#pragma unroll
    for (int m = 0; m < kForwardRowTiles; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int64_t row = first_row + m * kMmaM + h * 8 + g;
            rows.element[m][h] = row < out ? row * in : -1;
        }

    float acc[kForwardRowTiles][TokenTiles][4] = {};
    int64_t piece = int64_t{warp} * kChunkInputs + c * kPieceInputs;
    ForwardCodes codes = load_forward_codes<DoubleQuant>(w, rows, piece, in, block_shift);
    for (int64_t chunk = int64_t{warp} * kChunkInputs; chunk < in; chunk += kChunkStride, piece += kChunkStride) {
        // The next chunk's codes are in flight while this one is multiplied.
        const ForwardCodes next = load_forward_codes<DoubleQuant>(w, rows, piece + kChunkStride, in, block_shift);
        uint4 xs[TokenTiles][4];
        load_forward_inputs<TokenTiles>(xs, x, g, piece, tokens, in);
        multiply_forward_piece<TokenTiles>(acc, codes, xs, table);
        codes = next;
    }

    // Accumulator e of tile (m, n): row m*16 + g (+8 for e >= 2), token n*8 + 2c (+1 for odd e).
#pragma unroll
    for (int m = 0; m < kForwardRowTiles; ++m)
#pragma unroll
        for (int n = 0; n < TokenTiles; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                partial[warp][m * kMmaM + g + 8 * (e / 2)][n * kMmaN + 2 * c + e % 2] = acc[m][n][e];
    __syncthreads();
    for (int i = threadIdx.x; i < kForwardBlockRows * tokens; i += kForwardThreads) {
        const int t = i / kForwardBlockRows, r = i % kForwardBlockRows;
        const int64_t row = first_row + r;
        if (row >= out) continue;
        float sum = 0.0f;
#pragma unroll
        for (int v = 0; v < kForwardWarps; ++v) sum += partial[v][r][t];
        bf16* dst = y + t * out + row;
        if (beta != 0.0f) sum += beta * to_float(*dst);
        *dst = from_float<bf16>(sum);
    }
}

// ---- backward: dx = dy W ----------------------------------------------------------------

constexpr int kBackwardWarps = 4;
constexpr int kBackwardThreads = kBackwardWarps * kWarpSize;
constexpr int kColumnsPerThread = 16;                        // one 8-byte load of codes a row
constexpr int kBackwardColumns = 8 * kColumnsPerThread;      // a block's columns: the 8 groups of a warp
constexpr int kBackwardColumnTiles = kColumnsPerThread / 2;  // m-tiles: one per byte of the load
constexpr int kRowsPerStep = kMmaK;                          // rows 4c .. 4c + 3 for each c
constexpr int64_t kStepStride = int64_t{kBackwardWarps} * kRowsPerStep;
// Blocks the splits of `out` aim at: a few per SM, enough loads in flight to stream memory.
constexpr int64_t kBackwardTargetBlocks = 512;

struct BackwardSplit {
    int64_t splits;
    int64_t rows_per_split;  // a multiple of kRowsPerStep
};

// Fixed by the shape alone (not the device), so the summation order is the same everywhere.
BackwardSplit backward_split(int64_t out, int64_t in) {
    const int64_t column_blocks = ceil_div(in, kBackwardColumns);
    const int64_t wanted = std::max<int64_t>(1, std::min(ceil_div(kBackwardTargetBlocks, column_blocks),
                                                         ceil_div(out, kStepStride)));
    const int64_t rows = ceil_div(ceil_div(out, wanted), kRowsPerStep) * kRowsPerStep;
    return {ceil_div(out, rows), rows};
}

// Codes of rows 4c .. 4c + 3 of a step, the thread's 16 columns, with their absmax.
struct BackwardCodes {
    uint2 bits[4];
    float absmax[4];
};

// Rows past the split's end and columns past `in` read nothing and dequantize to zero.
template <bool DoubleQuant>
__device__ __forceinline__ BackwardCodes load_backward_codes(const Bnb4BitWeight& w, int64_t first_row, int64_t row_end,
                                                             int64_t column, int64_t in, int block_shift) {
    BackwardCodes codes;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int64_t row = first_row + r;
        codes.bits[r] = make_uint2(0, 0);
        codes.absmax[r] = 0.0f;
        if (row < row_end && column < in) {
            const uint64_t element = static_cast<uint64_t>(row * in + column);
            codes.bits[r] = __ldcs(reinterpret_cast<const uint2*>(w.packed + (element >> 1)));
            codes.absmax[r] = block_absmax<DoubleQuant>(w, element >> block_shift);
        }
    }
    return codes;
}

// dy[t, first_row .. first_row + 4) for the thread's tokens t = 8 n + g, as the two B registers
// (rows 4c, 4c + 1 and 4c + 2, 4c + 3). dy's rows may have any alignment: element loads.
template <int TokenTiles>
__device__ __forceinline__ void load_backward_gradients(uint32_t (&b)[TokenTiles][2], const bf16* dy, int g,
                                                        int64_t first_row, int64_t row_end, int64_t tokens,
                                                        int64_t out) {
    const uint16_t* bits = reinterpret_cast<const uint16_t*>(dy);
#pragma unroll
    for (int n = 0; n < TokenTiles; ++n) {
        const int64_t t = n * kMmaN + g;
        uint32_t v[4];
#pragma unroll
        for (int r = 0; r < 4; ++r)
            v[r] = t < tokens && first_row + r < row_end ? bits[t * out + first_row + r] : 0u;
        b[n][0] = v[0] | (v[1] << 16);
        b[n][1] = v[2] | (v[3] << 16);
    }
}

// One 16-row step. m-tile j is byte j of each row's 8 bytes: its high nibble (column 2j of the
// thread's 16) is fragment row g, its low nibble (column 2j + 1) fragment row g + 8. Fragment k
// positions 2c, 2c + 1, 2c + 8, 2c + 9 are the step's rows 4c .. 4c + 3.
template <int TokenTiles>
__device__ __forceinline__ void multiply_backward_step(float (&acc)[kBackwardColumnTiles][TokenTiles][4],
                                                       const BackwardCodes& codes,
                                                       const uint32_t (&b)[TokenTiles][2], uint32_t table) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // bytes 0..3 (.x), then 4..7 (.y)
        NibbleOffsets offsets[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) offsets[r] = nibble_offsets(half == 0 ? codes.bits[r].x : codes.bits[r].y);
#pragma unroll
        for (int byte = 0; byte < 4; ++byte) {
            float high[4], low[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                high[r] = dequantized(table, offsets[r].high, byte, codes.absmax[r]);
                low[r] = dequantized(table, offsets[r].low, byte, codes.absmax[r]);
            }
            const uint32_t a[4] = {pack_bf16_pair(high[0], high[1]), pack_bf16_pair(low[0], low[1]),
                                   pack_bf16_pair(high[2], high[3]), pack_bf16_pair(low[2], low[3])};
#pragma unroll
            for (int n = 0; n < TokenTiles; ++n) mma_bf16_m16n8k16(acc[4 * half + byte][n], a, b[n][0], b[n][1]);
        }
    }
}

// A block: 128 columns, rows [split * rows_per_split, ...) of one split; warp w takes steps w,
// w + 4, ... and the warps' sums are added in warp order into partials[split, t, column].
template <int TokenTiles, bool DoubleQuant>
__global__ void __launch_bounds__(kBackwardThreads, 4)
fused_dequant_gemm_backward_kernel(float* partials, const bf16* dy, const __grid_constant__ Bnb4BitWeight w,
                                   const __grid_constant__ CodeTable code_table, int64_t tokens, int64_t out, int64_t in,
                                   int block_shift, int64_t rows_per_split) {
    __shared__ SharedCodeTable shared_table;
    __shared__ float partial[kBackwardWarps][kFusedDequantMaxTokens][kBackwardColumns + 1];
    const uint32_t table = load_table(shared_table, code_table);

    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    const int g = lane / 4, c = lane % 4;
    const int64_t first_column = int64_t{blockIdx.x} * kBackwardColumns;
    const int64_t column = first_column + g * kColumnsPerThread;
    const int64_t split_begin = int64_t{blockIdx.y} * rows_per_split;
    const int64_t row_end = std::min(out, split_begin + rows_per_split);

    float acc[kBackwardColumnTiles][TokenTiles][4] = {};
    int64_t rows = split_begin + int64_t{warp} * kRowsPerStep + 4 * c;  // the thread's first row of the step
    BackwardCodes codes = load_backward_codes<DoubleQuant>(w, rows, row_end, column, in, block_shift);
    for (int64_t step_row = split_begin + int64_t{warp} * kRowsPerStep; step_row < row_end;
         step_row += kStepStride, rows += kStepStride) {
        const BackwardCodes next =
            load_backward_codes<DoubleQuant>(w, rows + kStepStride, row_end, column, in, block_shift);
        uint32_t b[TokenTiles][2];
        load_backward_gradients<TokenTiles>(b, dy, g, rows, row_end, tokens, out);
        multiply_backward_step<TokenTiles>(acc, codes, b, table);
        codes = next;
    }

    // Accumulator e of tile (j, n): column 16g + 2j (+1 for e >= 2), token n*8 + 2c (+1 for odd e).
#pragma unroll
    for (int j = 0; j < kBackwardColumnTiles; ++j)
#pragma unroll
        for (int n = 0; n < TokenTiles; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                partial[warp][n * kMmaN + 2 * c + e % 2][g * kColumnsPerThread + 2 * j + e / 2] = acc[j][n][e];
    __syncthreads();
    float* split_partials = partials + int64_t{blockIdx.y} * tokens * in;
    for (int i = threadIdx.x; i < kBackwardColumns * tokens; i += kBackwardThreads) {
        const int t = i / kBackwardColumns, col = i % kBackwardColumns;
        if (first_column + col >= in) continue;
        float sum = 0.0f;
#pragma unroll
        for (int v = 0; v < kBackwardWarps; ++v) sum += partial[v][t][col];
        split_partials[t * in + first_column + col] = sum;
    }
}

// dx = sum over splits of the partials, in split order (+ beta dx), rounded once to bf16.
__global__ void sum_backward_partials_kernel(bf16* dx, const float* partials, int64_t splits, int64_t count,
                                             float beta) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
        float sum = 0.0f;
        for (int64_t s = 0; s < splits; ++s) sum += partials[s * count + i];
        if (beta != 0.0f) sum += beta * to_float(dx[i]);
        dx[i] = from_float<bf16>(sum);
    }
}

constexpr int kSumThreads = 256;

void require_fused_shape(const char* op, const Bnb4BitWeight& w, int64_t tokens, int64_t out, int64_t in) {
    require(fused_dequant_gemm_supported(w, tokens), AXL_ERR_UNSUPPORTED, op, ": ", quant_format_name(w.format),
            " weight [", w.rows, ", ", w.cols, "] in blocks of ", w.block_size, " at ", tokens,
            " tokens (fused_dequant_gemm_supported is false)");
    require(w.rows == out && w.cols == in, AXL_ERR_SHAPE, op, ": weight [", w.rows, ", ", w.cols, "] for out ", out,
            ", in ", in);
}

int block_shift_of(const Bnb4BitWeight& w) { return std::countr_zero(static_cast<uint64_t>(w.block_size)); }

template <int TokenTiles, bool DoubleQuant>
void launch_forward(bf16* y, const bf16* x, const Bnb4BitWeight& w, int64_t tokens, int64_t out, int64_t in, float beta,
                    cudaStream_t stream) {
    const unsigned blocks = static_cast<unsigned>(ceil_div(out, kForwardBlockRows));
    fused_dequant_gemm_forward_kernel<TokenTiles, DoubleQuant><<<blocks, kForwardThreads, 0, stream>>>(
        y, x, w, code_table_of(w.format), tokens, out, in, block_shift_of(w), beta);
    AXL_CUDA_CHECK_LAUNCH("fused_dequant_gemm_forward_kernel");
}

template <int TokenTiles, bool DoubleQuant>
void launch_backward(float* partials, const bf16* dy, const Bnb4BitWeight& w, int64_t tokens, int64_t out, int64_t in,
                     const BackwardSplit& split, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned>(ceil_div(in, kBackwardColumns)), static_cast<unsigned>(split.splits));
    fused_dequant_gemm_backward_kernel<TokenTiles, DoubleQuant><<<grid, kBackwardThreads, 0, stream>>>(
        partials, dy, w, code_table_of(w.format), tokens, out, in, block_shift_of(w), split.rows_per_split);
    AXL_CUDA_CHECK_LAUNCH("fused_dequant_gemm_backward_kernel");
}

}  // namespace

bool fused_dequant_gemm_supported(const Bnb4BitWeight& w, int64_t tokens) {
    const bool bnb_4bit = w.format == QuantFormat::NF4 || w.format == QuantFormat::FP4;
    const bool statistics = w.absmax != nullptr || (w.absmax_codes && w.nested_absmax && w.code_map);
    return bnb_4bit && statistics && w.packed != nullptr && reinterpret_cast<uintptr_t>(w.packed) % 16 == 0 &&
           tokens >= 1 && tokens <= kFusedDequantMaxTokens && w.rows > 0 && w.cols > 0 &&
           w.cols % kRowMultiple == 0 && w.block_size >= kBlockSizeMultiple &&
           std::has_single_bit(static_cast<uint64_t>(w.block_size)) && w.cols % w.block_size == 0;
}

void fused_dequant_gemm_forward(bf16* y, const bf16* x, const Bnb4BitWeight& w, int64_t tokens, int64_t out,
                                int64_t in, float beta, cudaStream_t stream) {
    require_fused_shape("fused_dequant_gemm_forward", w, tokens, out, in);
    require(reinterpret_cast<uintptr_t>(x) % 16 == 0, AXL_ERR_UNSUPPORTED,
            "fused_dequant_gemm_forward: x is not 16-byte aligned");
    const bool double_quant = w.absmax == nullptr;
    if (tokens <= kMmaN)
        double_quant ? launch_forward<1, true>(y, x, w, tokens, out, in, beta, stream)
                     : launch_forward<1, false>(y, x, w, tokens, out, in, beta, stream);
    else
        double_quant ? launch_forward<2, true>(y, x, w, tokens, out, in, beta, stream)
                     : launch_forward<2, false>(y, x, w, tokens, out, in, beta, stream);
}

size_t fused_dequant_gemm_backward_scratch_floats(int64_t tokens, int64_t out, int64_t in) {
    return static_cast<size_t>(backward_split(out, in).splits * tokens * in);
}

void fused_dequant_gemm_backward(bf16* dx, const bf16* dy, const Bnb4BitWeight& w, int64_t tokens, int64_t out,
                                 int64_t in, float beta, float* scratch, cudaStream_t stream) {
    require_fused_shape("fused_dequant_gemm_backward", w, tokens, out, in);
    require(scratch != nullptr, AXL_ERR_INTERNAL, "fused_dequant_gemm_backward: no scratch");
    const BackwardSplit split = backward_split(out, in);
    const bool double_quant = w.absmax == nullptr;
    if (tokens <= kMmaN)
        double_quant ? launch_backward<1, true>(scratch, dy, w, tokens, out, in, split, stream)
                     : launch_backward<1, false>(scratch, dy, w, tokens, out, in, split, stream);
    else
        double_quant ? launch_backward<2, true>(scratch, dy, w, tokens, out, in, split, stream)
                     : launch_backward<2, false>(scratch, dy, w, tokens, out, in, split, stream);
    const int64_t count = tokens * in;
    sum_backward_partials_kernel<<<grid_for(count, kSumThreads), kSumThreads, 0, stream>>>(dx, scratch, split.splits,
                                                                                          count, beta);
    AXL_CUDA_CHECK_LAUNCH("sum_backward_partials_kernel");
}

}  // namespace axl::cuda
