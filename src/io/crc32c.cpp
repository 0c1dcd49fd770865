#include "io/crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace axl {

namespace {

constexpr uint32_t kPolynomial = 0x82F63B78u;  // Castagnoli, bit-reversed

// table[k][b]: the CRC of byte b followed by k zero bytes, for eight bytes a step.
std::array<std::array<uint32_t, 256>, 8> make_tables() {
    std::array<std::array<uint32_t, 256>, 8> tables{};
    for (uint32_t b = 0; b < 256; ++b) {
        uint32_t crc = b;
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kPolynomial : 0u);
        tables[0][b] = crc;
    }
    for (int k = 1; k < 8; ++k)
        for (uint32_t b = 0; b < 256; ++b)
            tables[k][b] = (tables[k - 1][b] >> 8) ^ tables[0][tables[k - 1][b] & 0xffu];
    return tables;
}

uint32_t crc32c_portable(const unsigned char* p, size_t size, uint32_t crc) {
    static const auto tables = make_tables();
    while (size >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);  // little-endian hosts only (axl's targets)
        word ^= crc;
        crc = tables[7][word & 0xff] ^ tables[6][(word >> 8) & 0xff] ^ tables[5][(word >> 16) & 0xff] ^
              tables[4][(word >> 24) & 0xff] ^ tables[3][(word >> 32) & 0xff] ^
              tables[2][(word >> 40) & 0xff] ^ tables[1][(word >> 48) & 0xff] ^ tables[0][word >> 56];
        p += 8;
        size -= 8;
    }
    while (size-- > 0) crc = (crc >> 8) ^ tables[0][(crc ^ *p++) & 0xffu];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const unsigned char* p, size_t size, uint32_t crc) {
    uint64_t state = crc;
    while (size >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);
        state = _mm_crc32_u64(state, word);
        p += 8;
        size -= 8;
    }
    uint32_t tail = static_cast<uint32_t>(state);
    while (size-- > 0) tail = _mm_crc32_u8(tail, *p++);
    return tail;
}
#endif

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
#if defined(__x86_64__)
    static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
    crc = has_sse42 ? crc32c_sse42(p, size, crc) : crc32c_portable(p, size, crc);
#else
    crc = crc32c_portable(p, size, crc);
#endif
    return ~crc;
}

}  // namespace axl
