#include "model/model.hpp"

namespace axl {

std::vector<const Linear*> Model::decoder_linears() const {
    std::vector<const Linear*> out;
    out.reserve(layers.size() * 7);
    for (const DecoderLayer& layer : layers) {
        for (const Linear* linear : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                                     &layer.gate_proj, &layer.up_proj, &layer.down_proj})
            out.push_back(linear);
    }
    return out;
}

}  // namespace axl
