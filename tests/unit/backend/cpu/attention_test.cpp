// Attention against a naive double-precision version that materializes the score matrix, over
// multi-head, grouped-query and multi-query layouts, packed rows and padding; the backward
// against finite differences and against the naive analytic gradient.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

struct Attention {
    int64_t batch, seq, heads, kv_heads, head_dim;
    std::vector<int32_t> segment;  // [batch, seq], or empty for one sequence per row
    std::vector<float> q, k, v;

    Attention(int64_t batch_, int64_t seq_, int64_t heads_, int64_t kv_heads_, int64_t head_dim_, uint32_t seed,
              std::vector<int32_t> segment_ = {})
        : batch(batch_), seq(seq_), heads(heads_), kv_heads(kv_heads_), head_dim(head_dim_),
          segment(std::move(segment_)),
          q(random_values(q_size(), seed, 0.1f, 1.5f)),
          k(random_values(kv_size(), seed + 1, 0.1f, 1.5f)),
          v(random_values(kv_size(), seed + 2)) {}

    std::size_t q_size() const { return static_cast<std::size_t>(batch * seq * heads * head_dim); }
    std::size_t kv_size() const { return static_cast<std::size_t>(batch * seq * kv_heads * head_dim); }
    std::size_t stat_size() const { return static_cast<std::size_t>(batch * heads * seq); }
    float scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }
    const int32_t* segment_ptr() const { return segment.empty() ? nullptr : segment.data(); }

    int64_t q_at(int64_t b, int64_t t, int64_t h) const { return ((b * seq + t) * heads + h) * head_dim; }
    int64_t kv_at(int64_t b, int64_t s, int64_t h) const {
        return ((b * seq + s) * kv_heads + h / (heads / kv_heads)) * head_dim;
    }
    bool visible(int64_t b, int64_t t, int64_t s) const {
        return s <= t && (segment.empty() || segment[b * seq + s] == segment[b * seq + t]);
    }

    void forward(std::vector<float>& out, std::vector<float>& lse) const {
        out = poisoned(q_size());
        lse = poisoned(stat_size());
        axl::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), segment_ptr(), batch, seq,
                                    heads, kv_heads, head_dim, scale());
    }

    struct Gradients {
        std::vector<float> dq, dk, dv;
    };
    Gradients backward(const std::vector<float>& dout) const {
        std::vector<float> out, lse;
        forward(out, lse);
        Gradients g{poisoned(q_size()), poisoned(kv_size()), poisoned(kv_size())};
        axl::cpu::attention_backward(g.dq.data(), g.dk.data(), g.dv.data(), dout.data(), out.data(), q.data(), k.data(),
                                     v.data(), lse.data(), segment_ptr(), batch, seq, heads, kv_heads, head_dim, scale());
        return g;
    }
};

// The textbook computation in double: for each (row, head) the full probability matrix.
struct Reference {
    std::vector<double> out, lse, dq, dk, dv;
};

Reference naive_attention(const Attention& a, const std::vector<float>& dout) {
    const int64_t T = a.seq, D = a.head_dim;
    Reference r{std::vector<double>(a.q_size()), std::vector<double>(a.stat_size()), std::vector<double>(a.q_size()),
                std::vector<double>(a.kv_size()), std::vector<double>(a.kv_size())};
    std::vector<double> p(T * T), dp(T * T);
    for (int64_t b = 0; b < a.batch; ++b) {
        for (int64_t h = 0; h < a.heads; ++h) {
            auto dot = [&](const std::vector<float>& x, int64_t xi, const std::vector<float>& y, int64_t yi) {
                double sum = 0.0;
                for (int64_t d = 0; d < D; ++d) sum += static_cast<double>(x[xi + d]) * y[yi + d];
                return sum;
            };
            for (int64_t t = 0; t < T; ++t) {
                double max_score = -std::numeric_limits<double>::infinity();
                for (int64_t s = 0; s < T; ++s) {
                    p[t * T + s] = a.visible(b, t, s) ? a.scale() * dot(a.q, a.q_at(b, t, h), a.k, a.kv_at(b, s, h))
                                                      : -std::numeric_limits<double>::infinity();
                    max_score = std::max(max_score, p[t * T + s]);
                }
                double sum = 0.0;
                for (int64_t s = 0; s < T; ++s) sum += std::exp(p[t * T + s] - max_score);
                r.lse[(b * a.heads + h) * T + t] = max_score + std::log(sum);
                for (int64_t s = 0; s < T; ++s) p[t * T + s] = std::exp(p[t * T + s] - max_score) / sum;
                for (int64_t d = 0; d < D; ++d) {
                    double o = 0.0;
                    for (int64_t s = 0; s < T; ++s) o += p[t * T + s] * a.v[a.kv_at(b, s, h) + d];
                    r.out[a.q_at(b, t, h) + d] = o;
                }
            }
            // dP = dout V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale dS K, dK = scale dS^T Q, dV = P^T dout.
            for (int64_t t = 0; t < T; ++t) {
                double row = 0.0;
                for (int64_t s = 0; s < T; ++s) {
                    dp[t * T + s] = dot(dout, a.q_at(b, t, h), a.v, a.kv_at(b, s, h));
                    row += p[t * T + s] * dp[t * T + s];
                }
                for (int64_t s = 0; s < T; ++s) {
                    const double ds = p[t * T + s] * (dp[t * T + s] - row) * a.scale();
                    for (int64_t d = 0; d < D; ++d) {
                        r.dq[a.q_at(b, t, h) + d] += ds * a.k[a.kv_at(b, s, h) + d];
                        r.dk[a.kv_at(b, s, h) + d] += ds * a.q[a.q_at(b, t, h) + d];
                        r.dv[a.kv_at(b, s, h) + d] += p[t * T + s] * dout[a.q_at(b, t, h) + d];
                    }
                }
            }
        }
    }
    return r;
}

void check_against_naive(const Attention& a, const std::string& what) {
    const std::vector<float> dout = random_values(a.q_size(), 77);
    const Reference expected = naive_attention(a, dout);
    std::vector<float> out, lse;
    a.forward(out, lse);
    // fp32 dot products over head_dim and sums over up to seq keys.
    expect_close(out, expected.out, 2e-6, 2e-5, what + " out");
    expect_close(lse, expected.lse, 2e-6, 2e-6, what + " lse");
    const Attention::Gradients g = a.backward(dout);
    expect_close(g.dq, expected.dq, 1e-5, 1e-4, what + " dq");
    expect_close(g.dk, expected.dk, 1e-5, 1e-4, what + " dk");
    expect_close(g.dv, expected.dv, 1e-5, 1e-4, what + " dv");
}

TEST(CpuAttention, MultiHeadMatchesNaive) { check_against_naive(Attention(2, 9, 3, 3, 4, 1), "mha"); }

TEST(CpuAttention, GroupedQueryMatchesNaive) { check_against_naive(Attention(2, 11, 6, 2, 12, 2), "gqa"); }

TEST(CpuAttention, MultiQueryMatchesNaive) { check_against_naive(Attention(1, 10, 4, 1, 8, 3), "mqa"); }

// Several 64 x 64 tiles per head, with segment boundaries inside tiles and across tile edges,
// so the online softmax rescales across key tiles and skips keys of earlier segments.
TEST(CpuAttention, MultiTileRowsMatchNaive) {
    const int64_t seq = 200;
    std::vector<int32_t> segment(2 * seq);
    for (int64_t t = 0; t < seq; ++t) {
        segment[t] = t < 70 ? 0 : t < 71 ? 1 : t < 130 ? 2 : 3;
        segment[seq + t] = 5;
    }
    check_against_naive(Attention(2, seq, 4, 2, 32, 4, segment), "segmented");
    check_against_naive(Attention(1, seq, 2, 1, 16, 14), "unsegmented");
}

// Segment ids need not be contiguous: query t sees every earlier key with its id.
TEST(CpuAttention, InterleavedSegmentsMatchNaive) {
    check_against_naive(Attention(1, 8, 2, 1, 4, 5, {0, 0, 1, 1, 0, 0, 2, 1}), "interleaved");
    // Segment 0 resumes inside the second query tile, whose first row belongs to segment 1: the
    // tile must still reach back to keys of the first tile.
    std::vector<int32_t> segment(140, 0);
    std::fill(segment.begin() + 64, segment.begin() + 70, 1);
    check_against_naive(Attention(1, 140, 2, 2, 8, 15, segment), "resumed across tiles");
}

// A packed row behaves exactly like its sequences run one by one.
TEST(CpuAttention, PackedRowEqualsSeparateSequences) {
    const std::vector<int64_t> lengths = {3, 5, 1, 4};
    const std::vector<int32_t> ids = {7, 2, 9, 4};
    const int64_t heads = 4, kv_heads = 2, head_dim = 8;
    std::vector<int32_t> segment;
    for (std::size_t i = 0; i < lengths.size(); ++i) segment.insert(segment.end(), lengths[i], ids[i]);
    const int64_t seq = static_cast<int64_t>(segment.size());
    const Attention packed(1, seq, heads, kv_heads, head_dim, 6, segment);
    const std::vector<float> dout = random_values(packed.q_size(), 8);
    std::vector<float> out, lse;
    packed.forward(out, lse);
    const Attention::Gradients grads = packed.backward(dout);

    int64_t start = 0;
    for (int64_t length : lengths) {
        Attention alone(1, length, heads, kv_heads, head_dim, 0);
        auto slice = [&](const std::vector<float>& x, int64_t width) {
            return std::vector<float>(x.begin() + start * width, x.begin() + (start + length) * width);
        };
        alone.q = slice(packed.q, heads * head_dim);
        alone.k = slice(packed.k, kv_heads * head_dim);
        alone.v = slice(packed.v, kv_heads * head_dim);
        std::vector<float> alone_out, alone_lse;
        alone.forward(alone_out, alone_lse);
        const Attention::Gradients alone_grads = alone.backward(slice(dout, heads * head_dim));
        const std::string what = "sequence at " + std::to_string(start);
        expect_close(slice(out, heads * head_dim), alone_out, 1e-6, 1e-6, what + " out");
        for (int64_t h = 0; h < heads; ++h) {
            const std::vector<float> packed_lse(lse.begin() + h * seq + start, lse.begin() + h * seq + start + length);
            const std::vector<float> alone_row(alone_lse.begin() + h * length, alone_lse.begin() + (h + 1) * length);
            expect_close(packed_lse, alone_row, 1e-6, 1e-6, what + " lse");
        }
        expect_close(slice(grads.dq, heads * head_dim), alone_grads.dq, 1e-6, 1e-5, what + " dq");
        expect_close(slice(grads.dk, kv_heads * head_dim), alone_grads.dk, 1e-6, 1e-5, what + " dk");
        expect_close(slice(grads.dv, kv_heads * head_dim), alone_grads.dv, 1e-6, 1e-5, what + " dv");
        start += length;
    }
}

// Grouped-query attention is multi-head attention with each kv head repeated for its group;
// the kv gradients are then the sums over the repeats.
TEST(CpuAttention, GroupedQueryEqualsRepeatedKvHeads) {
    const int64_t seq = 6, heads = 4, kv_heads = 2, head_dim = 4, group = heads / kv_heads;
    const Attention grouped(1, seq, heads, kv_heads, head_dim, 9);
    Attention repeated(1, seq, heads, heads, head_dim, 0);
    for (int64_t t = 0; t < seq; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
            for (int64_t d = 0; d < head_dim; ++d) {
                repeated.k[(t * heads + h) * head_dim + d] = grouped.k[(t * kv_heads + h / group) * head_dim + d];
                repeated.v[(t * heads + h) * head_dim + d] = grouped.v[(t * kv_heads + h / group) * head_dim + d];
            }
        }
    }
    repeated.q = grouped.q;
    std::vector<float> out_grouped, lse_grouped, out_repeated, lse_repeated;
    grouped.forward(out_grouped, lse_grouped);
    repeated.forward(out_repeated, lse_repeated);
    expect_close(out_grouped, out_repeated, 0.0, 0.0, "out");
    expect_close(lse_grouped, lse_repeated, 0.0, 0.0, "lse");

    const std::vector<float> dout = random_values(grouped.q_size(), 10);
    const Attention::Gradients g = grouped.backward(dout);
    const Attention::Gradients r = repeated.backward(dout);
    expect_close(g.dq, r.dq, 0.0, 0.0, "dq");
    std::vector<double> dk_summed(grouped.kv_size(), 0.0), dv_summed(grouped.kv_size(), 0.0);
    for (int64_t t = 0; t < seq; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
            for (int64_t d = 0; d < head_dim; ++d) {
                dk_summed[(t * kv_heads + h / group) * head_dim + d] += r.dk[(t * heads + h) * head_dim + d];
                dv_summed[(t * kv_heads + h / group) * head_dim + d] += r.dv[(t * heads + h) * head_dim + d];
            }
        }
    }
    expect_close(g.dk, dk_summed, 1e-6, 1e-6, "dk");
    expect_close(g.dv, dv_summed, 1e-6, 1e-6, "dv");
}

TEST(CpuAttention, BackwardMatchesFiniteDifferences) {
    Attention a(2, 7, 4, 2, 4, 11, {0, 0, 0, 1, 1, 1, 1, 3, 3, 3, 3, 3, 8, 8});
    const std::vector<float> dout = random_values(a.q_size(), 12);
    const Attention::Gradients g = a.backward(dout);
    auto loss = [&] {
        std::vector<float> out, lse;
        a.forward(out, lse);
        return weighted_sum(out, dout);
    };
    expect_close(g.dq, numeric_gradient(a.q, 1e-2f, loss), 2e-4, 2e-3, "dq");
    expect_close(g.dk, numeric_gradient(a.k, 1e-2f, loss), 2e-4, 2e-3, "dk");
    expect_close(g.dv, numeric_gradient(a.v, 1e-2f, loss), 2e-4, 2e-3, "dv");
}

// Padding at the end of a row as its own segment leaves the real tokens untouched.
TEST(CpuAttention, TrailingPaddingSegmentDoesNotLeak) {
    const int64_t heads = 2, kv_heads = 2, head_dim = 4;
    const Attention padded(1, 6, heads, kv_heads, head_dim, 13, {1, 1, 1, 1, -1, -1});
    Attention real(1, 4, heads, kv_heads, head_dim, 0);
    real.q.assign(padded.q.begin(), padded.q.begin() + real.q_size());
    real.k.assign(padded.k.begin(), padded.k.begin() + real.kv_size());
    real.v.assign(padded.v.begin(), padded.v.begin() + real.kv_size());
    std::vector<float> out_padded, lse_padded, out_real, lse_real;
    padded.forward(out_padded, lse_padded);
    real.forward(out_real, lse_real);
    expect_close(std::vector<float>(out_padded.begin(), out_padded.begin() + real.q_size()), out_real, 1e-7, 1e-6,
                 "out");
    for (float x : out_padded) EXPECT_FALSE(std::isnan(x));
}

}  // namespace
}  // namespace axl::cpu_test
