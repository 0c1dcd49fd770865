// Helpers shared by the API tests: owning wrappers for axl handles, status assertions, and the
// comparison metric used against reference numbers. Public header only.
#pragma once

#include <cmath>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "axl.h"

namespace axl_test {

template <typename T, void (*Destroy)(T*)>
struct HandleDeleter {
    void operator()(T* p) const { Destroy(p); }
};
using ContextPtr = std::unique_ptr<axl_context, HandleDeleter<axl_context, axl_context_destroy>>;
using ModelPtr = std::unique_ptr<axl_model, HandleDeleter<axl_model, axl_model_destroy>>;
using LoraPtr = std::unique_ptr<axl_lora, HandleDeleter<axl_lora, axl_lora_destroy>>;
using OptimizerPtr = std::unique_ptr<axl_optimizer, HandleDeleter<axl_optimizer, axl_optimizer_destroy>>;
using TrainerPtr = std::unique_ptr<axl_trainer, HandleDeleter<axl_trainer, axl_trainer_destroy>>;
using QuantConfigPtr = std::unique_ptr<axl_quant_config, HandleDeleter<axl_quant_config, axl_quant_config_destroy>>;

inline std::string describe_failure(axl_status status) {
    std::ostringstream s;
    s << "status " << status << " (" << axl_status_string(status) << "): " << axl_last_error();
    return s.str();
}

#define AXL_ASSERT_OK(call)                                                        \
    do {                                                                           \
        const axl_status axl_status_ = (call);                                     \
        ASSERT_EQ(axl_status_, AXL_OK) << #call << ": " << ::axl_test::describe_failure(axl_status_); \
    } while (0)

#define AXL_EXPECT_OK(call)                                                        \
    do {                                                                           \
        const axl_status axl_status_ = (call);                                     \
        EXPECT_EQ(axl_status_, AXL_OK) << #call << ": " << ::axl_test::describe_failure(axl_status_); \
    } while (0)

// The backend the tests run on: AXL_TEST_BACKEND=cpu|cuda, else AXL_BACKEND_AUTO.
inline int32_t test_backend() {
    const char* name = std::getenv("AXL_TEST_BACKEND");
    if (name && std::string(name) == "cpu") return AXL_BACKEND_CPU;
    if (name && std::string(name) == "cuda") return AXL_BACKEND_CUDA;
    return AXL_BACKEND_AUTO;
}

inline ContextPtr make_context() {
    axl_context_options opts;
    if (axl_context_options_init(&opts, sizeof opts) != AXL_OK) return nullptr;
    opts.backend = test_backend();
    axl_context* ctx = nullptr;
    if (axl_context_create(&opts, &ctx) != AXL_OK) return nullptr;
    return ContextPtr(ctx);
}

// An adapter of `rank`/`alpha` over `model` (all-linear), AdamW at `lr` and a default trainer:
// the handles a training test needs. Fields stay empty when a call fails; the test reports it.
struct TrainingStack {
    LoraPtr lora;
    OptimizerPtr optimizer;
    TrainerPtr trainer;
    std::string failure;  // the failing call and its message, empty on success
};

inline TrainingStack make_training_stack(axl_model* model, int32_t rank, double alpha, double lr) {
    TrainingStack stack;
    axl_lora_options lora_opts;
    axl_lora_options_init(&lora_opts, sizeof lora_opts);
    lora_opts.rank = rank;
    lora_opts.alpha = alpha;
    axl_lora* lora = nullptr;
    axl_status status = axl_lora_create(model, &lora_opts, &lora);
    if (status != AXL_OK) {
        stack.failure = "axl_lora_create: " + describe_failure(status);
        return stack;
    }
    stack.lora.reset(lora);
    axl_optimizer_options opt_opts;
    axl_optimizer_options_init(&opt_opts, sizeof opt_opts);
    opt_opts.lr = lr;
    axl_optimizer* optimizer = nullptr;
    status = axl_optimizer_create(lora, &opt_opts, &optimizer);
    if (status != AXL_OK) {
        stack.failure = "axl_optimizer_create: " + describe_failure(status);
        return stack;
    }
    stack.optimizer.reset(optimizer);
    axl_trainer* trainer = nullptr;
    status = axl_trainer_create(optimizer, nullptr, &trainer);
    if (status != AXL_OK) {
        stack.failure = "axl_trainer_create: " + describe_failure(status);
        return stack;
    }
    stack.trainer.reset(trainer);
    return stack;
}

inline axl_batch make_batch(int32_t batch_size, int32_t seq_len, const int32_t* tokens,
                            const int32_t* labels = nullptr, const int32_t* segment_ids = nullptr) {
    axl_batch batch;
    axl_batch_init(&batch, sizeof batch);
    batch.batch_size = batch_size;
    batch.seq_len = seq_len;
    batch.tokens = tokens;
    batch.labels = labels;
    batch.segment_ids = segment_ids;
    return batch;
}

// How far `got` is from `ref`: max|got-ref| / max|ref|, with where the worst element sits.
struct Deviation {
    double max_abs = 0;       // max |got - ref|
    double ref_scale = 0;     // max |ref|
    size_t worst = 0;         // index of max_abs
    bool size_mismatch = false;
    double relative() const { return ref_scale > 0 ? max_abs / ref_scale : INFINITY; }
};

inline Deviation deviation(const std::vector<float>& got, const std::vector<float>& ref) {
    Deviation d;
    if (got.size() != ref.size()) {
        d.size_mismatch = true;
        d.max_abs = INFINITY;
        return d;
    }
    for (size_t i = 0; i < ref.size(); ++i) {
        d.ref_scale = std::max(d.ref_scale, std::fabs(static_cast<double>(ref[i])));
        const double diff = std::fabs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
        if (!(diff <= d.max_abs)) {  // also catches NaN
            d.max_abs = std::isnan(diff) ? INFINITY : diff;
            d.worst = i;
        }
    }
    return d;
}

inline std::string describe(const Deviation& d, const std::vector<float>& got, const std::vector<float>& ref) {
    std::ostringstream s;
    if (d.size_mismatch) {
        s << "size " << got.size() << " vs reference " << ref.size();
        return s.str();
    }
    s << "max|got-ref| = " << d.max_abs << ", max|ref| = " << d.ref_scale << ", relative " << d.relative()
      << "; worst at flat index " << d.worst << ": got " << got[d.worst] << ", ref " << ref[d.worst];
    return s.str();
}

}  // namespace axl_test
