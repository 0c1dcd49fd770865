// SGEMM for the CPU backend: C = alpha * op(A) op(B) + beta * C.
//
// The blocked algorithm of Goto and BLIS. K is cut into slices of kKc and N into blocks of kNc.
// For each (N block, K slice) the slice of B is packed once into kNr-wide column panels that all
// threads share; each thread packs kMc-row blocks of A into kMr-tall row panels and multiplies
// every (A panel, B panel) pair with a micro-kernel that keeps a kMr x kNr tile of C in
// registers. Packing turns every access of the inner loop into a unit-stride stream whatever
// the transposes are, and pads the edges with zeros so the micro-kernel has a single shape.
// gemm_serial (gemm.hpp) runs the same loops on one thread, for ops that call it on small tiles
// from inside their own parallel loops.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>

#include <omp.h>

#include "backend/cpu/gemm.hpp"
#include "backend/cpu/ops.hpp"
#include "backend/cpu/vector_clones.hpp"

namespace axl::cpu {
namespace {

// Register tile. kNr = 16 floats is two AVX2 vectors (one AVX-512 vector), so the 6 x 16 tile
// takes 12 of the 16 ymm registers and leaves room for the B row and the broadcast A value.
constexpr int64_t kMr = 6;
constexpr int64_t kNr = 16;
// Cache blocking. A kMr x kKc panel of A plus a kKc x kNr panel of B (6 + 16 KiB) stay in L1;
// a kMc x kKc block of A (96 KiB) stays in L2 while every B panel streams past it; the packed
// kKc x kNc slice of B (4 MiB) is shared by the threads through the last-level cache.
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 16 * kMr;
constexpr int64_t kNc = 256 * kNr;
// Below this many multiply-adds, starting the thread team costs more than it saves.
constexpr int64_t kParallelMinWork = int64_t{1} << 15;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packing buffers are kept per thread across calls, so a training step does not page-fault
// fresh megabytes into existence on every matmul.
class PackBuffer {
public:
    float* reserve(int64_t floats) {
        if (floats > capacity_) {
            const auto bytes = static_cast<std::size_t>(ceil_div(floats * int64_t{sizeof(float)}, 64) * 64);
            data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
            if (!data_) throw std::bad_alloc();
            capacity_ = floats;
        }
        return data_.get();
    }

private:
    struct Free {
        void operator()(float* p) const { std::free(p); }
    };
    std::unique_ptr<float, Free> data_;
    int64_t capacity_ = 0;
};

thread_local PackBuffer a_buffer;
thread_local PackBuffer b_buffer;

// Packs op(A)[row0 : row0+rows, depth0 : depth0+depth] as kMr-row panels, each stored depth-major
// (the kMr values of one k are adjacent); rows past the end are zero. When the kMr values of a
// k are adjacent in memory too (A transposed), a full panel is a plain copy that vectorizes.
void pack_a_block(float* dst, const MatrixView& a, int64_t row0, int64_t rows, int64_t depth0,
                  int64_t depth) {
    for (int64_t panel = 0; panel < ceil_div(rows, kMr); ++panel) {
        float* out = dst + panel * depth * kMr;
        const int64_t first_row = row0 + panel * kMr;
        const int64_t panel_rows = std::min(kMr, rows - panel * kMr);
        if (panel_rows == kMr && a.row_stride == 1) {
            for (int64_t p = 0; p < depth; ++p) {
                const float* src = a.address(first_row, depth0 + p);
                for (int64_t r = 0; r < kMr; ++r) out[p * kMr + r] = src[r];
            }
            continue;
        }
        for (int64_t p = 0; p < depth; ++p) {
            for (int64_t r = 0; r < kMr; ++r) out[p * kMr + r] = r < panel_rows ? a.at(first_row + r, depth0 + p) : 0.0f;
        }
    }
}

// Packs one kNr-column panel of op(B)[depth0 : depth0+depth, col0 : col0+cols], stored
// depth-major (the kNr values of one k are adjacent); columns past the end are zero. When B's
// rows are contiguous (B not transposed), a full panel is a plain copy that vectorizes.
void pack_b_panel(float* dst, const MatrixView& b, int64_t depth0, int64_t depth, int64_t col0,
                  int64_t cols) {
    if (cols == kNr && b.col_stride == 1) {
        for (int64_t p = 0; p < depth; ++p) {
            const float* src = b.address(depth0 + p, col0);
            for (int64_t j = 0; j < kNr; ++j) dst[p * kNr + j] = src[j];
        }
        return;
    }
    for (int64_t p = 0; p < depth; ++p) {
        for (int64_t j = 0; j < kNr; ++j) dst[p * kNr + j] = j < cols ? b.at(depth0 + p, col0 + j) : 0.0f;
    }
}

// tile = A panel x B panel over `depth`. Written as plain loops that GCC turns into one
// broadcast and kNr / (vector width) fused multiply-adds per row of the tile.
AXL_VECTOR_CLONES
void multiply_panels(float* __restrict tile, const float* __restrict a_panel,
                     const float* __restrict b_panel, int64_t depth) {
    float acc[kMr * kNr] = {};
    for (int64_t p = 0; p < depth; ++p) {
        const float* a = a_panel + p * kMr;
        const float* b = b_panel + p * kNr;
#pragma GCC unroll 6
        for (int64_t i = 0; i < kMr; ++i) {
#pragma omp simd
            for (int64_t j = 0; j < kNr; ++j) acc[i * kNr + j] += a[i] * b[j];
        }
    }
    for (int64_t i = 0; i < kMr * kNr; ++i) tile[i] = acc[i];
}

// C[rows, cols] (leading dimension ldc) = alpha * tile + beta * C, reading C only if beta != 0
// so that garbage (NaN) in an output buffer never leaks into the result.
void store_tile(float* c, int64_t ldc, const float* tile, int64_t rows, int64_t cols, float alpha,
                float beta) {
    for (int64_t i = 0; i < rows; ++i) {
        float* c_row = c + i * ldc;
        const float* t_row = tile + i * kNr;
        if (beta == 0.0f) {
            for (int64_t j = 0; j < cols; ++j) c_row[j] = alpha * t_row[j];
        } else {
            for (int64_t j = 0; j < cols; ++j) c_row[j] = alpha * t_row[j] + beta * c_row[j];
        }
    }
}

// C[rows, cols] *= beta, for k == 0 where there is nothing to multiply.
void scale_output(float* c, int64_t ldc, int64_t rows, int64_t cols, float beta) {
    for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    }
}

// The packed B panels [first_panel, last_panel) of a `cols`-wide slice, times a packed A block
// of `rows` rows, into C at the block's top-left corner.
void multiply_packed(float* c, int64_t ldc, const float* a_packed, int64_t rows, const float* b_packed,
                     int64_t first_panel, int64_t last_panel, int64_t cols, int64_t depth, float alpha,
                     float beta) {
    float tile[kMr * kNr];
    for (int64_t panel = first_panel; panel < last_panel; ++panel) {
        const int64_t col = panel * kNr;
        for (int64_t row = 0; row < rows; row += kMr) {
            multiply_panels(tile, a_packed + row * depth, b_packed + panel * depth * kNr, depth);
            store_tile(c + row * ldc + col, ldc, tile, std::min(kMr, rows - row), std::min(kNr, cols - col), alpha,
                       beta);
        }
    }
}

}  // namespace

void gemm_serial(float* c, int64_t ldc, MatrixView a, MatrixView b, int64_t m, int64_t n, int64_t k, float alpha,
                 float beta) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        scale_output(c, ldc, m, n, beta);
        return;
    }
    float* a_packed = a_buffer.reserve(kMc * kKc);
    float* b_packed = b_buffer.reserve(kKc * ceil_div(std::min(n, kNc), kNr) * kNr);
    for (int64_t col0 = 0; col0 < n; col0 += kNc) {
        const int64_t cols = std::min(kNc, n - col0);
        const int64_t b_panels = ceil_div(cols, kNr);
        for (int64_t depth0 = 0; depth0 < k; depth0 += kKc) {
            const int64_t depth = std::min(kKc, k - depth0);
            const float slice_beta = depth0 == 0 ? beta : 1.0f;  // later K slices add on
            for (int64_t panel = 0; panel < b_panels; ++panel) {
                pack_b_panel(b_packed + panel * depth * kNr, b, depth0, depth, col0 + panel * kNr,
                             std::min(kNr, cols - panel * kNr));
            }
            for (int64_t row0 = 0; row0 < m; row0 += kMc) {
                const int64_t rows = std::min(kMc, m - row0);
                pack_a_block(a_packed, a, row0, rows, depth0, depth);
                multiply_packed(c + row0 * ldc + col0, ldc, a_packed, rows, b_packed, 0, b_panels, cols, depth, alpha,
                                slice_beta);
            }
        }
    }
}

// The same loops as gemm_serial, with the B slice packed by all threads together and the
// (A block, B panel range) products shared out among them.
void matmul(float* c, const float* a, const float* b, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, float alpha, float beta) {
    const MatrixView op_a{a, trans_a ? 1 : k, trans_a ? m : 1};
    const MatrixView op_b{b, trans_b ? 1 : n, trans_b ? k : 1};
    const int threads = m * n * k >= kParallelMinWork ? omp_get_max_threads() : 1;
    if (threads == 1 || k <= 0) {
        gemm_serial(c, n, op_a, op_b, m, n, k, alpha, beta);
        return;
    }
    const int64_t m_blocks = ceil_div(m, kMc);
    float* b_packed = b_buffer.reserve(kKc * ceil_div(std::min(n, kNc), kNr) * kNr);

    for (int64_t col0 = 0; col0 < n; col0 += kNc) {
        const int64_t cols = std::min(kNc, n - col0);
        const int64_t b_panels = ceil_div(cols, kNr);
        // When A has fewer row blocks than there are threads, the B panels are split into chunks
        // too, so that a short A (a LoRA projection, a single row) still uses every core.
        const int64_t chunks = std::min(b_panels, ceil_div(threads, m_blocks));
        const int64_t panels_per_chunk = ceil_div(b_panels, chunks);

        for (int64_t depth0 = 0; depth0 < k; depth0 += kKc) {
            const int64_t depth = std::min(kKc, k - depth0);
            const float slice_beta = depth0 == 0 ? beta : 1.0f;

#pragma omp parallel num_threads(threads)
            {
#pragma omp for schedule(static)
                for (int64_t panel = 0; panel < b_panels; ++panel) {
                    pack_b_panel(b_packed + panel * depth * kNr, op_b, depth0, depth, col0 + panel * kNr,
                                 std::min(kNr, cols - panel * kNr));
                }

                float* a_packed = a_buffer.reserve(kMc * kKc);
#pragma omp for collapse(2) schedule(dynamic)
                for (int64_t block = 0; block < m_blocks; ++block) {
                    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
                        const int64_t row0 = block * kMc;
                        const int64_t rows = std::min(kMc, m - row0);
                        pack_a_block(a_packed, op_a, row0, rows, depth0, depth);
                        const int64_t first_panel = chunk * panels_per_chunk;
                        const int64_t last_panel = std::min(b_panels, first_panel + panels_per_chunk);
                        multiply_packed(c + row0 * n + col0, n, a_packed, rows, b_packed, first_panel, last_panel,
                                        cols, depth, alpha, slice_beta);
                    }
                }
            }
        }
    }
}

}  // namespace axl::cpu
