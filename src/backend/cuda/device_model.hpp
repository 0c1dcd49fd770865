// The frozen base model on the device, uploaded once per model (Runtime::model_mirror) and read
// by every CUDA training pass of it: the decoder linears as bf16, or, for bitsandbytes 4-bit
// weights (NF4/FP4), as their packed codes and statistics, dequantized to bf16 right before
// each GEMM into one scratch the pass reuses for every linear; norms f32; embeddings and the LM
// head bf16. Formats without a device dequantizer (int8, int4 group, fp8, NVFP4, MXFP4) are
// dequantized once on the host and held as bf16.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/ops.hpp"
#include "model/model.hpp"

namespace axl::cuda {

class Runtime;

struct DeviceLinear {
    int64_t in = 0, out = 0;
    const bf16* weight = nullptr;  // [out, in]; null when held as 4-bit codes
    Bnb4BitWeight packed;          // the 4-bit codes and statistics when weight is null
    const float* bias = nullptr;   // [out] or null

    bool is_packed() const { return weight == nullptr; }
};

// The whole bf16 [out, in] weight of a packed linear into `out` (queued on `stream`), whatever
// its format; the one place the step asks for a dequantized base weight.
void dequantize_weight(const DeviceLinear& linear, bf16* out, cudaStream_t stream);

// The projections of a layer in decoder_layer.hpp's LinearSlot order (q k v o gate up down).
constexpr int kDeviceLinearSlots = 7;

struct DeviceLayer {
    const float* input_norm = nullptr;
    const float* post_attention_norm = nullptr;
    const float* q_norm = nullptr;  // Qwen3 only
    const float* k_norm = nullptr;
    std::array<DeviceLinear, kDeviceLinearSlots> linears;
};

class DeviceModel {
public:
    DeviceModel(const Model& model, Runtime& runtime);

    const bf16* embed_tokens = nullptr;  // [vocab, hidden]
    const float* final_norm = nullptr;
    DeviceLinear lm_head;                // shares embed_tokens' copy when the embeddings are tied
    std::vector<DeviceLayer> layers;
    int64_t largest_packed_linear = 0;   // elements of the dequantization scratch (0: none)

private:
    const float* upload_f32(const Tensor& tensor, const char* what);
    const bf16* upload_bf16(const Tensor& tensor, const char* what);
    template <typename T>
    const T* upload(const T* host, size_t count, const char* what);
    DeviceLinear upload_linear(const Linear& linear);

    DeviceAllocator& allocator_;
    std::shared_ptr<HostAllocator> host_allocator_;  // staging of host-side dequantization
    std::vector<DeviceBuffer> buffers_;
};

}  // namespace axl::cuda
