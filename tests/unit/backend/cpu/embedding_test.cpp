// Embedding lookup: each output row is the table row of its token, bit for bit.
#include <gtest/gtest.h>

#include <vector>

#include "backend/cpu/ops.hpp"
#include "unit/backend/cpu/op_test_support.hpp"

namespace axl::cpu_test {
namespace {

TEST(CpuEmbedding, CopiesTableRowsOfTokens) {
    const int64_t vocab = 11, hidden = 9;
    const std::vector<float> table = random_values(vocab * hidden, 1);
    const std::vector<int32_t> tokens = {3, 0, 10, 3, 7};
    std::vector<float> out = poisoned(tokens.size() * hidden);
    axl::cpu::embedding_forward(out.data(), tokens.data(), table.data(), static_cast<int64_t>(tokens.size()), hidden);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        for (int64_t i = 0; i < hidden; ++i) {
            EXPECT_EQ(out[t * hidden + i], table[tokens[t] * hidden + i]) << "token " << t << " column " << i;
        }
    }
}

}  // namespace
}  // namespace axl::cpu_test
