#include "backend/cuda/blas_lt.hpp"

#include <algorithm>

#include <cublasLt.h>

#include <cstring>
#include <mutex>
#include <unordered_map>

#include "backend/cuda/check.hpp"
#include "backend/cuda/device_allocator.hpp"

namespace axl::cuda {

namespace {

// cuBLASLt's heuristic assumes 256-byte aligned operands unless told otherwise; an operand
// that starts inside a buffer (a chunk of rows) is planned with the alignment it really has.
uint32_t pointer_alignment(const void* ptr) {
    const auto address = reinterpret_cast<uintptr_t>(ptr);
    const uintptr_t lowest_bit = address & (~address + 1);
    return address == 0 || lowest_bit >= 256 ? 256u : static_cast<uint32_t>(lowest_bit);
}

cudaDataType_t cuda_type(GemmType type) { return type == GemmType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }
uint32_t type_bytes(GemmType type) { return type == GemmType::BF16 ? 2u : 4u; }

// The alignment an operand keeps on every row: its start's, and that of its row stride in bytes.
uint32_t operand_alignment(const void* ptr, int64_t ld, GemmType type) {
    return std::min(pointer_alignment(ptr), pointer_alignment(reinterpret_cast<const void*>(
                                                static_cast<uintptr_t>(ld) * type_bytes(type))));
}

struct PlanKey {
    int64_t m, n, k;
    bool trans_a, trans_b;
    GemmType ab_type, c_type;
    uint32_t align_a, align_b, align_c;
    int64_t lda, ldb, ldc;  // row strides in elements

    bool operator==(const PlanKey& other) const {
        return m == other.m && n == other.n && k == other.k && lda == other.lda && ldb == other.ldb &&
               ldc == other.ldc && trans_a == other.trans_a &&
               trans_b == other.trans_b && ab_type == other.ab_type && c_type == other.c_type &&
               align_a == other.align_a && align_b == other.align_b && align_c == other.align_c;
    }
};

struct PlanKeyHash {
    size_t operator()(const PlanKey& key) const {
        size_t h = std::hash<int64_t>()(key.m);
        auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
        mix(static_cast<uint64_t>(key.n));
        mix(static_cast<uint64_t>(key.k));
        mix(static_cast<uint64_t>(key.lda) * 1000003u ^ static_cast<uint64_t>(key.ldb) * 7919u ^
            static_cast<uint64_t>(key.ldc));
        mix((key.trans_a ? 1u : 0u) | (key.trans_b ? 2u : 0u) | (static_cast<uint32_t>(key.ab_type) << 2) |
            (static_cast<uint32_t>(key.c_type) << 4));
        mix((static_cast<uint64_t>(key.align_a) << 32) | (static_cast<uint64_t>(key.align_b) << 16) | key.align_c);
        return h;
    }
};

// The descriptors of one shape, in cuBLASLt's column-major terms (see matmul below).
struct Plan {
    cublasLtMatmulDesc_t operation = nullptr;
    cublasLtMatrixLayout_t lt_a = nullptr, lt_b = nullptr, lt_c = nullptr;
    cublasLtMatmulAlgo_t algorithm{};

    void destroy() {
        if (lt_c) cublasLtMatrixLayoutDestroy(lt_c);
        if (lt_b) cublasLtMatrixLayoutDestroy(lt_b);
        if (lt_a) cublasLtMatrixLayoutDestroy(lt_a);
        if (operation) cublasLtMatmulDescDestroy(operation);
    }
};

}  // namespace

struct BlasLt::Impl {
    DeviceAllocator& allocator;
    cublasLtHandle_t handle = nullptr;
    DeviceBuffer workspace;
    std::mutex mutex;
    std::unordered_map<PlanKey, Plan, PlanKeyHash> plans;

    Impl(DeviceAllocator& alloc, size_t workspace_bytes)
        : allocator(alloc), workspace(alloc, workspace_bytes, "cuBLASLt workspace") {
        AXL_CUBLAS_CHECK(cublasLtCreate(&handle));
    }

    ~Impl() {
        for (auto& entry : plans) entry.second.destroy();
        if (handle) cublasLtDestroy(handle);
    }

    const Plan& plan(const PlanKey& key) {
        std::lock_guard<std::mutex> lock(mutex);
        auto found = plans.find(key);
        if (found != plans.end()) return found->second;

        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's "A" is our
        // B and its "B" is our A, and a row-major [r, c] matrix is a column-major [c, r] one.
        Plan plan;
        try {
            const cudaDataType_t ab = cuda_type(key.ab_type);
            AXL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.operation, CUBLAS_COMPUTE_32F, CUDA_R_32F));
            const cublasOperation_t op_a = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
            const cublasOperation_t op_b = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
            AXL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.operation, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
            AXL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.operation, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
            // Our B: [K,N] row-major = column-major N x K (ld = its row stride, N when packed);
            // transposed [N,K] = K x N (ld K when packed).
            if (key.trans_b)
                AXL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lt_a, ab, key.k, key.n, key.ldb));
            else
                AXL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lt_a, ab, key.n, key.k, key.ldb));
            // Our A: [M,K] row-major = column-major K x M (ld K when packed); transposed [K,M] =
            // M x K (ld M when packed).
            if (key.trans_a)
                AXL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lt_b, ab, key.m, key.k, key.lda));
            else
                AXL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lt_b, ab, key.k, key.m, key.lda));
            AXL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.lt_c, cuda_type(key.c_type), key.n, key.m, key.ldc));

            cublasLtMatmulPreference_t preference = nullptr;
            AXL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
            const uint64_t workspace_bytes = workspace.size();
            cublasLtMatmulHeuristicResult_t result{};
            int found_count = 0;
            cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
                preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes);
            // cuBLASLt's A is our B and its B our A.
            const uint32_t alignments[4] = {key.align_b, key.align_a, key.align_c, key.align_c};
            const cublasLtMatmulPreferenceAttributes_t alignment_attributes[4] = {
                CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
            for (int i = 0; i < 4 && status == CUBLAS_STATUS_SUCCESS; ++i)
                status = cublasLtMatmulPreferenceSetAttribute(preference, alignment_attributes[i], &alignments[i],
                                                              sizeof alignments[i]);
            if (status == CUBLAS_STATUS_SUCCESS)
                status = cublasLtMatmulAlgoGetHeuristic(handle, plan.operation, plan.lt_a, plan.lt_b, plan.lt_c,
                                                        plan.lt_c, preference, 1, &result, &found_count);
            cublasLtMatmulPreferenceDestroy(preference);
            AXL_CUBLAS_CHECK(status);
            require(found_count > 0, AXL_ERR_BACKEND, "cuBLASLt has no algorithm for a ", key.m, "x", key.n, "x",
                    key.k, " GEMM (trans_a ", key.trans_a, ", trans_b ", key.trans_b, ")");
            plan.algorithm = result.algo;
        } catch (...) {
            plan.destroy();
            throw;
        }
        return plans.emplace(key, plan).first->second;
    }
};

BlasLt::BlasLt(DeviceAllocator& allocator, size_t workspace_bytes)
    : impl_(std::make_unique<Impl>(allocator, workspace_bytes)) {}

BlasLt::~BlasLt() = default;

cudaStream_t BlasLt::stream() const { return impl_->allocator.stream(); }

size_t BlasLt::planned_shapes() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->plans.size();
}

void BlasLt::matmul(void* c, GemmType c_type, const void* a, const void* b, GemmType ab_type, int64_t m,
                    int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha, float beta, const void* c_in,
                    int64_t lda, int64_t ldb, int64_t ldc) {
    require(m > 0 && n > 0 && k > 0, AXL_ERR_SHAPE, "matmul of shape ", m, "x", n, "x", k);
    if (c_in == nullptr) c_in = c;
    if (lda == 0) lda = trans_a ? m : k;
    if (ldb == 0) ldb = trans_b ? k : n;
    if (ldc == 0) ldc = n;
    require(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n) && ldc >= n, AXL_ERR_SHAPE,
            "matmul row strides ", lda, ", ", ldb, ", ", ldc, " shorter than the rows of a ", m, "x", n, "x", k,
            " product");
    const PlanKey key{m,
                      n,
                      k,
                      trans_a,
                      trans_b,
                      ab_type,
                      c_type,
                      operand_alignment(a, lda, ab_type),
                      operand_alignment(b, ldb, ab_type),
                      std::min(operand_alignment(c, ldc, c_type), operand_alignment(c_in, ldc, c_type)),
                      lda,
                      ldb,
                      ldc};
    const Plan& plan = impl_->plan(key);
    AXL_CUBLAS_CHECK(cublasLtMatmul(impl_->handle, plan.operation, &alpha, b, plan.lt_a, a, plan.lt_b, &beta, c_in,
                                    plan.lt_c, c, plan.lt_c, &plan.algorithm, impl_->workspace.data(),
                                    impl_->workspace.size(), stream()));
}

}  // namespace axl::cuda
