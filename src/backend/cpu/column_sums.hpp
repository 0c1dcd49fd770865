// Deterministic column sums for parameter gradients (a bias, a norm weight):
// out[i] += sum over rows r of term(r, i), accumulated in double and rounded once.
// Split by columns rather than rows so that each thread owns its slice of `out`: the sums need
// no atomics and come out the same for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>

namespace axl::cpu {

// Columns per task: wide enough that each row's slice is a few cache lines, narrow enough that
// the column range splits over the threads.
constexpr int64_t kColumnSumChunk = 256;

template <typename Term>
void accumulate_column_sums(float* out, int64_t rows, int64_t cols, Term term) {
    const int64_t chunks = (cols + kColumnSumChunk - 1) / kColumnSumChunk;
#pragma omp parallel for schedule(static)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        const int64_t begin = chunk * kColumnSumChunk;
        const int64_t end = std::min(cols, begin + kColumnSumChunk);
        double sums[kColumnSumChunk] = {};
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = begin; i < end; ++i) sums[i - begin] += term(r, i);
        for (int64_t i = begin; i < end; ++i) out[i] += static_cast<float>(sums[i - begin]);
    }
}

}  // namespace axl::cpu
