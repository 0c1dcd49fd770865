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

}  // namespace axl::cuda
