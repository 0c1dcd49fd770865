// Helpers shared by the CPU op tests: seeded inputs that are never zero, NaN-poisoned output
// buffers, elementwise comparison with explicit tolerances, and finite-difference gradients.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace axl::cpu_test {

// Values of magnitude in [lo, hi] with a random sign: never zero, so a kernel that skips an
// element or multiplies by a wrong zero cannot pass by accident.
inline std::vector<float> random_values(std::size_t n, uint32_t seed, float lo = 0.1f, float hi = 1.0f) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> magnitude(lo, hi);
    std::bernoulli_distribution negative(0.5);
    std::vector<float> out(n);
    for (float& x : out) x = negative(gen) ? -magnitude(gen) : magnitude(gen);
    return out;
}

// An output buffer full of NaN: any element the kernel forgets to write stays NaN and fails
// every comparison.
inline std::vector<float> poisoned(std::size_t n) {
    return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// Expects |actual[i] - expected[i]| <= atol + rtol * |expected[i]| for every i (NaN fails) and
// reports the first few offenders.
inline void expect_close(const std::vector<float>& actual, const std::vector<double>& expected, double atol,
                         double rtol, const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    int reported = 0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
        if (!(error <= atol + rtol * std::fabs(expected[i])) && reported++ < 5) {
            ADD_FAILURE() << what << "[" << i << "]: got " << actual[i] << ", expected " << expected[i]
                          << " (error " << error << ", allowed " << atol + rtol * std::fabs(expected[i]) << ")";
        }
    }
}

inline void expect_close(const std::vector<float>& actual, const std::vector<float>& expected, double atol,
                         double rtol, const std::string& what) {
    expect_close(actual, std::vector<double>(expected.begin(), expected.end()), atol, rtol, what);
}

// sum_i out[i] * weight[i] in double: the scalar loss whose gradient with respect to out is
// `weight`, used to drive every backward check.
inline double weighted_sum(const std::vector<float>& out, const std::vector<float>& weight) {
    double sum = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) sum += static_cast<double>(out[i]) * weight[i];
    return sum;
}

// Central differences of loss() with respect to every element of x (restored afterwards).
template <typename Loss>
std::vector<double> numeric_gradient(std::vector<float>& x, float step, Loss&& loss) {
    std::vector<double> gradient(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const float saved = x[i];
        x[i] = saved + step;
        const double up = loss();
        x[i] = saved - step;
        const double down = loss();
        x[i] = saved;
        // The step actually taken is the rounded difference of the two fp32 points.
        const double taken = static_cast<double>(saved + step) - static_cast<double>(saved - step);
        gradient[i] = (up - down) / taken;
    }
    return gradient;
}

}  // namespace axl::cpu_test
