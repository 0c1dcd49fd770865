// A validated batch in the form the graph uses: flat token ids, next-token targets with the
// ignore index applied, rotary positions that restart per packed segment, and segment ids.
#pragma once

#include <cstdint>
#include <vector>

#include "axl.h"
#include "model/model_config.hpp"

namespace axl {

struct PreparedBatch {
    int64_t batch_size = 0;
    int64_t seq_len = 0;
    std::vector<int32_t> tokens;     // [B*T]
    std::vector<int32_t> targets;    // [B*T]: token position t predicts targets[t]; <0 ignored
    std::vector<int32_t> positions;  // [B*T]: rotary position of each token
    std::vector<int32_t> segments;   // [B*T], empty when the batch is not packed
    int64_t num_targets = 0;

    int64_t num_tokens() const { return batch_size * seq_len; }
    const int32_t* segment_ids() const { return segments.empty() ? nullptr : segments.data(); }
};

// Checks sizes, token ranges, labels and segments (every problem is an
// AXL_ERR_INVALID_ARGUMENT naming the row and position) and derives targets and positions.
PreparedBatch prepare_batch(const axl_batch& batch, const ModelConfig& config);

}  // namespace axl
