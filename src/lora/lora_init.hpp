// Making an adapter in two steps: lay out zeroed tensors for every linear the config targets
// (after validating the config), then fill them as PEFT initialises them. Loading a saved
// adapter uses only the first step.
#pragma once

#include <memory>

#include "lora/lora.hpp"

namespace axl {

// Error(AXL_ERR_INVALID_ARGUMENT) naming the field unless rank >= 1, alpha > 0 (finite),
// 0 <= dropout < 1, a known init, and at least one target name when !all_linear.
void validate_lora_config(const LoraConfig& config);

// An adapter with zeroed A, B (and magnitude with DoRA) and zeroed gradients for each
// targeted decoder linear. A target name matching no decoder linear: Error(AXL_ERR_NOT_FOUND).
std::shared_ptr<LoraAdapter> allocate_lora(const std::shared_ptr<const Model>& model,
                                           const LoraConfig& config);

// PEFT's initialisation, drawn from counter-based streams of (config.seed, module index):
// Default A ~ U(+-1/sqrt(in)) (kaiming_uniform, a=sqrt(5)), B = 0; Gaussian A ~ N(0, (1/r)^2)
// (PEFT's std = 1/r), B = 0; RandomB as Default with B ~ U(+-1/sqrt(r)). With DoRA the
// magnitude is then ||W + scaling B A||_row.
void initialize_lora(LoraAdapter& adapter);

}  // namespace axl
