// Causal scaled-dot-product attention with grouped-query heads and packed sequences.
//
// Query t of a batch row sees key s when s <= t and both carry the same segment id. The forward
// pass works one query row at a time with a row buffer of scores (never a T x T matrix) and
// saves the log-sum-exp of each row; the backward pass rebuilds every probability from it as
// flash attention does, p = exp(scale * q.k - lse), with
//   dv_s += p * dout_t,   dp = dout_t . v_s,   ds = p * (dp - delta_t),   delta_t = dout_t . out_t,
//   dq_t += scale * ds * k_s,   dk_s += scale * ds * q_t.
// dq is summed over keys and dk, dv over queries (and over the query heads sharing a kv head),
// so the backward runs as two passes, one owning query rows and one owning key rows: each
// output row then has a single writer, and neither needs atomics nor per-thread copies.
//
// Speed: the dot products of one row with a run of positions are taken against a transposed
// [D, T] copy of the other operand, which makes the inner loop unit-stride over positions (no
// horizontal sum per pair), and the exponentials go through a polynomial GCC can vectorize.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <vector>

#include "backend/cpu/ops.hpp"

namespace axl::cpu {
namespace {

// Where the rows of one (batch row, head) live in the [B, T, heads, D] layouts and in their
// transposed [B, heads, D, T] copies.
struct Layout {
    int64_t seq, heads, kv_heads, head_dim;

    int64_t group() const { return heads / kv_heads; }
    int64_t q_row(int64_t b, int64_t t, int64_t h) const { return ((b * seq + t) * heads + h) * head_dim; }
    int64_t q_stride() const { return heads * head_dim; }
    int64_t kv_row(int64_t b, int64_t s, int64_t kv) const { return ((b * seq + s) * kv_heads + kv) * head_dim; }
    int64_t kv_stride() const { return kv_heads * head_dim; }
    int64_t q_transposed(int64_t b, int64_t h) const { return (b * heads + h) * head_dim * seq; }
    int64_t kv_transposed(int64_t b, int64_t kv) const { return (b * kv_heads + kv) * head_dim * seq; }
    int64_t stat(int64_t b, int64_t h, int64_t t) const { return (b * heads + h) * seq + t; }
};

// [B, T, heads, D] -> [B, heads, D, T].
std::vector<float> transpose_heads(const float* x, int64_t batch, int64_t seq, int64_t heads,
                                   int64_t head_dim) {
    std::vector<float> out(static_cast<std::size_t>(batch * seq * heads * head_dim));
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
            float* dst = out.data() + (b * heads + h) * head_dim * seq;
            for (int64_t d = 0; d < head_dim; ++d) {
                for (int64_t t = 0; t < seq; ++t) dst[d * seq + t] = x[((b * seq + t) * heads + h) * head_dim + d];
            }
        }
    }
    return out;
}

// For every position, the first and last positions of its batch row with the same segment id.
// Query t then only looks at keys [first[t], t] and key s at queries [s, last[s]]; ids that come
// back after a different one are still honored because the mask inside the span compares ids.
struct SegmentSpans {
    std::vector<int64_t> first, last;
};

SegmentSpans segment_spans(const int32_t* segment, int64_t batch, int64_t seq) {
    SegmentSpans spans{std::vector<int64_t>(static_cast<std::size_t>(batch * seq), 0),
                       std::vector<int64_t>(static_cast<std::size_t>(batch * seq), seq - 1)};
    if (segment == nullptr) return spans;
    for (int64_t b = 0; b < batch; ++b) {
        const int32_t* ids = segment + b * seq;
        std::unordered_map<int32_t, int64_t> first_seen, last_seen;
        for (int64_t t = 0; t < seq; ++t) first_seen.try_emplace(ids[t], t);
        for (int64_t t = seq - 1; t >= 0; --t) last_seen.try_emplace(ids[t], t);
        for (int64_t t = 0; t < seq; ++t) {
            spans.first[static_cast<std::size_t>(b * seq + t)] = first_seen[ids[t]];
            spans.last[static_cast<std::size_t>(b * seq + t)] = last_seen[ids[t]];
        }
    }
    return spans;
}

// exp(x) for the arguments of softmax, x <= 0 (up to rounding), within 2 ulp; 0 below -87,
// where fp32 exp turns subnormal. Range reduction x = n ln2 + r with ln2 split in two so n ln2
// is exact, a degree-7 Taylor polynomial for exp(r) on |r| <= ln2/2 (truncation below 1e-8), and
// 2^n built in the exponent bits. Unlike std::exp, GCC can vectorize a loop that calls it.
inline float exp_softmax(float x) {
    constexpr float kLog2e = 1.44269504088896341f;
    constexpr float kLn2Hi = 0.693359375f;  // few mantissa bits, so n * kLn2Hi is exact
    constexpr float kLn2Lo = -2.12194440e-4f;
    constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    constexpr float kMinArg = -87.0f;
    const float clamped = std::max(x, kMinArg);
    const float n = (clamped * kLog2e + kRoundMagic) - kRoundMagic;
    const float r = (clamped - n * kLn2Hi) - n * kLn2Lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float two_to_n = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
    return x < kMinArg ? 0.0f : p * two_to_n;
}

// The functions below run once per row and loop over positions; the clones let GCC vectorize
// them with the widest instructions the machine has, and fp-contract lets it fuse multiply-adds.
#define AXL_ATTENTION_KERNEL \
    __attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("fp-contract=fast")))

// dots[i] = x . (column i of a [head_dim, ld] matrix), for i < n.
inline void dot_positions(float* __restrict dots, const float* __restrict x,
                          const float* __restrict transposed, int64_t ld, int64_t n, int64_t head_dim) {
    for (int64_t i = 0; i < n; ++i) dots[i] = 0.0f;
    for (int64_t d = 0; d < head_dim; ++d) {
        const float xd = x[d];
        const float* column = transposed + d * ld;
        for (int64_t i = 0; i < n; ++i) dots[i] += xd * column[i];
    }
}

inline void axpy(float* __restrict y, float a, const float* __restrict x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Out row t of one head; returns its log-sum-exp. `keys_t` is this kv head's [D, T] key copy,
// `values` its value at position 0; `scores` holds seq floats.
AXL_ATTENTION_KERNEL
float attend_query(float* __restrict out, float* __restrict scores, const float* __restrict query,
                   const float* keys_t, const float* values, int64_t kv_stride,
                   const int32_t* segment_row, int64_t first, int64_t t, int64_t seq,
                   int64_t head_dim, float scale) {
    const int64_t n = t - first + 1;
    dot_positions(scores, query, keys_t + first, seq, n, head_dim);
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {
        const bool visible = segment_row == nullptr || segment_row[first + i] == segment_row[t];
        scores[i] = visible ? scores[i] * scale : -std::numeric_limits<float>::infinity();
        max_score = std::max(max_score, scores[i]);
    }
    // Key t is always visible, so max_score is finite and sum >= 1.
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) {
        scores[i] = exp_softmax(scores[i] - max_score);
        sum += scores[i];
    }
    for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        if (scores[i] != 0.0f) axpy(out, scores[i], values + (first + i) * kv_stride, head_dim);
    }
    const float inv_sum = 1.0f / sum;
    for (int64_t d = 0; d < head_dim; ++d) out[d] *= inv_sum;
    return max_score + std::log(sum);
}

// dq row t of one head. `p` and `ds` hold seq floats each.
AXL_ATTENTION_KERNEL
void query_gradient(float* __restrict dq, float* __restrict p, float* __restrict ds,
                    const float* query, const float* dout, const float* keys_t, const float* values_t,
                    const float* keys, int64_t kv_stride, const int32_t* segment_row, int64_t first,
                    int64_t t, int64_t seq, int64_t head_dim, float scale, float lse, float delta) {
    const int64_t n = t - first + 1;
    dot_positions(p, query, keys_t + first, seq, n, head_dim);
    dot_positions(ds, dout, values_t + first, seq, n, head_dim);
    for (int64_t i = 0; i < n; ++i) {
        const bool visible = segment_row == nullptr || segment_row[first + i] == segment_row[t];
        const float prob = visible ? exp_softmax(p[i] * scale - lse) : 0.0f;
        ds[i] = prob * (ds[i] - delta);
    }
    for (int64_t d = 0; d < head_dim; ++d) dq[d] = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        if (ds[i] != 0.0f) axpy(dq, ds[i], keys + (first + i) * kv_stride, head_dim);
    }
    for (int64_t d = 0; d < head_dim; ++d) dq[d] *= scale;
}

// Adds to dk, dv row s the contributions of one query head, whose queries and output gradients
// are given from position 0 both as [T, D] rows (`queries`, `douts`, q_stride apart) and as
// [D, T] copies. `p` and `ds` hold seq floats each.
AXL_ATTENTION_KERNEL
void key_value_gradient(float* __restrict dk, float* __restrict dv, float* __restrict p,
                        float* __restrict ds, const float* key, const float* value,
                        const float* queries_t, const float* douts_t, const float* queries,
                        const float* douts, int64_t q_stride, const float* lse, const float* delta,
                        const int32_t* segment_row, int64_t s, int64_t last, int64_t seq,
                        int64_t head_dim, float scale) {
    const int64_t n = last - s + 1;
    dot_positions(p, key, queries_t + s, seq, n, head_dim);
    dot_positions(ds, value, douts_t + s, seq, n, head_dim);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t t = s + i;
        const bool visible = segment_row == nullptr || segment_row[t] == segment_row[s];
        p[i] = visible ? exp_softmax(p[i] * scale - lse[t]) : 0.0f;
        ds[i] = p[i] * (ds[i] - delta[t]);
    }
    for (int64_t i = 0; i < n; ++i) {
        if (p[i] == 0.0f) continue;
        axpy(dv, p[i], douts + (s + i) * q_stride, head_dim);
        axpy(dk, ds[i] * scale, queries + (s + i) * q_stride, head_dim);
    }
}

#undef AXL_ATTENTION_KERNEL

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* segment, int64_t batch, int64_t seq, int64_t heads,
                       int64_t kv_heads, int64_t head_dim, float scale) {
    const Layout layout{seq, heads, kv_heads, head_dim};
    const SegmentSpans spans = segment_spans(segment, batch, seq);
    const std::vector<float> k_t = transpose_heads(k, batch, seq, kv_heads, head_dim);
#pragma omp parallel
    {
        std::vector<float> scores(static_cast<std::size_t>(seq));
        // Rows get longer with t, so they are dealt out dynamically in short runs.
#pragma omp for collapse(3) schedule(dynamic, 16)
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t h = 0; h < heads; ++h) {
                for (int64_t t = 0; t < seq; ++t) {
                    const int64_t kv = h / layout.group();
                    const int64_t row = layout.q_row(b, t, h);
                    lse[layout.stat(b, h, t)] = attend_query(
                        out + row, scores.data(), q + row, k_t.data() + layout.kv_transposed(b, kv),
                        v + layout.kv_row(b, 0, kv), layout.kv_stride(), segment ? segment + b * seq : nullptr,
                        spans.first[static_cast<std::size_t>(b * seq + t)], t, seq, head_dim, scale);
                }
            }
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* q, const float* k, const float* v, const float* lse,
                        const int32_t* segment, int64_t batch, int64_t seq, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, float scale) {
    const Layout layout{seq, heads, kv_heads, head_dim};
    const SegmentSpans spans = segment_spans(segment, batch, seq);
    const std::vector<float> q_t = transpose_heads(q, batch, seq, heads, head_dim);
    const std::vector<float> dout_t = transpose_heads(dout, batch, seq, heads, head_dim);
    const std::vector<float> k_t = transpose_heads(k, batch, seq, kv_heads, head_dim);
    const std::vector<float> v_t = transpose_heads(v, batch, seq, kv_heads, head_dim);

    // delta_t = dout_t . out_t, laid out like lse.
    std::vector<float> delta(static_cast<std::size_t>(batch * heads * seq));
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
            for (int64_t t = 0; t < seq; ++t) {
                const int64_t row = layout.q_row(b, t, h);
                double sum = 0.0;
                for (int64_t d = 0; d < head_dim; ++d) sum += static_cast<double>(dout[row + d]) * out[row + d];
                delta[static_cast<std::size_t>(layout.stat(b, h, t))] = static_cast<float>(sum);
            }
        }
    }

#pragma omp parallel
    {
        std::vector<float> p(static_cast<std::size_t>(seq));
        std::vector<float> ds(static_cast<std::size_t>(seq));

#pragma omp for collapse(3) schedule(dynamic, 16)
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t h = 0; h < heads; ++h) {
                for (int64_t t = 0; t < seq; ++t) {
                    const int64_t kv = h / layout.group();
                    const int64_t row = layout.q_row(b, t, h);
                    const int64_t stat = layout.stat(b, h, t);
                    query_gradient(dq + row, p.data(), ds.data(), q + row, dout + row,
                                   k_t.data() + layout.kv_transposed(b, kv), v_t.data() + layout.kv_transposed(b, kv),
                                   k + layout.kv_row(b, 0, kv), layout.kv_stride(),
                                   segment ? segment + b * seq : nullptr,
                                   spans.first[static_cast<std::size_t>(b * seq + t)], t, seq, head_dim, scale,
                                   lse[stat], delta[static_cast<std::size_t>(stat)]);
                }
            }
        }

#pragma omp for collapse(3) schedule(dynamic, 16)
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t kv = 0; kv < kv_heads; ++kv) {
                for (int64_t s = 0; s < seq; ++s) {
                    const int64_t row = layout.kv_row(b, s, kv);
                    std::fill(dk + row, dk + row + head_dim, 0.0f);
                    std::fill(dv + row, dv + row + head_dim, 0.0f);
                    for (int64_t h = kv * layout.group(); h < (kv + 1) * layout.group(); ++h) {
                        key_value_gradient(dk + row, dv + row, p.data(), ds.data(), k + row, v + row,
                                           q_t.data() + layout.q_transposed(b, h),
                                           dout_t.data() + layout.q_transposed(b, h), q + layout.q_row(b, 0, h),
                                           dout + layout.q_row(b, 0, h), layout.q_stride(),
                                           lse + layout.stat(b, h, 0), delta.data() + layout.stat(b, h, 0),
                                           segment ? segment + b * seq : nullptr, s,
                                           spans.last[static_cast<std::size_t>(b * seq + s)], seq, head_dim,
                                           scale);
                    }
                }
            }
        }
    }
}

}  // namespace axl::cpu
