// Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2): the norm is
// taken over all gradients together, and if it exceeds max_norm every gradient is scaled by
// max_norm / (norm + 1e-6).
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace axl {

// The L2 norm of all f32 tensors taken together, accumulated in double.
double global_norm(const std::vector<Tensor>& grads);

// Returns the norm before clipping. max_norm <= 0 only measures (clipping off, as axl's
// max_grad_norm = 0 means). A non-finite norm leaves the gradients untouched: the caller is
// expected to discard the step (torch would scale them all to NaN).
double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm);

}  // namespace axl
