#include "model/rope_frequencies.hpp"

#include <cmath>

namespace axl {

namespace {

// Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band between
// low_freq_factor and high_freq_factor is blended smoothly (transformers'
// _compute_llama3_parameters).
float llama3_adjust(float inv_freq, const RopeConfig& rope) {
    const double pi = 3.14159265358979323846;
    double low_freq_wavelen = rope.original_max_position_embeddings / rope.low_freq_factor;
    double high_freq_wavelen = rope.original_max_position_embeddings / rope.high_freq_factor;
    double wavelen = 2.0 * pi / inv_freq;
    if (wavelen > low_freq_wavelen) return static_cast<float>(inv_freq / rope.factor);
    if (wavelen < high_freq_wavelen) return inv_freq;
    double smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) /
                    (rope.high_freq_factor - rope.low_freq_factor);
    double scaled = inv_freq / rope.factor;
    return static_cast<float>((1.0 - smooth) * scaled + smooth * inv_freq);
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim) {
    int half = head_dim / 2;
    std::vector<float> inv_freq(half);
    for (int i = 0; i < half; ++i) {
        // transformers: 1 / theta ** (arange(0, d, 2).float() / d), the power taken in float32.
        float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
        float value = 1.0f / std::pow(static_cast<float>(rope.theta), exponent);
        switch (rope.scaling) {
            case RopeScaling::None:
                break;
            case RopeScaling::Linear:
                value = static_cast<float>(value / rope.factor);
                break;
            case RopeScaling::Llama3:
                value = llama3_adjust(value, rope);
                break;
        }
        inv_freq[i] = value;
    }
    return inv_freq;
}

}  // namespace axl
