// The two checksums resident data files use, implemented once:
//
// - CRC32C (Castagnoli), guarding engram's own snapshot files: it has to
//   check gigabytes at start-up, so it runs on the CPU's crc32 instruction
//   where there is one (SSE4.2, decided once at run time), with a
//   table-driven fallback that gives the same results everywhere else. It is
//   strong enough to catch the torn writes and flipped bits it is there for.
// - SHA-256, for the optional sidecar of a .npy file ("<file>.sha256", as
//   `sha256sum` writes it), because that is the checksum an operator can
//   produce for a file made elsewhere with standard tools. It comes from
//   OpenSSL's libcrypto, which has the CPU-specific code a hand-written
//   version lacks.
//
// Thread-safety: the functions are pure; a Sha256 object belongs to one
// thread at a time.
#ifndef ENGRAM_CORE_COLLECTIONS_CHECKSUM_H_
#define ENGRAM_CORE_COLLECTIONS_CHECKSUM_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

// OpenSSL's digest context (EVP_MD_CTX), declared here so that callers do not
// see OpenSSL's headers.
struct evp_md_ctx_st;

namespace engram::collections {

// Extends the CRC32C `crc` (0 to start) over `size` bytes at `data`:
// Crc32c(b, Crc32c(a)) == Crc32c(a + b). Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t Crc32c(absl::string_view bytes, uint32_t crc = 0) {
  return Crc32c(bytes.data(), bytes.size(), crc);
}

// The CRC32C of a + b from Crc32c(a), Crc32c(b) and b's size, in O(log
// size_b): checksums of blocks computed apart (on several threads, or as the
// blocks arrive out of file order) join into the checksum of the whole.
uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t size_b);

namespace internal {

// The table-driven CRC32C that Crc32c falls back to without the crc32
// instruction, public so that tests and benchmarks can hold the two paths
// against each other.
uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc = 0);

// Whether Crc32c runs on the crc32 instruction on this CPU.
bool Crc32cUsesHardware();

}  // namespace internal

// Incremental SHA-256 (FIPS 180-4). Movable, not copyable; a moved-from
// object may only be destroyed or assigned to.
class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  ~Sha256();

  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // The digest of everything updated so far; the object must not be updated
  // afterwards.
  std::array<uint8_t, 32> Finish();
  // Finish() as 64 lowercase hex digits.
  std::string FinishHex();

 private:
  struct ContextDeleter {
    void operator()(evp_md_ctx_st* ctx) const;
  };

  std::unique_ptr<evp_md_ctx_st, ContextDeleter> ctx_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_CHECKSUM_H_
