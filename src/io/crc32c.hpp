// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the model cache: the
// SSE4.2 crc32 instruction where the CPU has it (several GB/s a core, faster than a disk), a
// table-driven loop elsewhere. Both give the same value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace axl {

// CRC-32C of `size` bytes, continuing from `crc` (0 for a fresh checksum).
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace axl
