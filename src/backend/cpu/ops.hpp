// The CPU reference backend: every op of the decoder, forward and backward, in fp32.
// One op = one pair of functions with the same names as their CUDA twins in kernels/.
// All tensors are contiguous, row-major fp32 unless stated. Backward functions ACCUMULATE
// (+=) into gradients of parameters and write (=) gradients of activations, as stated per op.
// Loops are parallel (OpenMP) over independent rows/heads and cache-friendly.
#pragma once

#include <cstdint>

namespace axl::cpu {

// ---- matmul.cpp ---------------------------------------------------------------------------
// C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T; row-major, leading dims given
// by the shapes: A is [M,K] (or [K,M] if trans_a), B is [K,N] (or [N,K] if trans_b).
// beta == 0 ignores C's old contents (NaN-safe).
void matmul(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, float alpha, float beta);

// ---- embedding.cpp ------------------------------------------------------------------------
// out[t,:] = table[tokens[t],:] for t < n_tokens; table is [vocab, hidden].
void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t n_tokens,
                       int64_t hidden);

// ---- rmsnorm.cpp --------------------------------------------------------------------------
// out[r,:] = x[r,:] * rstd[r] * weight, rstd[r] = 1/sqrt(mean(x[r,:]^2) + eps). Saves rstd [rows].
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* weight, int64_t rows,
                     int64_t cols, float eps);
// dx = (written); dweight += (accumulated; may be null when the weight is frozen).
void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x,
                      const float* weight, const float* rstd, int64_t rows, int64_t cols);

// ---- rope.cpp -----------------------------------------------------------------------------
// Rotary tables for positions 0..max_pos-1: cos/sin [max_pos, head_dim/2], from inv_freq
// [head_dim/2] (computed by the model from theta and scaling, see rope_inv_freq).
void rope_tables(float* cos, float* sin, const float* inv_freq, int64_t max_pos, int64_t half_dim);
// In place on x [tokens, heads, head_dim], Hugging Face "rotate_half" layout (first half pairs
// with second half). positions[t] indexes the tables.
void rope_forward(float* x, const int32_t* positions, const float* cos, const float* sin,
                  int64_t tokens, int64_t heads, int64_t head_dim);
// In place on dx: the transpose of the rotation (rotation by -angle).
void rope_backward(float* dx, const int32_t* positions, const float* cos, const float* sin,
                   int64_t tokens, int64_t heads, int64_t head_dim);

// ---- attention.cpp ------------------------------------------------------------------------
// Causal scaled-dot-product attention with GQA and packed sequences, per batch row b:
// q [B,T,H,D], k/v [B,T,KV,D], out [B,T,H,D]; head h uses kv head h / (H/KV).
// Query t attends to keys s <= t with segment[b,s] == segment[b,t] (segment may be null:
// one sequence per row). Saves lse [B,H,T] (log-sum-exp of the scaled scores) for backward.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* segment, int64_t batch, int64_t seq, int64_t heads,
                       int64_t kv_heads, int64_t head_dim, float scale);
// dq, dk, dv written (not accumulated). Recomputes probabilities from lse.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* q, const float* k, const float* v, const float* lse,
                        const int32_t* segment, int64_t batch, int64_t seq, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, float scale);

// ---- swiglu.cpp ---------------------------------------------------------------------------
// out = silu(gate) * up, elementwise over n values.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
// dgate, dup written.
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t n);

// ---- cross_entropy.cpp --------------------------------------------------------------------
// Per-row softmax cross-entropy of logits [rows, vocab] against targets [rows]; a target < 0
// (ignore index) contributes nothing. Returns the SUM of losses over counted rows.
// If dlogits is non-null it is written with grad_scale * (softmax - onehot) (zero rows for
// ignored targets); it may alias logits.
double cross_entropy_forward_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      int64_t rows, int64_t vocab, float grad_scale);

// ---- elementwise.cpp ----------------------------------------------------------------------
void add_inplace(float* y, const float* x, int64_t n);            // y += x
void scale_inplace(float* y, float s, int64_t n);                 // y *= s
double sum_squares(const float* x, int64_t n);                    // in double
// Adds bias [cols] to every row of y [rows, cols]; the backward sums dout over rows into dbias.
void add_bias_forward(float* y, const float* bias, int64_t rows, int64_t cols);
void add_bias_backward(float* dbias, const float* dout, int64_t rows, int64_t cols);

}  // namespace axl::cpu
