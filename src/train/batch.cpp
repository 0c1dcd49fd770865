#include "train/batch.hpp"

#include "core/error.hpp"

namespace axl {

PreparedBatch prepare_batch(const axl_batch& batch, const ModelConfig& config) {
    require(batch.tokens != nullptr, AXL_ERR_INVALID_ARGUMENT, "batch.tokens is NULL");
    require(batch.batch_size > 0 && batch.seq_len > 0, AXL_ERR_INVALID_ARGUMENT,
            "batch size and sequence length must be positive (got ", batch.batch_size, " x ",
            batch.seq_len, ")");
    require(batch.seq_len <= config.max_position_embeddings, AXL_ERR_INVALID_ARGUMENT,
            "sequence length ", batch.seq_len, " exceeds the model's max_position_embeddings ",
            config.max_position_embeddings);
    require(batch.labels == nullptr || batch.loss_mask == nullptr, AXL_ERR_INVALID_ARGUMENT,
            "give batch.labels or batch.loss_mask, not both");

    PreparedBatch out;
    out.batch_size = batch.batch_size;
    out.seq_len = batch.seq_len;
    const int64_t n = out.num_tokens();
    out.tokens.assign(batch.tokens, batch.tokens + n);
    out.targets.assign(n, AXL_IGNORE_INDEX);
    out.positions.assign(n, 0);
    if (batch.segment_ids != nullptr) out.segments.assign(batch.segment_ids, batch.segment_ids + n);

    for (int64_t b = 0; b < out.batch_size; ++b) {
        const int64_t row = b * out.seq_len;
        int32_t position = 0;
        for (int64_t t = 0; t < out.seq_len; ++t) {
            const int64_t i = row + t;
            int32_t token = out.tokens[i];
            require(token >= 0 && token < config.vocab_size, AXL_ERR_INVALID_ARGUMENT, "token ",
                    token, " at row ", b, " position ", t, " is outside the vocabulary [0, ",
                    config.vocab_size, ")");
            bool segment_starts = t > 0 && !out.segments.empty() && out.segments[i] != out.segments[i - 1];
            if (segment_starts) {
                for (int64_t s = 0; s < t; ++s)
                    require(out.segments[row + s] != out.segments[i], AXL_ERR_INVALID_ARGUMENT,
                            "segment id ", out.segments[i], " of row ", b,
                            " is not one contiguous run (it reappears at position ", t, ")");
                position = 0;
            }
            out.positions[i] = position++;
        }
        // Position t learns to predict token t+1 of the same segment.
        for (int64_t t = 0; t + 1 < out.seq_len; ++t) {
            const int64_t i = row + t;
            if (!out.segments.empty() && out.segments[i] != out.segments[i + 1]) continue;
            int32_t target;
            if (batch.labels != nullptr) {
                target = batch.labels[i + 1];
                require(target == AXL_IGNORE_INDEX || (target >= 0 && target < config.vocab_size),
                        AXL_ERR_INVALID_ARGUMENT, "label ", target, " at row ", b, " position ",
                        t + 1, " is neither -100 nor a token id");
            } else if (batch.loss_mask != nullptr) {
                target = batch.loss_mask[i + 1] != 0 ? out.tokens[i + 1] : AXL_IGNORE_INDEX;
            } else {
                target = out.tokens[i + 1];
            }
            out.targets[i] = target;
            if (target >= 0) ++out.num_targets;
        }
    }
    return out;
}

}  // namespace axl
