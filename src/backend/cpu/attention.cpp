// Causal scaled-dot-product attention with grouped-query heads and packed sequences, computed
// flash-attention style in tiles of kQueryBlock queries x kKeyBlock keys.
//
// Query t of a batch row sees key s when s <= t and both carry the same segment id. The forward
// pass walks the key tiles of a query block with an online softmax (running row max and sum,
// the output rescaled when the max grows) and saves the log-sum-exp of each row. The backward
// pass rebuilds every probability from it, p = exp(scale * q.k - lse), and with
// delta_t = dout_t . out_t:
//   dv_s += p * dout_t,   ds = p * (dout_t . v_s - delta_t),
//   dq_t += scale * ds * k_s,   dk_s += scale * ds * q_t.
// dq sums over keys, dk and dv over queries and over the query heads sharing a kv head, so the
// backward runs as two passes, one owning query blocks and one owning key blocks: every output
// row has a single writer, and neither pass needs atomics or per-thread copies.
//
// Every tile product goes through the packed SGEMM core (gemm.hpp), which reads the heads in
// place through strides; only the tiles (never a T x T matrix) live in per-thread buffers.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "backend/cpu/ops.hpp"
#include "backend/cpu/vector_clones.hpp"

namespace axl::cpu {
namespace {

// Tile sizes: a 64 x 64 tile of scores (16 KiB) and the matching rows of q, k, v stay in L1/L2,
// and the tile products are long enough for the packed SGEMM to run near its peak.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyBlock = 64;

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Where one head's rows live in a [B, T, heads, D] tensor, and views of them for the products.
struct HeadLayout {
    int64_t seq, heads, head_dim;

    int64_t offset(int64_t b, int64_t t, int64_t h) const { return ((b * seq + t) * heads + h) * head_dim; }
    int64_t stride() const { return heads * head_dim; }
    // Rows are positions t.., columns are head dimensions.
    MatrixView rows(const float* x, int64_t b, int64_t t, int64_t h) const { return {x + offset(b, t, h), stride(), 1}; }
    // The transpose: rows are head dimensions, columns are positions t...
    MatrixView columns(const float* x, int64_t b, int64_t t, int64_t h) const {
        return {x + offset(b, t, h), 1, stride()};
    }
};

// For every position, the first and last positions of its batch row with the same segment id.
// Query t then only looks at keys [first[t], t] and key s at queries [s, last[s]]; ids that come
// back after a different one are still honored because the mask inside a tile compares ids.
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
// where fp32 exp turns subnormal, and for x = -inf. Range reduction x = n ln2 + r with ln2
// split in two so that n ln2 is exact, a degree-7 Taylor polynomial for exp(r) on |r| <= ln2/2
// (truncation below 1e-8), and 2^n built in the exponent bits. Unlike std::exp, GCC vectorizes
// a loop that calls it.
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

inline bool visible(const int32_t* segment_row, int64_t t, int64_t s) {
    return s <= t && (segment_row == nullptr || segment_row[s] == segment_row[t]);
}

// The two tile loops below touch every score, so they are built per vector instruction set
// (vector_clones.hpp), exponentials included.

// One key tile of the forward online softmax. `scores` [rows, kKeyBlock] holds the scaled
// scores of queries t0.. against keys s0..; they become the unnormalized probabilities
// exp(score - row_max), with row_max/row_sum updated and the output rows accumulated so far
// rescaled to the new max.
AXL_VECTOR_CLONES
void online_softmax_tile(float* __restrict scores, int64_t rows, int64_t cols, int64_t t0, int64_t s0,
                         const int32_t* segment_row, float* __restrict row_max, float* __restrict row_sum,
                         float* __restrict out, int64_t out_stride, int64_t head_dim) {
    for (int64_t r = 0; r < rows; ++r) {
        float* p = scores + r * kKeyBlock;
        float tile_max = kMinusInfinity;
        for (int64_t j = 0; j < cols; ++j) {
            p[j] = visible(segment_row, t0 + r, s0 + j) ? p[j] : kMinusInfinity;
            tile_max = std::max(tile_max, p[j]);
        }
        const float new_max = std::max(row_max[r], tile_max);
        if (new_max == kMinusInfinity) {  // no key of this row seen yet
            for (int64_t j = 0; j < cols; ++j) p[j] = 0.0f;
            continue;
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < cols; ++j) {
            p[j] = exp_softmax(p[j] - new_max);
            sum += p[j];
        }
        const float correction = exp_softmax(row_max[r] - new_max);
        if (correction != 1.0f) {
            float* out_row = out + r * out_stride;
            for (int64_t d = 0; d < head_dim; ++d) out_row[d] *= correction;
        }
        row_sum[r] = row_sum[r] * correction + sum;
        row_max[r] = new_max;
    }
}

// One (query tile, key tile) of the backward: `p` [rows, kKeyBlock] holds the scaled scores
// and becomes the probabilities exp(score - lse_t); `ds` holds dout_t . v_s and becomes
// p * (dp - delta_t). lse and delta start at query t0.
AXL_VECTOR_CLONES
void probabilities_and_score_gradients(float* __restrict p, float* __restrict ds, int64_t rows, int64_t cols,
                                       int64_t t0, int64_t s0, const int32_t* segment_row,
                                       const float* __restrict lse, const float* __restrict delta) {
    for (int64_t r = 0; r < rows; ++r) {
        float* p_row = p + r * kKeyBlock;
        float* ds_row = ds + r * kKeyBlock;
        for (int64_t j = 0; j < cols; ++j) {
            p_row[j] = visible(segment_row, t0 + r, s0 + j) ? exp_softmax(p_row[j] - lse[r]) : 0.0f;
            ds_row[j] = p_row[j] * (ds_row[j] - delta[r]);
        }
    }
}

// Shapes and spans shared by the passes.
struct Problem {
    int64_t seq, heads, kv_heads;
    const int32_t* segment;
    SegmentSpans spans;

    int64_t kv_of(int64_t h) const { return h / (heads / kv_heads); }
    const int32_t* segment_row(int64_t b) const { return segment ? segment + b * seq : nullptr; }
    int64_t stat(int64_t b, int64_t h, int64_t t) const { return (b * heads + h) * seq + t; }
    // The earliest key any query of [t0, t0 + rows) sees, and the latest query any key of
    // [s0, s0 + rows) is seen by.
    int64_t first_key(int64_t b, int64_t t0, int64_t rows) const {
        const auto begin = spans.first.begin() + b * seq + t0;
        return *std::min_element(begin, begin + rows);
    }
    int64_t last_query(int64_t b, int64_t s0, int64_t rows) const {
        const auto begin = spans.last.begin() + b * seq + s0;
        return *std::max_element(begin, begin + rows);
    }
};

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* segment, int64_t batch, int64_t seq, int64_t heads,
                       int64_t kv_heads, int64_t head_dim, float scale) {
    const Problem problem{seq, heads, kv_heads, segment, segment_spans(segment, batch, seq)};
    const HeadLayout q_layout{seq, heads, head_dim}, kv_layout{seq, kv_heads, head_dim};
    const int64_t query_blocks = ceil_div(seq, kQueryBlock);

#pragma omp parallel
    {
        std::vector<float> scores(kQueryBlock * kKeyBlock);
        std::vector<float> row_max(kQueryBlock), row_sum(kQueryBlock);
        // Later query blocks see more keys, so blocks are dealt out one at a time.
#pragma omp for collapse(3) schedule(dynamic)
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t h = 0; h < heads; ++h) {
                for (int64_t block = 0; block < query_blocks; ++block) {
                    const int64_t kv = problem.kv_of(h);
                    const int64_t t0 = block * kQueryBlock;
                    const int64_t rows = std::min(kQueryBlock, seq - t0);
                    float* out_rows = out + q_layout.offset(b, t0, h);
                    for (int64_t r = 0; r < rows; ++r) std::fill_n(out_rows + r * q_layout.stride(), head_dim, 0.0f);
                    std::fill(row_max.begin(), row_max.end(), kMinusInfinity);
                    std::fill(row_sum.begin(), row_sum.end(), 0.0f);

                    for (int64_t s0 = problem.first_key(b, t0, rows); s0 < t0 + rows; s0 += kKeyBlock) {
                        const int64_t cols = std::min(kKeyBlock, t0 + rows - s0);
                        gemm_serial(scores.data(), kKeyBlock, q_layout.rows(q, b, t0, h),
                                    kv_layout.columns(k, b, s0, kv), rows, cols, head_dim, scale, 0.0f);
                        online_softmax_tile(scores.data(), rows, cols, t0, s0, problem.segment_row(b), row_max.data(),
                                            row_sum.data(), out_rows, q_layout.stride(), head_dim);
                        gemm_serial(out_rows, q_layout.stride(), {scores.data(), kKeyBlock, 1},
                                    kv_layout.rows(v, b, s0, kv), rows, head_dim, cols, 1.0f, 1.0f);
                    }
                    // Key t is always visible to query t, so every row_sum is >= 1.
                    for (int64_t r = 0; r < rows; ++r) {
                        const float inv_sum = 1.0f / row_sum[r];
                        for (int64_t d = 0; d < head_dim; ++d) out_rows[r * q_layout.stride() + d] *= inv_sum;
                        lse[problem.stat(b, h, t0 + r)] = row_max[r] + std::log(row_sum[r]);
                    }
                }
            }
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* q, const float* k, const float* v, const float* lse,
                        const int32_t* segment, int64_t batch, int64_t seq, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, float scale) {
    const Problem problem{seq, heads, kv_heads, segment, segment_spans(segment, batch, seq)};
    const HeadLayout q_layout{seq, heads, head_dim}, kv_layout{seq, kv_heads, head_dim};

    // delta_t = dout_t . out_t, laid out like lse.
    std::vector<float> delta(static_cast<std::size_t>(batch * heads * seq));
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
            for (int64_t t = 0; t < seq; ++t) {
                const int64_t row = q_layout.offset(b, t, h);
                double sum = 0.0;
                for (int64_t d = 0; d < head_dim; ++d) sum += static_cast<double>(dout[row + d]) * out[row + d];
                delta[static_cast<std::size_t>(problem.stat(b, h, t))] = static_cast<float>(sum);
            }
        }
    }

    const int64_t query_blocks = ceil_div(seq, kQueryBlock);
    const int64_t key_blocks = ceil_div(seq, kKeyBlock);
#pragma omp parallel
    {
        std::vector<float> p(kQueryBlock * kKeyBlock), ds(kQueryBlock * kKeyBlock);

        // Pass 1, dq: each query block sums over its visible key tiles.
#pragma omp for collapse(3) schedule(dynamic) nowait
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t h = 0; h < heads; ++h) {
                for (int64_t block = 0; block < query_blocks; ++block) {
                    const int64_t kv = problem.kv_of(h);
                    const int64_t t0 = block * kQueryBlock;
                    const int64_t rows = std::min(kQueryBlock, seq - t0);
                    const int64_t stat = problem.stat(b, h, t0);
                    float* dq_rows = dq + q_layout.offset(b, t0, h);
                    const int64_t first = problem.first_key(b, t0, rows);
                    for (int64_t s0 = first; s0 < t0 + rows; s0 += kKeyBlock) {
                        const int64_t cols = std::min(kKeyBlock, t0 + rows - s0);
                        gemm_serial(p.data(), kKeyBlock, q_layout.rows(q, b, t0, h), kv_layout.columns(k, b, s0, kv),
                                    rows, cols, head_dim, scale, 0.0f);
                        gemm_serial(ds.data(), kKeyBlock, q_layout.rows(dout, b, t0, h),
                                    kv_layout.columns(v, b, s0, kv), rows, cols, head_dim, 1.0f, 0.0f);
                        probabilities_and_score_gradients(p.data(), ds.data(), rows, cols, t0, s0,
                                                          problem.segment_row(b), lse + stat, delta.data() + stat);
                        gemm_serial(dq_rows, q_layout.stride(), {ds.data(), kKeyBlock, 1}, kv_layout.rows(k, b, s0, kv),
                                    rows, head_dim, cols, scale, s0 == first ? 0.0f : 1.0f);
                    }
                }
            }
        }

        // Pass 2, dk and dv: each key block sums over the query tiles (of every head of its
        // group) that see it. The tiles are the same query x key tiles as in pass 1, read
        // transposed by the products.
#pragma omp for collapse(3) schedule(dynamic)
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t kv = 0; kv < kv_heads; ++kv) {
                for (int64_t block = 0; block < key_blocks; ++block) {
                    const int64_t s0 = block * kKeyBlock;
                    const int64_t cols = std::min(kKeyBlock, seq - s0);
                    float* dk_rows = dk + kv_layout.offset(b, s0, kv);
                    float* dv_rows = dv + kv_layout.offset(b, s0, kv);
                    const int64_t last = problem.last_query(b, s0, cols);
                    bool first_product = true;
                    for (int64_t h = kv * (heads / kv_heads); h < (kv + 1) * (heads / kv_heads); ++h) {
                        for (int64_t t0 = s0; t0 <= last; t0 += kQueryBlock) {
                            const int64_t rows = std::min(kQueryBlock, last + 1 - t0);
                            const int64_t stat = problem.stat(b, h, t0);
                            gemm_serial(p.data(), kKeyBlock, q_layout.rows(q, b, t0, h),
                                        kv_layout.columns(k, b, s0, kv), rows, cols, head_dim, scale, 0.0f);
                            gemm_serial(ds.data(), kKeyBlock, q_layout.rows(dout, b, t0, h),
                                        kv_layout.columns(v, b, s0, kv), rows, cols, head_dim, 1.0f, 0.0f);
                            probabilities_and_score_gradients(p.data(), ds.data(), rows, cols, t0, s0,
                                                              problem.segment_row(b), lse + stat, delta.data() + stat);
                            const float beta = first_product ? 0.0f : 1.0f;
                            gemm_serial(dv_rows, kv_layout.stride(), {p.data(), 1, kKeyBlock},
                                        q_layout.rows(dout, b, t0, h), cols, head_dim, rows, 1.0f, beta);
                            gemm_serial(dk_rows, kv_layout.stride(), {ds.data(), 1, kKeyBlock},
                                        q_layout.rows(q, b, t0, h), cols, head_dim, rows, scale, beta);
                            first_product = false;
                        }
                    }
                }
            }
        }
    }
}

}  // namespace axl::cpu
