// DoRA's column norm (PEFT's DoraLinearLayer.get_weight_norm): for each output row o,
// ||W[o,:] + scaling * (B A)[o,:]||_2. It initialises the magnitude vector and, detached from
// the gradient as in the DoRA paper (section 4.3) and PEFT, divides it in every forward.
#pragma once

#include <cstdint>
#include <memory>

#include "core/allocator.hpp"

namespace axl {

// norm [out] from w [out,in], a [r,in], b [out,r], all f32. Scratch of at most a block of rows
// of B A comes from `allocator`, so huge layers need no [out,in] temporary.
void dora_weight_norm(float* norm, const float* w, const float* a, const float* b, int64_t out,
                      int64_t in, int64_t rank, float scaling,
                      const std::shared_ptr<HostAllocator>& allocator);

}  // namespace axl
