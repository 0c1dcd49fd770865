// The CUDA backend: every op the decoder needs, as host launchers with the same names and the
// same argument order as their CPU twins in backend/cpu/ops.hpp, plus the stream they are
// queued on (last). Kernels live in kernels/, one op family per .cu file. Launchers validate
// the shapes they rely on (Error(AXL_ERR_UNSUPPORTED) or AXL_ERR_SHAPE naming the op) and check
// the launch; they never synchronize. Pointers are device pointers.
//
// Precision, per op (bf16 = __nv_bfloat16; arithmetic inside the kernels is f32 unless stated):
//   - activations of the elementwise/row ops (embedding, rmsnorm, rope, swiglu, add, scale,
//     bias) and of attention, and logits: f32 or bf16 overloads. bf16 halves the bytes these
//     memory-bound ops move and is what the bf16 GEMMs read and write; f32 matches the CPU
//     reference. Biases, their gradients and sums of squares (gradient clipping) are f32/f64.
//   - statistics saved for backward (rmsnorm rstd, attention lse), norm weights, rotary
//     tables, per-row losses: f32 always, as in the CPU reference (small, precision-critical).
//   - AdamW: f32 parameters, gradients and moments (the trainable LoRA weights are f32
//     masters); the same operation order as optim/adamw.cpp, so results are bit-identical.
//   - dequantize: codes as stored, f32 block statistics, f32 or bf16 output (bf16 feeds the
//     GEMM; f32 is bit-exact with the CPU reference).
//   - matmul: bf16 (or f32) operands, f32 accumulation, f32 or bf16 output (blas_lt.hpp).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/blas_lt.hpp"
#include "quant/quant_format.hpp"

namespace axl::cuda {

using bf16 = __nv_bfloat16;

// ---- matmul (src/backend/cuda/matmul.cpp, through cuBLASLt) -------------------------------
// cpu::matmul's contract (row-major, op(X) = X or X^T, beta == 0 ignores C), on blas's stream.
void matmul(BlasLt& blas, float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, float alpha, float beta);
void matmul(BlasLt& blas, float* c, const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, float alpha, float beta);
void matmul(BlasLt& blas, bf16* c, const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, float alpha, float beta);
// d = alpha op(a) op(b) + beta c, with c read in the GEMM's epilogue (c may alias d): a
// residual or accumulated term added for free.
void matmul_add(BlasLt& blas, bf16* d, const bf16* a, const bf16* b, const bf16* c, int64_t m, int64_t n, int64_t k,
                bool trans_a, bool trans_b, float alpha, float beta);
// matmul over row-strided operands (lda/ldb/ldc: row strides in elements, >= the rows' length),
// for column slices of wider matrices (a group's LoRA products); c_in as in matmul_add.
void matmul_strided(BlasLt& blas, bf16* c, int64_t ldc, const bf16* a, int64_t lda, const bf16* b, int64_t ldb,
                    int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta,
                    const bf16* c_in = nullptr);
void matmul_strided(BlasLt& blas, float* c, int64_t ldc, const bf16* a, int64_t lda, const bf16* b, int64_t ldb,
                    int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta);

// ---- kernels/embedding.cu -----------------------------------------------------------------
void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t n_tokens,
                       int64_t hidden, cudaStream_t stream);
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, int64_t n_tokens,
                       int64_t hidden, cudaStream_t stream);

// ---- kernels/rmsnorm.cu -------------------------------------------------------------------
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t rows,
                     int64_t cols, float eps, cudaStream_t stream);
void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const float* weight, int64_t rows,
                     int64_t cols, float eps, cudaStream_t stream);
// dx written; dweight accumulated (+=) when non-null, deterministically (no atomics).
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream);
void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const float* weight,
                      const float* rstd, int64_t rows, int64_t cols, cudaStream_t stream);
// The backward fused with the residual branch's gradient: dx = (the gradient through the norm)
// + residual_grad, summed in f32 and rounded once. residual_grad [rows, cols] may be null (then
// this is rmsnorm_backward without dweight) and is not dx. No dweight: the step's norm weights
// are frozen.
void rmsnorm_backward_add(float* dx, const float* dout, const float* x, const float* weight, const float* rstd,
                          const float* residual_grad, int64_t rows, int64_t cols, cudaStream_t stream);
void rmsnorm_backward_add(bf16* dx, const bf16* dout, const bf16* x, const float* weight, const float* rstd,
                          const bf16* residual_grad, int64_t rows, int64_t cols, cudaStream_t stream);
// The bf16 forward with the output's rows out_stride >= cols apart, and the backward with
// dout's rows dout_stride apart (the columns between are neither written nor read): a norm
// whose output rows carry the LoRA inputs x A^T of the projections reading it (the LoRA product
// folded into the base GEMM, device_projection.cpp).
void rmsnorm_forward_strided(bf16* out, int64_t out_stride, float* rstd, const bf16* x, const float* weight,
                             int64_t rows, int64_t cols, float eps, cudaStream_t stream);
void rmsnorm_backward_add_strided(bf16* dx, const bf16* dout, int64_t dout_stride, const bf16* x,
                                  const float* weight, const float* rstd, const bf16* residual_grad, int64_t rows,
                                  int64_t cols, cudaStream_t stream);

// ---- kernels/rope.cu ----------------------------------------------------------------------
void rope_tables(float* cos, float* sin, const float* inv_freq, int64_t max_pos, int64_t half_dim,
                 cudaStream_t stream);
void rope_forward(float* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                  int64_t heads, int64_t head_dim, cudaStream_t stream);
void rope_forward(bf16* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                  int64_t heads, int64_t head_dim, cudaStream_t stream);
void rope_backward(float* dx, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                   int64_t heads, int64_t head_dim, cudaStream_t stream);
void rope_backward(bf16* dx, const int32_t* positions, const float* cos, const float* sin, int64_t tokens,
                   int64_t heads, int64_t head_dim, cudaStream_t stream);

// ---- kernels/attention.cu -----------------------------------------------------------------
// cpu::attention_forward/backward's contract (causal, GQA, packed segments, lse [B,H,T] f32),
// tiled flash-attention style: no T x T matrix exists anywhere. Segment ids must form
// contiguous runs within a row (prepare_batch checks this). head_dim 64 or 128.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* segment, int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                       int64_t head_dim, float scale, cudaStream_t stream);
void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                       const int32_t* segment, int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                       int64_t head_dim, float scale, cudaStream_t stream);
// dq, dk, dv written. `delta` is caller-provided scratch of attention_backward_scratch_floats
// (16-byte aligned for the tensor cores): delta rows, then an f32 dq sum. bf16 on the tensor
// cores runs one pass over (key tile, query tile) pairs and adds dq with f32 atomics, so dq's
// last bits vary from run to run; dk, dv, and every output of the f32 path (a dq pass and a
// dk/dv pass, as the CPU twin) have one writer per row and are deterministic.
size_t attention_backward_scratch_floats(int64_t batch, int64_t seq, int64_t heads);
// Which tensor-core kernels bf16 attention takes. 0 (the default): Hopper's warpgroup products
// (wgmma) with an sm_90a build on a 9.x device, else mma.sync. 1: mma.sync. The kernel checks
// set it to compare both with the CPU; a process-wide setting for tests, not for concurrent
// steps.
void set_attention_kernel_variant(int tensor_core_variant);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* q,
                        const float* k, const float* v, const float* lse, float* delta, const int32_t* segment,
                        int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        float scale, cudaStream_t stream);
void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const bf16* q,
                        const bf16* k, const bf16* v, const float* lse, float* delta, const int32_t* segment,
                        int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        float scale, cudaStream_t stream);

// ---- kernels/swiglu.cu --------------------------------------------------------------------
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream);
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t n, cudaStream_t stream);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     cudaStream_t stream);
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t n,
                     cudaStream_t stream);

// ---- kernels/elementwise.cu ---------------------------------------------------------------
void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);  // y += x
void add_inplace(bf16* y, const bf16* x, int64_t n, cudaStream_t stream);
void scale_inplace(float* y, float s, int64_t n, cudaStream_t stream);      // y *= s
void scale_inplace(bf16* y, float s, int64_t n, cudaStream_t stream);
// *result (device) = sum of x^2 in double, deterministic; `scratch` holds
// sum_squares_scratch_doubles() doubles.
size_t sum_squares_scratch_doubles();
void sum_squares(double* result, const float* x, int64_t n, double* scratch, cudaStream_t stream);
// y [rows, cols] += bias [cols] per row; the backward accumulates (+=) the column sums of dout
// into dbias, deterministically.
void add_bias_forward(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
void add_bias_forward(bf16* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
void add_bias_backward(float* dbias, const float* dout, int64_t rows, int64_t cols, cudaStream_t stream);
void add_bias_backward(float* dbias, const bf16* dout, int64_t rows, int64_t cols, cudaStream_t stream);

// ---- kernels/cross_entropy.cu -------------------------------------------------------------
// cpu::cross_entropy_forward_backward over one chunk of logits [rows, vocab], except that the
// loss stays on the device: row_loss[r] is row r's loss (0 for an ignored target), to be summed
// there or copied back once per step. dlogits may be null or alias logits. With matmul this is
// the fused linear + cross-entropy (linear_cross_entropy.cpp): logits exist one chunk at a time.
void cross_entropy_forward_backward(float* row_loss, float* dlogits, const float* logits, const int32_t* targets,
                                    int64_t rows, int64_t vocab, float grad_scale, cudaStream_t stream);
void cross_entropy_forward_backward(float* row_loss, bf16* dlogits, const bf16* logits, const int32_t* targets,
                                    int64_t rows, int64_t vocab, float grad_scale, cudaStream_t stream);
// f32 logits (exact loss), bf16 gradient for the bf16 GEMM that follows; not in place.
void cross_entropy_forward_backward(float* row_loss, bf16* dlogits, const float* logits, const int32_t* targets,
                                    int64_t rows, int64_t vocab, float grad_scale, cudaStream_t stream);

// ---- src/backend/cuda/linear_cross_entropy.cpp ---------------------------------------------
// Loss of the LM head without the [tokens x vocab] logits: for chunks of `chunk_rows` rows,
// logits = hidden_chunk . weight^T (cuBLASLt, bf16 in, f32 accumulation, bf16 out, as PyTorch's
// bf16 head), cross-entropy on them in f32 arithmetic, and when dhidden is non-null
// dhidden_chunk = dlogits . weight (dlogits bf16, written over the logits). hidden [rows, dim]
// bf16, weight [vocab, dim] bf16 (frozen: no weight gradient), row_loss [rows] f32;
// logits_scratch holds chunk_rows * vocab bf16 values.
void linear_cross_entropy(BlasLt& blas, float* row_loss, bf16* dhidden, const bf16* hidden, const bf16* weight,
                          const int32_t* targets, int64_t rows, int64_t dim, int64_t vocab, float grad_scale,
                          bf16* logits_scratch, int64_t chunk_rows);

// ---- kernels/lora_columns.cu --------------------------------------------------------------
// Columns [first_col, first_col + width) of each of the `rows` rows (ld apart) of a base weight
// with room for the LoRA B columns: b [rows, rank] at columns b_col .. b_col + rank of them,
// zeros in the others (the places of the other projections of a group).
void lora_weight_columns(bf16* weight, int64_t ld, int64_t rows, int64_t first_col, int64_t width, const bf16* b,
                         int64_t rank, int64_t b_col, cudaStream_t stream);

// ---- kernels/convert.cu -------------------------------------------------------------------
// out[i] = bf16(in[i]), round to nearest even (the f32 LoRA masters to their GEMM copies).
void convert(bf16* out, const float* in, int64_t n, cudaStream_t stream);

// ---- kernels/adamw.cu ---------------------------------------------------------------------
// optim/adamw.cpp's step on many tensors in few launches. The f32 coefficients are those the
// CPU step derives (in double) from the config, the step count t and lr.
struct AdamWCoefficients {
    float decay;                  // 1 - lr * weight_decay
    float one_minus_beta1;
    float beta2;
    float one_minus_beta2;
    float neg_step_size;          // -lr / (1 - beta1^t)
    float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
    float eps;
    bool decays;                  // weight_decay != 0
};
AdamWCoefficients adamw_coefficients(double beta1, double beta2, double eps, double weight_decay, int64_t step,
                                     double lr);
struct AdamWTensor {
    float* param;
    const float* grad;
    float* exp_avg;
    float* exp_avg_sq;
    int64_t numel;
};
// `tensors` is a host array of device pointers.
void adamw_step(const AdamWTensor* tensors, size_t count, const AdamWCoefficients& coefficients,
                cudaStream_t stream);

// ---- kernels/dequantize.cu ----------------------------------------------------------------
// A bitsandbytes 4-bit weight (NF4 or FP4) on the device, as QuantizedTensor holds it: codes two
// a byte, element 2i in the HIGH nibble; either absmax (one f32 per block) or the double-quant
// statistics (absmax[b] = code_map[absmax_codes[b]] * nested_absmax[b / 256] + offset).
struct Bnb4BitWeight {
    QuantFormat format = QuantFormat::NF4;
    int64_t rows = 0, cols = 0, block_size = 0;
    const uint8_t* packed = nullptr;
    const float* absmax = nullptr;  // null when double quantized
    const uint8_t* absmax_codes = nullptr;
    const float* nested_absmax = nullptr;
    const float* code_map = nullptr;
    float offset = 0.0f;
};
// quant::dequantize_bnb_4bit_rows's contract: rows [row_begin, row_end) into `out`, bit-exact
// with the CPU (f32 out), or the CPU's f32 value rounded once to bf16.
void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, float* out,
                              cudaStream_t stream);
void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, bf16* out,
                              cudaStream_t stream);
// The same with the output's rows out_ld >= cols elements apart (the columns between are not
// touched): the base weight with room for the LoRA B columns (lora_columns below).
void dequantize_bnb_4bit_rows(const Bnb4BitWeight& w, int64_t row_begin, int64_t row_end, bf16* out, int64_t out_ld,
                              cudaStream_t stream);

}  // namespace axl::cuda
