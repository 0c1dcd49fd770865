#include "io/crc32c.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace axl {
namespace {

// Bit at a time, straight from the definition: the reference the fast paths are checked against.
uint32_t crc32c_bitwise(const unsigned char* p, size_t size) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < size; ++i) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
    }
    return ~crc;
}

TEST(Crc32c, KnownCheckValues) {
    // RFC 3720 (iSCSI) appendix B.4 and the CRC catalogue's check value.
    const std::string digits = "123456789";
    EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
    const std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xff);
    EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
    EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
    EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, MatchesTheDefinitionAtEveryLengthAndAlignment) {
    std::vector<unsigned char> bytes(300);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 131 + 7);
    for (size_t offset = 0; offset < 8; ++offset)
        for (size_t size = 0; size + offset <= bytes.size(); size += 13)
            ASSERT_EQ(crc32c(bytes.data() + offset, size), crc32c_bitwise(bytes.data() + offset, size))
                << "offset " << offset << " size " << size;
}

TEST(Crc32c, ContinuesAcrossPieces) {
    std::vector<unsigned char> bytes(1000);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i ^ (i >> 3));
    const uint32_t whole = crc32c(bytes.data(), bytes.size());
    const uint32_t first = crc32c(bytes.data(), 333);
    EXPECT_EQ(crc32c(bytes.data() + 333, bytes.size() - 333, first), whole);
}

}  // namespace
}  // namespace axl
