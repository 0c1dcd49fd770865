// Two 4-bit codes per byte. The reference libraries disagree on which element of a pair takes
// the high nibble (docs/formats.md §3 table), so every caller names the order it follows.
#pragma once

#include <cstdint>

namespace axl {

enum class NibbleOrder {
    FirstHigh,  // bitsandbytes: element 2i in bits 7..4
    FirstLow,   // torchao pack_uint4 / mslk pack_int4, GPT-OSS MXFP4: element 2i in bits 3..0
};

inline uint8_t pack_nibbles(uint8_t first, uint8_t second, NibbleOrder order) {
    return order == NibbleOrder::FirstHigh ? static_cast<uint8_t>(((first & 0xf) << 4) | (second & 0xf))
                                           : static_cast<uint8_t>(((second & 0xf) << 4) | (first & 0xf));
}

// The 4-bit code of element `index` of a packed row-major tensor.
inline uint8_t unpack_nibble(const uint8_t* packed, int64_t index, NibbleOrder order) {
    const uint8_t byte = packed[index / 2];
    const bool high = (index % 2 == 0) == (order == NibbleOrder::FirstHigh);
    return high ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0xf);
}

}  // namespace axl
