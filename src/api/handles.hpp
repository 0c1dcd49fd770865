// The structs behind the opaque C handles. Each holds shared ownership of its engine object
// (so a child keeps its parents alive and handles may be destroyed in any order) and the
// message of the last failure of a call on it.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "axl.h"
#include "core/context.hpp"
#include "lora/lora.hpp"
#include "model/model.hpp"
#include "model/model_quant.hpp"
#include "train/trainer.hpp"

namespace axl {

// The per-handle error message. Calls on a shared model may fail concurrently, so writes
// are serialised; the returned pointer is valid until the next failing call on the handle.
class ErrorSlot {
public:
    void set(const std::string& message) {
        std::lock_guard<std::mutex> lock(mutex_);
        message_ = message;
    }
    const char* get() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return message_.c_str();
    }

private:
    mutable std::mutex mutex_;
    std::string message_;
};

}  // namespace axl

struct axl_context {
    std::shared_ptr<axl::Context> impl;
    axl::ErrorSlot error;
};

struct axl_quant_config {
    axl::ModelQuantConfig settings;
    axl::ErrorSlot error;
};

struct axl_model {
    std::shared_ptr<axl::Model> impl;
    axl::ErrorSlot error;
};

struct axl_lora {
    std::shared_ptr<axl::LoraAdapter> impl;
    axl::ErrorSlot error;
};

struct axl_optimizer {
    std::shared_ptr<axl::Optimizer> impl;
    axl::ErrorSlot error;
};

struct axl_trainer {
    std::unique_ptr<axl::Trainer> impl;
    axl::ErrorSlot error;
};
