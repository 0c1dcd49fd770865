// Rotary position embedding in Hugging Face's "rotate_half" layout: element i of the first half
// pairs with element i + head_dim/2, and the pair is rotated by the angle pos * inv_freq[i].
#include <cmath>

#include "backend/cpu/ops.hpp"

namespace axl::cpu {

// The angle is rounded to fp32 before cos/sin, as transformers does (inv_freq and the position
// are both fp32 tensors there), so that large positions give the same rounded angles and the
// logits agree with the reference.
void rope_tables(float* cos, float* sin, const float* inv_freq, int64_t max_pos, int64_t half_dim) {
#pragma omp parallel for schedule(static)
    for (int64_t pos = 0; pos < max_pos; ++pos) {
        for (int64_t i = 0; i < half_dim; ++i) {
            const float angle = static_cast<float>(pos) * inv_freq[i];
            cos[pos * half_dim + i] = std::cos(angle);
            sin[pos * half_dim + i] = std::sin(angle);
        }
    }
}

namespace {

// Rotates every head of every token in place by its position's angle, or by the opposite angle
// when direction is -1 (the sine negated: exact, so both directions round as written below).
// out1 = x1 * cos - x2 * sin, out2 = x2 * cos + x1 * sin, each product rounded separately as in
// transformers' q * cos + rotate_half(q) * sin.
void rotate(float* x, const int32_t* positions, const float* cos, const float* sin, int64_t tokens, int64_t heads,
            int64_t head_dim, float direction) {
    const int64_t half = head_dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
        const float* cos_row = cos + static_cast<int64_t>(positions[t]) * half;
        const float* sin_row = sin + static_cast<int64_t>(positions[t]) * half;
        for (int64_t h = 0; h < heads; ++h) {
            float* head = x + (t * heads + h) * head_dim;
            for (int64_t i = 0; i < half; ++i) {
                const float x1 = head[i];
                const float x2 = head[i + half];
                const float s = direction * sin_row[i];
                head[i] = x1 * cos_row[i] - x2 * s;
                head[i + half] = x2 * cos_row[i] + x1 * s;
            }
        }
    }
}

}  // namespace

void rope_forward(float* x, const int32_t* positions, const float* cos, const float* sin,
                  int64_t tokens, int64_t heads, int64_t head_dim) {
    rotate(x, positions, cos, sin, tokens, heads, head_dim, 1.0f);
}

// The rotation is orthogonal, so its transpose is the rotation by the opposite angle.
void rope_backward(float* dx, const int32_t* positions, const float* cos, const float* sin,
                   int64_t tokens, int64_t heads, int64_t head_dim) {
    rotate(dx, positions, cos, sin, tokens, heads, head_dim, -1.0f);
}

}  // namespace axl::cpu
