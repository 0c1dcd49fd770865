// The projections (linears) of a decoder layer on the CUDA backend: the frozen base product
// (its weight dequantized right before, or the fused dequantize + GEMM for few tokens) plus the
// LoRA path x A^T, then (x A^T) B^T added into the output; B A is never formed.
//
// Sums ride GEMM epilogues (beta = 1) instead of passes of their own: forward writes the LoRA
// product (plus the residual, if any) first and the base GEMM adds onto it; backward writes the
// LoRA input gradient first and the base GEMMs accumulate onto it.
//
// Projections that read the same input (q k v; gate up) form a group when the adapter trains
// them all with the same rank (DeviceLoraGroup): their A's sit back to back, so x A^T of the
// group is one GEMM ([N, count*r], x read once), and so are dA += du^T x and dx (+)= du A in
// backward.
//
// Folded LoRA (project_forward_folded): where the input is made by a norm that can leave room
// in its rows (q k v, gate up) and the base weights are dequantized anyway, the LoRA product
// rides the base GEMM as extra K columns: y = [x | s x A^T] [W | B]^T, one GEMM that writes y
// once, where the plain path writes y, then reads and writes it again. In backward the same
// weight gives [dy W | dy B] in one GEMM, so dy B costs no pass over dy of its own.
#pragma once

#include <cstdint>

#include "backend/cuda/device_layer.hpp"

namespace axl::cuda {

// ys[k] = projection first_slot + k of x, for k < count (count 1: one projection; 2 or 3: a
// group starting at kSlotGate or kSlotQ), plus `residual` (count 1 only) and the bias. Fills
// what backward needs into `saved` when given.
void project_forward(const DevicePass& pass, int layer_index, int first_slot, int count, const bf16* x,
                     bf16* const* ys, DeviceLayerSaved* saved, const bf16* residual = nullptr);

// Only the LoRA input u = x A^T of a projection outside a group, saved for backward: what a
// recomputed forward needs of a projection whose output nobody reads (the layer's last).
void lora_input_forward(const DevicePass& pass, int layer_index, int slot, const bf16* x, DeviceLayerSaved* saved);

// dx (+)= the gradient through those projections, given dys[k] per projection (accumulate:
// add to dx instead of overwriting it); their LoRA gradients accumulate.
void project_backward(const DevicePass& pass, int layer_index, int first_slot, int count,
                      const DeviceLayerSaved& saved, const bf16* x, const bf16* const* dys, bf16* dx,
                      bool accumulate);

// ---- folded LoRA --------------------------------------------------------------------------

// Extra columns the input rows of projections first_slot .. first_slot + count - 1 (q k v, or
// gate up) carry when their LoRA path is folded into the base GEMMs: the summed ranks of their
// group (DeviceLoraGroup), or 0 where the path is not folded. Folded takes a group, base weights
// dequantized on the device by a dequantizer that can write rows with room (NF4, FP4), the
// GEMM path (not the fused one for few tokens), and in and width multiples of 8 (16-byte rows).
int64_t lora_fold_width(const DevicePass& pass, int layer_index, int first_slot, int count);

// Elements of the one dequantized-weight scratch of a pass: the largest packed linear's
// out x (in + its fold width); 0 when no linear is packed.
int64_t weight_scratch_elements(const DevicePass& pass);

// project_forward for a folded set: x [N, in + width] (width = lora_fold_width, > 0) holds the
// input in its first `in` columns; this writes s x A^T into the other `width`, then each
// ys[k] = x [W_k | B_k]^T + bias. x stays what backward reads (saved with the layer).
void project_forward_folded(const DevicePass& pass, int layer_index, int first_slot, int count, bf16* x,
                            bf16* const* ys, DeviceLayerSaved* saved);

// project_backward for a folded set: dx [N, in + width] is written (its first `in` columns are
// the input gradient; the others hold dy B, scratch) from the x that project_forward_folded
// filled.
void project_backward_folded(const DevicePass& pass, int layer_index, int first_slot, int count,
                             const DeviceLayerSaved& saved, const bf16* x, const bf16* const* dys, bf16* dx);

}  // namespace axl::cuda
