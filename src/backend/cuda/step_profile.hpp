// Device time per op of the training step, for axl-bench's breakdown (docs/benchmarks.md).
// Off by default. When on, each ProfileScope brackets the work it encloses with a pair of CUDA
// events on the runtime's stream; take_summary() waits for the stream and sums the elapsed time
// per op name. Scopes are leaves (never nested), so the sums add up to the profiled time and
// the rest of a step's wall time is host work and launch gaps.
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <vector>

namespace axl::cuda {

class StepProfile {
public:
    struct Entry {
        std::string name;
        double ms = 0.0;   // summed over the scopes since the last take_summary()
        int64_t calls = 0;
    };

    StepProfile() = default;
    ~StepProfile();
    StepProfile(const StepProfile&) = delete;
    StepProfile& operator=(const StepProfile&) = delete;

    void set_enabled(bool on) { enabled_ = on; }
    bool enabled() const { return enabled_; }

    // The events of one scope; `name` must outlive the next take_summary() (string literals).
    int begin(cudaStream_t stream);
    void end(int scope, const char* name, cudaStream_t stream);

    // Waits for `stream`, then returns the time per name in first-seen order and forgets the
    // scopes recorded so far (their events are reused).
    std::vector<Entry> take_summary(cudaStream_t stream);

private:
    struct Scope {
        const char* name = nullptr;
        int start = -1, stop = -1;
    };
    int next_event();

    bool enabled_ = false;
    std::vector<cudaEvent_t> events_;
    size_t events_used_ = 0;
    std::vector<Scope> scopes_;
};

// Brackets the device work queued on `stream` during its lifetime as op `name`; costs one
// branch when profiling is off.
class ProfileScope {
public:
    ProfileScope(StepProfile& profile, const char* name, cudaStream_t stream)
        : profile_(profile), name_(name), stream_(stream) {
        if (profile_.enabled()) scope_ = profile_.begin(stream_);
    }
    ~ProfileScope() {
        if (scope_ >= 0) profile_.end(scope_, name_, stream_);
    }
    ProfileScope(const ProfileScope&) = delete;
    ProfileScope& operator=(const ProfileScope&) = delete;

private:
    StepProfile& profile_;
    const char* name_;
    cudaStream_t stream_;
    int scope_ = -1;
};

}  // namespace axl::cuda
