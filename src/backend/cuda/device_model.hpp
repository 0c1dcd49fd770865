// The frozen base model on the device, uploaded once per model (Runtime::model_mirror) and read
// by every CUDA training pass of it: the decoder linears as bf16, or, when quantized (any
// format), as their codes and statistics exactly as stored, dequantized to bf16 right before
// each GEMM into one scratch the pass reuses for every linear; norms f32; embeddings and the LM
// head bf16 (a quantized LM head is dequantized once, on the device, because the fused
// LM-head cross-entropy reads it whole).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "backend/cuda/dequantize_formats.hpp"
#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/ops.hpp"
#include "model/model.hpp"

namespace axl::cuda {

class Runtime;

struct DeviceLinear {
    int64_t in = 0, out = 0;
    const bf16* weight = nullptr;  // [out, in]; null when held quantized
    QuantFormat format = QuantFormat::NF4;  // of the codes, when weight is null
    Bnb4BitWeight packed;          // NF4/FP4 codes and statistics, when weight is null (for
                                   // other formats only packed.format is set: the format)
    PackedWeight quantized;        // every other format's codes and statistics, when weight is null
    const float* bias = nullptr;   // [out] or null

    // Whether the weight must be dequantized (dequantize_weight) before its GEMM.
    bool is_packed() const { return weight == nullptr; }
    // Whether dequantize_weight can write its rows further apart than `in` (NF4, FP4).
    bool dequantizes_with_row_stride() const;
};

// The whole bf16 [out, in] weight of a packed linear into `out` (queued on `stream`), whatever
// its format; the one place the step asks for a dequantized base weight. With out_ld > in the
// rows are out_ld apart (dequantizes_with_row_stride formats only; the columns between are not
// written).
void dequantize_weight(const DeviceLinear& linear, bf16* out, cudaStream_t stream);
void dequantize_weight(const DeviceLinear& linear, bf16* out, int64_t out_ld, cudaStream_t stream);

// The projections of a layer in decoder_layer.hpp's LinearSlot order (q k v o gate up down).
constexpr int kDeviceLinearSlots = 7;
enum DeviceLinearSlot { kSlotQ, kSlotK, kSlotV, kSlotO, kSlotGate, kSlotUp, kSlotDown };

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

private:
    const float* upload_f32(const Tensor& tensor, const char* what);
    const bf16* upload_bf16(const Tensor& tensor, const char* what);
    // Copies `count` values to a new device buffer appended to `owner`; null when count is 0.
    template <typename T>
    const T* upload(const T* host, size_t count, const char* what, std::vector<DeviceBuffer>& owner);
    template <typename T>
    const T* upload(const T* host, size_t count, const char* what) { return upload(host, count, what, buffers_); }
    // A linear as stored: bf16, or its codes and statistics in buffers appended to `owner`.
    DeviceLinear upload_linear(const Linear& linear, std::vector<DeviceBuffer>& owner);
    void upload_bnb_4bit(const QuantizedTensor& q, Bnb4BitWeight* p, std::vector<DeviceBuffer>& owner);
    void upload_packed(const QuantizedTensor& q, PackedWeight* p, std::vector<DeviceBuffer>& owner);
    DeviceLinear upload_lm_head(const Linear& head);

    DeviceAllocator& allocator_;
    std::vector<DeviceBuffer> buffers_;
};

}  // namespace axl::cuda
