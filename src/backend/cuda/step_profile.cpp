#include "backend/cuda/step_profile.hpp"

#include <cstring>

#include "backend/cuda/check.hpp"

namespace axl::cuda {

StepProfile::~StepProfile() {
    for (cudaEvent_t event : events_) cudaEventDestroy(event);
}

int StepProfile::next_event() {
    if (events_used_ == events_.size()) {
        cudaEvent_t event = nullptr;
        AXL_CUDA_CHECK(cudaEventCreate(&event));
        events_.push_back(event);
    }
    return static_cast<int>(events_used_++);
}

int StepProfile::begin(cudaStream_t stream) {
    Scope scope;
    scope.start = next_event();
    AXL_CUDA_CHECK(cudaEventRecord(events_[scope.start], stream));
    scopes_.push_back(scope);
    return static_cast<int>(scopes_.size() - 1);
}

void StepProfile::end(int scope, const char* name, cudaStream_t stream) {
    Scope& s = scopes_[scope];
    s.name = name;
    s.stop = next_event();
    // A destructor may run while an error unwinds: a failed record only loses this scope.
    if (cudaEventRecord(events_[s.stop], stream) != cudaSuccess) s.stop = -1;
}

std::vector<StepProfile::Entry> StepProfile::take_summary(cudaStream_t stream) {
    AXL_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<Entry> out;
    for (const Scope& s : scopes_) {
        if (s.stop < 0 || s.name == nullptr) continue;
        float ms = 0.0f;
        AXL_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[s.start], events_[s.stop]));
        Entry* entry = nullptr;
        for (Entry& e : out)
            if (e.name == s.name) entry = &e;
        if (entry == nullptr) {
            out.push_back(Entry{s.name, 0.0, 0});
            entry = &out.back();
        }
        entry->ms += ms;
        entry->calls += 1;
    }
    scopes_.clear();
    events_used_ = 0;
    return out;
}

}  // namespace axl::cuda
