// SwiGLU gating of the MLP: out = silu(gate) * up, silu(g) = g * sigmoid(g).
#include <cmath>

#include "backend/cpu/ops.hpp"

namespace axl::cpu {

// silu is computed as g / (1 + exp(-g)), PyTorch's formula, which also stays finite for large
// |g|: exp(-g) overflows to inf and the quotient goes to -0 as it should.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

// d silu/dg = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        const float sigmoid = 1.0f / (1.0f + std::exp(-g));
        const float d = dout[i];
        dgate[i] = d * up[i] * sigmoid * (1.0f + g * (1.0f - sigmoid));
        dup[i] = d * g * sigmoid;
    }
}

}  // namespace axl::cpu
