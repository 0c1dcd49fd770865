// Rotary inverse frequencies of a model: theta^(-2i/d), adjusted by the checkpoint's rope
// scaling (linear or Llama-3 style), computed as transformers computes them.
#pragma once

#include <vector>

#include "model/model_config.hpp"

namespace axl {

std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim);

}  // namespace axl
