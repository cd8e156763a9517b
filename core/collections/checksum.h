// The two checksums resident data files use, implemented once:
//
// - CRC32C (Castagnoli), guarding engram's own snapshot files: fast enough
//   (table-driven, eight bytes a step) to check gigabytes at start-up, and
//   strong enough to catch the torn writes and flipped bits it is there for.
// - SHA-256, for the optional sidecar of a .npy file ("<file>.sha256", as
//   `sha256sum` writes it), because that is the checksum an operator can
//   produce for a file made elsewhere with standard tools.
//
// Thread-safety: the functions are pure; a Sha256 object belongs to one
// thread at a time.
#ifndef ENGRAM_CORE_COLLECTIONS_CHECKSUM_H_
#define ENGRAM_CORE_COLLECTIONS_CHECKSUM_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace engram::collections {

// Extends the CRC32C `crc` (0 to start) over `size` bytes at `data`:
// Crc32c(b, Crc32c(a)) == Crc32c(a + b). Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t Crc32c(absl::string_view bytes, uint32_t crc = 0) {
  return Crc32c(bytes.data(), bytes.size(), crc);
}

// Incremental SHA-256 (FIPS 180-4).
class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // The digest of everything updated so far; the object must not be updated
  // afterwards.
  std::array<uint8_t, 32> Finish();
  // Finish() as 64 lowercase hex digits.
  std::string FinishHex();

 private:
  void Block(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_CHECKSUM_H_
