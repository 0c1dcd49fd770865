// Schedules against transformers' schedulers (values from tests/oracle/optim_oracle.py, lr 2e-4,
// 5 warmup steps, 100 total) and against the formulas at the boundaries.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "optim/lr_schedule.hpp"
#include "unit/expect_error.hpp"

namespace axl {
namespace {

ScheduleConfig schedule(ScheduleType type, double min_lr_ratio = 0.0) {
    ScheduleConfig config;
    config.type = type;
    config.lr = 2e-4;
    config.warmup_steps = 5;
    config.total_steps = 100;
    config.min_lr_ratio = min_lr_ratio;
    return config;
}

void expect_lr(const ScheduleConfig& config, int64_t step, double want) {
    EXPECT_NEAR(lr_at(config, step), want, 1e-15) << "step " << step;
}

TEST(Schedule, WarmupRisesLinearlyFromZeroForEveryType) {
    for (ScheduleType type : {ScheduleType::Constant, ScheduleType::Linear, ScheduleType::Cosine}) {
        const ScheduleConfig config = schedule(type, 0.1);
        expect_lr(config, 0, 0.0);
        expect_lr(config, 1, 4e-05);
        expect_lr(config, 4, 0.00016);
        expect_lr(config, 5, 0.0002);  // warmup ends: the peak
    }
}

TEST(Schedule, ConstantHoldsThePeak) {
    const ScheduleConfig config = schedule(ScheduleType::Constant);
    for (int64_t step : {6, 50, 99, 100, 101, 100000}) expect_lr(config, step, 0.0002);
    ScheduleConfig no_warmup = config;
    no_warmup.warmup_steps = 0;
    expect_lr(no_warmup, 0, 0.0002);
}

TEST(Schedule, LinearMatchesTransformers) {
    const ScheduleConfig config = schedule(ScheduleType::Linear);
    expect_lr(config, 6, 0.00019789473684210526);
    expect_lr(config, 50, 0.00010526315789473685);
    expect_lr(config, 99, 2.105263157894737e-06);
    expect_lr(config, 100, 0.0);
    expect_lr(config, 101, 0.0);
}

TEST(Schedule, CosineMatchesTransformers) {
    const ScheduleConfig config = schedule(ScheduleType::Cosine);
    expect_lr(config, 6, 0.00019994532573409262);
    expect_lr(config, 50, 0.00010825793454723325);
    expect_lr(config, 99, 5.467426590739511e-08);
    expect_lr(config, 100, 0.0);
}

TEST(Schedule, CosineWithFloorMatchesTransformersMinLrSchedule) {
    const ScheduleConfig config = schedule(ScheduleType::Cosine, 0.1);
    expect_lr(config, 6, 0.00019995079316068335);
    expect_lr(config, 50, 0.00011743214109250993);
    expect_lr(config, 99, 2.0049206839316658e-05);
    expect_lr(config, 100, 2e-05);
}

TEST(Schedule, PastTheEndCosineStaysAtItsFloor) {
    // transformers' cosine would rise again (5.47e-08 at step 101); axl holds the end value.
    expect_lr(schedule(ScheduleType::Cosine), 101, 0.0);
    expect_lr(schedule(ScheduleType::Cosine, 0.1), 150, 2e-05);
}

TEST(Schedule, LinearWithFloorDecaysToIt) {
    const ScheduleConfig config = schedule(ScheduleType::Linear, 0.25);
    expect_lr(config, 5, 2e-4);
    expect_lr(config, 100, 0.5e-4);
    expect_lr(config, 1000, 0.5e-4);
    // Half-way through the decay: 0.25 + 0.75 * 0.5 of the peak.
    ScheduleConfig even = config;
    even.warmup_steps = 0;
    expect_lr(even, 50, 2e-4 * (0.25 + 0.75 * 0.5));
}

TEST(Schedule, ValidationNamesTheField) {
    ScheduleConfig config = schedule(ScheduleType::Linear);
    config.total_steps = 0;
    test::expect_error([&] { validate_schedule(config); }, AXL_ERR_INVALID_ARGUMENT, "total_steps");
    config = schedule(ScheduleType::Cosine, 1.5);
    test::expect_error([&] { validate_schedule(config); }, AXL_ERR_INVALID_ARGUMENT, "min_lr_ratio");
    config = schedule(ScheduleType::Constant);
    config.warmup_steps = -1;
    test::expect_error([&] { validate_schedule(config); }, AXL_ERR_INVALID_ARGUMENT, "warmup_steps");
    config = schedule(ScheduleType::Constant);
    config.total_steps = 0;
    EXPECT_NO_THROW(validate_schedule(config));
}

}  // namespace
}  // namespace axl
