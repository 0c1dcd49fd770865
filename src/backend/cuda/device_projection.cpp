#include "backend/cuda/device_projection.hpp"

#include <algorithm>

#include "backend/cuda/check.hpp"
#include "backend/cuda/dequant_gemm.hpp"
#include "backend/cuda/ops.hpp"
#include "core/error.hpp"

namespace axl::cuda {

namespace {

// x A^T of one LoRA module: its own [N, r] buffer, or a column slice of its group's.
struct LoraInput {
    const bf16* u = nullptr;
    int64_t ld = 0;  // row stride in elements
};

const DeviceLoraGroup* group_of(const DevicePass& pass, int layer_index, int first_slot, int count) {
    if (pass.lora == nullptr || count == 1) return nullptr;
    const DeviceLoraGroup* group = pass.lora->group(layer_index, first_slot);
    require(group == nullptr || group->count == count, AXL_ERR_INTERNAL, "a LoRA group of ", count,
            " projections starting at slot ", first_slot, " has ", group ? group->count : 0);
    return group;
}

// The base weight as bf16: held so, or dequantized into the pass's one scratch (stream order
// makes the reuse safe: the previous GEMM has read it). A checkpointed layer's recomputed
// forward keeps its dequantized weights (saved->keep_dequantized_weights) for the backward that
// follows at once: one layer of bf16 weights more in memory, a third fewer dequantizations.
// With ld > in (a packed linear whose LoRA product is folded in) its rows are ld apart and the
// columns after `in` are left for the caller.
bf16* dequantized_weight(const DevicePass& pass, const DeviceLinear& linear, DeviceLayerSaved* saved, int slot,
                         int64_t ld) {
    ProfileScope timed = pass.timed("dequantize base weight");
    bf16* weight = pass.weight_scratch;
    if (saved != nullptr && saved->keep_dequantized_weights) {
        saved->weights[slot] = device_bf16(pass, linear.out, ld, "dequantized base weight kept for backward");
        weight = saved->weights[slot].as<bf16>();
    }
    dequantize_weight(linear, weight, ld, pass.stream());
    return weight;
}

const bf16* weight_of(const DevicePass& pass, const DeviceLinear& linear, DeviceLayerSaved* saved, int slot) {
    if (!linear.is_packed()) return linear.weight;
    return dequantized_weight(pass, linear, saved, slot, linear.in);
}

// Whether a linear's base product runs as the fused dequantize + GEMM (few tokens, 4-bit codes
// read once, no bf16 weight written) rather than dequantize, then cuBLASLt.
bool fused_small_product(const DeviceLinear& linear, int64_t tokens) {
    return linear.is_packed() && fused_dequant_gemm_supported(linear.packed, tokens);
}

// y = x W^T + addend (when given; it may be y itself) + bias.
void base_forward(const DevicePass& pass, int layer_index, int slot, const bf16* x, bf16* y, DeviceLayerSaved* saved,
                  const bf16* addend) {
    const DeviceLinear& linear = pass.model.layers[layer_index].linears[slot];
    const int64_t n = pass.batch.num_tokens();
    const float beta = addend != nullptr ? 1.0f : 0.0f;
    if (fused_small_product(linear, n)) {
        ProfileScope timed = pass.timed("base GEMM forward");
        // The fused kernel adds onto y itself: another addend is copied there first.
        if (addend != nullptr && addend != y)
            AXL_CUDA_CHECK(cudaMemcpyAsync(y, addend, sizeof(bf16) * n * linear.out, cudaMemcpyDeviceToDevice,
                                           pass.stream()));
        fused_dequant_gemm_forward(y, x, linear.packed, n, linear.out, linear.in, beta, pass.stream());
    } else {
        const bf16* weight = weight_of(pass, linear, saved, slot);
        ProfileScope timed = pass.timed("base GEMM forward");
        matmul_add(pass.runtime.blas(), y, x, weight, addend, n, linear.out, linear.in, false, true, 1.0f, beta);
    }
    if (linear.bias != nullptr) add_bias_forward(y, linear.bias, n, linear.out, pass.stream());
}

// dx (+)= dy W.
void base_backward(const DevicePass& pass, int layer_index, int slot, const DeviceLayerSaved& saved, const bf16* dy,
                   bf16* dx, bool accumulate) {
    const DeviceLinear& linear = pass.model.layers[layer_index].linears[slot];
    const int64_t n = pass.batch.num_tokens();
    const float beta = accumulate ? 1.0f : 0.0f;
    if (fused_small_product(linear, n)) {
        ProfileScope timed = pass.timed("base GEMM backward (dx)");
        DeviceBuffer scratch = device_f32(
            pass, static_cast<int64_t>(fused_dequant_gemm_backward_scratch_floats(n, linear.out, linear.in)), 1,
            "fused dequantize + GEMM partial sums");
        fused_dequant_gemm_backward(dx, dy, linear.packed, n, linear.out, linear.in, beta, scratch.as<float>(),
                                    pass.stream());
        return;
    }
    const bf16* weight =
        saved.weights[slot].data() != nullptr ? saved.weights[slot].as<bf16>() : weight_of(pass, linear, nullptr, slot);
    ProfileScope timed = pass.timed("base GEMM backward (dx)");
    matmul(pass.runtime.blas(), dx, dy, weight, n, linear.in, linear.out, false, false, 1.0f, beta);
}

// The B side of one module's backward: dB += s dy^T u, and du = s dy B into du (row stride du_ld).
void lora_b_backward(const DevicePass& pass, const DeviceLoraModule& module, LoraInput u, const bf16* dy, bf16* du,
                     int64_t du_ld) {
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    const float s = pass.lora->scaling();
    {
        ProfileScope timed = pass.timed("LoRA backward: dB += s dy^T u");
        matmul_strided(blas, module.grad_b, module.rank, dy, module.out, u.u, u.ld, module.out, module.rank, n, true,
                       false, s, 1.0f);
    }
    ProfileScope timed = pass.timed("LoRA backward: du = s dy B");
    matmul_strided(blas, du, du_ld, dy, module.out, module.b, module.rank, n, module.rank, module.out, false, false, s,
                   0.0f);
}

// The A side: dA += du^T x and dx (+)= du A, for one module or a whole group (A [rows, in]).
void lora_a_backward(const DevicePass& pass, const bf16* a, float* grad_a, int64_t rows, int64_t in, const bf16* du,
                     const bf16* x, bf16* dx, bool accumulate) {
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    {
        ProfileScope timed = pass.timed("LoRA backward: dA += du^T x");
        matmul(blas, grad_a, du, x, rows, in, n, true, false, 1.0f, 1.0f);
    }
    ProfileScope timed = pass.timed("LoRA backward: dx (+)= du A");
    matmul(blas, dx, du, a, n, in, rows, false, false, 1.0f, accumulate ? 1.0f : 0.0f);
}

}  // namespace

void project_forward(const DevicePass& pass, int layer_index, int first_slot, int count, const bf16* x,
                     bf16* const* ys, DeviceLayerSaved* saved, const bf16* residual) {
    require(count == 1 || residual == nullptr, AXL_ERR_INTERNAL, "a residual joins single projections only");
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    const DeviceLoraGroup* group = group_of(pass, layer_index, first_slot, count);
    DeviceBuffer group_u;
    if (group != nullptr) {
        const int64_t width = group->count * group->rank;
        group_u = device_bf16(pass, n, width, "LoRA x A^T of a group");
        ProfileScope timed = pass.timed("LoRA forward: u = x A^T");
        matmul(blas, group_u.as<bf16>(), x, group->a, n, width, group->in, false, true, 1.0f, 0.0f);
    }
    for (int k = 0; k < count; ++k) {
        const int slot = first_slot + k;
        const DeviceLoraModule* module = pass.lora != nullptr ? pass.lora->module(layer_index, slot) : nullptr;
        const bf16* addend = residual;  // what the base GEMM adds to its product
        DeviceBuffer own_u;             // lives until the B product below is queued
        if (module != nullptr) {
            LoraInput u;
            if (group != nullptr) {
                u = LoraInput{group_u.as<bf16>() + k * group->rank, group->count * group->rank};
            } else {
                own_u = device_bf16(pass, n, module->rank, "LoRA x A^T");
                ProfileScope timed = pass.timed("LoRA forward: u = x A^T");
                matmul(blas, own_u.as<bf16>(), x, module->a, n, module->rank, module->in, false, true, 1.0f, 0.0f);
                u = LoraInput{own_u.as<bf16>(), module->rank};
            }
            ProfileScope timed = pass.timed("LoRA forward: y = s u B^T (+ residual)");
            matmul_strided(blas, ys[k], module->out, u.u, u.ld, module->b, module->rank, n, module->out, module->rank,
                           false, true, pass.lora->scaling(), residual != nullptr ? 1.0f : 0.0f, residual);
            addend = ys[k];
        }
        base_forward(pass, layer_index, slot, x, ys[k], saved, addend);
        if (saved != nullptr && own_u.data() != nullptr) saved->lora_u[slot] = std::move(own_u);
    }
    if (saved != nullptr && group != nullptr) saved->lora_group_u[lora_group_index(first_slot)] = std::move(group_u);
}

void lora_input_forward(const DevicePass& pass, int layer_index, int slot, const bf16* x, DeviceLayerSaved* saved) {
    require(saved != nullptr, AXL_ERR_INTERNAL, "a LoRA input computed for nobody");
    const DeviceLoraModule* module = pass.lora != nullptr ? pass.lora->module(layer_index, slot) : nullptr;
    if (module == nullptr) return;
    const int64_t n = pass.batch.num_tokens();
    DeviceBuffer u = device_bf16(pass, n, module->rank, "LoRA x A^T");
    ProfileScope timed = pass.timed("LoRA forward: u = x A^T");
    matmul(pass.runtime.blas(), u.as<bf16>(), x, module->a, n, module->rank, module->in, false, true, 1.0f, 0.0f);
    saved->lora_u[slot] = std::move(u);
}

void project_backward(const DevicePass& pass, int layer_index, int first_slot, int count,
                      const DeviceLayerSaved& saved, const bf16* x, const bf16* const* dys, bf16* dx,
                      bool accumulate) {
    const int64_t n = pass.batch.num_tokens();
    const DeviceLoraGroup* group = group_of(pass, layer_index, first_slot, count);
    if (group != nullptr) {
        const int64_t width = group->count * group->rank;
        const bf16* u = saved.lora_group_u[lora_group_index(first_slot)].as<bf16>();
        DeviceBuffer du = device_bf16(pass, n, width, "LoRA u gradient of a group");
        for (int k = 0; k < count; ++k) {
            const DeviceLoraModule* module = pass.lora->module(layer_index, first_slot + k);
            lora_b_backward(pass, *module, LoraInput{u + k * group->rank, width}, dys[k],
                            du.as<bf16>() + k * group->rank, width);
        }
        lora_a_backward(pass, group->a, group->grad_a, width, group->in, du.as<bf16>(), x, dx, accumulate);
        for (int k = 0; k < count; ++k) base_backward(pass, layer_index, first_slot + k, saved, dys[k], dx, true);
        return;
    }
    for (int k = 0; k < count; ++k) {
        const int slot = first_slot + k;
        const DeviceLoraModule* module = pass.lora != nullptr ? pass.lora->module(layer_index, slot) : nullptr;
        if (module != nullptr) {
            DeviceBuffer du = device_bf16(pass, n, module->rank, "LoRA u gradient");
            lora_b_backward(pass, *module, LoraInput{saved.lora_u[slot].as<bf16>(), module->rank}, dys[k],
                            du.as<bf16>(), module->rank);
            lora_a_backward(pass, module->a, module->grad_a, module->rank, module->in, du.as<bf16>(), x, dx,
                            accumulate);
            accumulate = true;
        }
        base_backward(pass, layer_index, slot, saved, dys[k], dx, accumulate);
        accumulate = true;
    }
}

}  // namespace axl::cuda

// ---- folded LoRA --------------------------------------------------------------------------

namespace axl::cuda {

namespace {

// Projection first_slot + k's weight as [W | B in its place, zeros elsewhere], rows `ld` apart,
// where dequantized_weight puts it (the scratch, or kept for the backward that follows).
const bf16* folded_weight(const DevicePass& pass, int layer_index, int first_slot, int k, int64_t ld,
                          DeviceLayerSaved* saved) {
    const int slot = first_slot + k;
    const DeviceLinear& linear = pass.model.layers[layer_index].linears[slot];
    const DeviceLoraModule& module = *pass.lora->module(layer_index, slot);
    bf16* weight = dequantized_weight(pass, linear, saved, slot, ld);
    ProfileScope timed = pass.timed("dequantize base weight");
    lora_weight_columns(weight, ld, linear.out, linear.in, ld - linear.in, module.b, module.rank, k * module.rank,
                        pass.stream());
    return weight;
}

// The columns of a folded set's input rows: its `in` values, then `width` LoRA inputs.
struct FoldedColumns {
    int64_t in, width;
};

FoldedColumns folded_columns(const DevicePass& pass, int layer_index, int first_slot, int count) {
    const int64_t width = lora_fold_width(pass, layer_index, first_slot, count);
    require(width > 0, AXL_ERR_INTERNAL, "folded LoRA for projections ", first_slot, "..", first_slot + count - 1,
            " of layer ", layer_index, ", which do not fold");
    return {pass.model.layers[layer_index].linears[first_slot].in, width};
}

}  // namespace

int64_t lora_fold_width(const DevicePass& pass, int layer_index, int first_slot, int count) {
    const DeviceLoraGroup* group = group_of(pass, layer_index, first_slot, count);
    if (group == nullptr) return 0;
    const DeviceLayer& layer = pass.model.layers[layer_index];
    const int64_t width = group->count * group->rank;
    const int64_t in = layer.linears[first_slot].in;
    if (width % 8 != 0 || in % 8 != 0) return 0;
    for (int k = 0; k < count; ++k) {
        const DeviceLinear& linear = layer.linears[first_slot + k];
        if (!linear.dequantizes_with_row_stride() || fused_small_product(linear, pass.batch.num_tokens())) return 0;
    }
    return width;
}

int64_t weight_scratch_elements(const DevicePass& pass) {
    int64_t largest = 0;
    for (int l = 0; l < static_cast<int>(pass.model.layers.size()); ++l) {
        const DeviceLayer& layer = pass.model.layers[l];
        for (int slot = 0; slot < kDeviceLinearSlots; ++slot) {
            const DeviceLinear& linear = layer.linears[slot];
            if (!linear.is_packed()) continue;
            int64_t width = 0;
            if (slot == kSlotQ || slot == kSlotK || slot == kSlotV) width = lora_fold_width(pass, l, kSlotQ, 3);
            if (slot == kSlotGate || slot == kSlotUp) width = lora_fold_width(pass, l, kSlotGate, 2);
            largest = std::max(largest, linear.out * (linear.in + width));
        }
    }
    return largest;
}

void project_forward_folded(const DevicePass& pass, int layer_index, int first_slot, int count, bf16* x,
                            bf16* const* ys, DeviceLayerSaved* saved) {
    const auto [in, width] = folded_columns(pass, layer_index, first_slot, count);
    const int64_t ld = in + width;
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    {
        // s x A^T into x's extra columns (the GEMM reads the first `in`; no element is both).
        ProfileScope timed = pass.timed("LoRA forward: u = x A^T");
        matmul_strided(blas, x + in, ld, x, ld, group_of(pass, layer_index, first_slot, count)->a, in, n, width, in,
                       false, true, pass.lora->scaling(), 0.0f);
    }
    for (int k = 0; k < count; ++k) {
        const DeviceLinear& linear = pass.model.layers[layer_index].linears[first_slot + k];
        const bf16* weight = folded_weight(pass, layer_index, first_slot, k, ld, saved);
        {
            ProfileScope timed = pass.timed("base GEMM forward");
            matmul(blas, ys[k], x, weight, n, linear.out, ld, false, true, 1.0f, 0.0f);
        }
        if (linear.bias != nullptr) add_bias_forward(ys[k], linear.bias, n, linear.out, pass.stream());
    }
}

void project_backward_folded(const DevicePass& pass, int layer_index, int first_slot, int count,
                             const DeviceLayerSaved& saved, const bf16* x, const bf16* const* dys, bf16* dx) {
    const auto [in, width] = folded_columns(pass, layer_index, first_slot, count);
    const int64_t ld = in + width;
    BlasLt& blas = pass.runtime.blas();
    const int64_t n = pass.batch.num_tokens();
    // [dx | g] = sum_k dy_k [W_k | B_k]: the input gradient of the base products, and g = dy B
    // (per module, in its columns) in the extra columns.
    for (int k = 0; k < count; ++k) {
        const int slot = first_slot + k;
        const DeviceLinear& linear = pass.model.layers[layer_index].linears[slot];
        const bf16* weight = saved.weights[slot].data() != nullptr
                                 ? saved.weights[slot].as<bf16>()
                                 : folded_weight(pass, layer_index, first_slot, k, ld, nullptr);
        ProfileScope timed = pass.timed("base GEMM backward (dx)");
        matmul(blas, dx, dys[k], weight, n, ld, linear.out, false, false, 1.0f, k == 0 ? 0.0f : 1.0f);
    }
    const float s = pass.lora->scaling();
    const bf16* g = dx + in;
    const bf16* su = x + in;  // s x A^T, written by the forward
    for (int k = 0; k < count; ++k) {
        const DeviceLoraModule& module = *pass.lora->module(layer_index, first_slot + k);
        ProfileScope timed = pass.timed("LoRA backward: dB += s dy^T u");
        matmul_strided(blas, module.grad_b, module.rank, dys[k], module.out, su + k * module.rank, ld, module.out,
                       module.rank, n, true, false, 1.0f, 1.0f);
    }
    const DeviceLoraGroup& group = *group_of(pass, layer_index, first_slot, count);
    {
        ProfileScope timed = pass.timed("LoRA backward: dA += du^T x");
        matmul_strided(blas, group.grad_a, in, g, ld, x, ld, width, in, n, true, false, s, 1.0f);
    }
    ProfileScope timed = pass.timed("LoRA backward: dx (+)= du A");
    matmul_strided(blas, dx, ld, g, ld, group.a, in, n, in, width, false, false, s, 1.0f);
}

}  // namespace axl::cuda
