#include "core/collections/checksum.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/escaping.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace engram::collections {
namespace {

// The reflected CRC32C polynomial.
constexpr uint32_t kPolynomial = 0x82F63B78u;

// Slicing-by-8 tables: kTables[0] is the classic byte table; kTables[j]
// advances a byte through j more zero bytes, so eight table lookups consume
// eight input bytes at once.
struct Crc32cTables {
  uint32_t t[8][256];
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (kPolynomial & (0u - (c & 1)));
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int j = 1; j < 8; ++j) {
        t[j][i] = (t[j - 1][i] >> 8) ^ t[0][t[j - 1][i] & 0xff];
      }
    }
  }
};

const Crc32cTables& Tables() {
  static const Crc32cTables* const tables = new Crc32cTables();
  return *tables;
}

// A linear map on CRC registers as a 32x32 matrix over GF(2): row n is the
// image of bit n.
using Gf2Matrix = std::array<uint32_t, 32>;

uint32_t Apply(const Gf2Matrix& m, uint32_t v) {
  uint32_t sum = 0;
  for (int n = 0; v != 0; ++n, v >>= 1) {
    if (v & 1) sum ^= m[n];
  }
  return sum;
}

Gf2Matrix Square(const Gf2Matrix& m) {
  Gf2Matrix square;
  for (int n = 0; n < 32; ++n) square[n] = Apply(m, m[n]);
  return square;
}

// The map that appends one zero bit to a CRC register: the low bit shifts
// out and, if set, brings in the polynomial.
Gf2Matrix OneZeroBit() {
  Gf2Matrix op;
  op[0] = kPolynomial;
  for (int n = 1; n < 32; ++n) op[n] = uint32_t{1} << (n - 1);
  return op;
}

// ops[k] appends 2^k zero bytes, so appending any count costs one Apply per
// set bit of the count.
struct ZeroBytePowers {
  std::array<Gf2Matrix, 64> ops;
  ZeroBytePowers() {
    Gf2Matrix op = OneZeroBit();
    for (int i = 0; i < 3; ++i) op = Square(op);  // 8 bits: one byte
    for (int k = 0; k < 64; ++k) {
      ops[k] = op;
      op = Square(op);
    }
  }
};

const ZeroBytePowers& Powers() {
  static const ZeroBytePowers* const powers = new ZeroBytePowers();
  return *powers;
}

#if defined(__x86_64__)

// The crc32 instruction has a latency of three cycles but can start one
// every cycle, so a single chain of them runs at a third of the possible
// speed. The hardware path therefore computes three independent CRCs over
// adjacent blocks and combines them: the CRC of the first block is advanced
// over the length of the next (as if followed by that many zero bytes, a
// linear map) and XORed with the CRC of the next, started from zero. Long
// blocks keep the cost of combining small; short ones let inputs of a few
// hundred bytes use three chains too.
constexpr size_t kLongBlock = 8192;
constexpr size_t kShortBlock = 256;

// The map that appends `bytes` zero bytes (a power of two) to a CRC register,
// as four byte-indexed tables so that applying it costs four lookups.
struct ZerosOperator {
  uint32_t t[4][256];
  explicit ZerosOperator(size_t bytes) {
    Gf2Matrix op = OneZeroBit();
    for (size_t bits = 1; bits < 8 * bytes; bits *= 2) op = Square(op);
    for (uint32_t i = 0; i < 256; ++i) {
      for (int j = 0; j < 4; ++j) t[j][i] = Apply(op, i << (8 * j));
    }
  }
  uint32_t Shift(uint32_t crc) const {
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^
           t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
  }
};

struct ZerosOperators {
  ZerosOperator long_block{kLongBlock};
  ZerosOperator short_block{kShortBlock};
};

const ZerosOperators& Operators() {
  static const ZerosOperators* const operators = new ZerosOperators();
  return *operators;
}

__attribute__((target("sse4.2"))) inline uint64_t Crc8Bytes(uint64_t crc,
                                                            const uint8_t* p) {
  uint64_t word;
  std::memcpy(&word, p, sizeof(word));
  return _mm_crc32_u64(crc, word);
}

// Three chains over `block` bytes each from `*p`, combined into `crc`.
__attribute__((target("sse4.2"))) inline uint64_t Crc3Blocks(
    uint64_t crc, const uint8_t** p, size_t block, const ZerosOperator& zeros) {
  const uint8_t* next = *p;
  const uint8_t* const end = next + block;
  uint64_t crc1 = 0;
  uint64_t crc2 = 0;
  do {
    crc = Crc8Bytes(crc, next);
    crc1 = Crc8Bytes(crc1, next + block);
    crc2 = Crc8Bytes(crc2, next + 2 * block);
    next += 8;
  } while (next < end);
  crc = zeros.Shift(static_cast<uint32_t>(crc)) ^ crc1;
  crc = zeros.Shift(static_cast<uint32_t>(crc)) ^ crc2;
  *p = next + 2 * block;
  return crc;
}

__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(const void* data,
                                                       size_t size,
                                                       uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~crc;
  // Byte steps up to an eight-byte boundary, so the word loads below do not
  // straddle cache lines.
  while (size > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --size;
  }
  const ZerosOperators& ops = Operators();
  while (size >= 3 * kLongBlock) {
    c = Crc3Blocks(c, &p, kLongBlock, ops.long_block);
    size -= 3 * kLongBlock;
  }
  while (size >= 3 * kShortBlock) {
    c = Crc3Blocks(c, &p, kShortBlock, ops.short_block);
    size -= 3 * kShortBlock;
  }
  while (size >= 8) {
    c = Crc8Bytes(c, p);
    p += 8;
    size -= 8;
  }
  while (size-- > 0) c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
  return ~static_cast<uint32_t>(c);
}

#endif  // defined(__x86_64__)

using Crc32cFunction = uint32_t (*)(const void*, size_t, uint32_t);

Crc32cFunction ChooseCrc32c() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return Crc32cSse42;
#endif
  return internal::Crc32cPortable;
}

Crc32cFunction Crc32cImplementation() {
  static const Crc32cFunction function = ChooseCrc32c();
  return function;
}

// OpenSSL's digest calls fail only when memory runs out or the library is
// misconfigured, neither of which a caller checking a file could handle: so
// Sha256 keeps an interface that cannot fail, and stops the process instead.
void CheckOpenSsl(bool ok, const char* call) {
  if (ok) return;
  std::fprintf(stderr, "engram: OpenSSL %s failed for SHA-256\n", call);
  std::abort();
}

}  // namespace

namespace internal {

uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc) {
  const auto& t = Tables().t;
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  while (size >= 8) {
    // Byte-wise loads keep this independent of alignment and endianness.
    const uint32_t lo = crc ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 |
                               uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
          t[4][lo >> 24] ^ t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    p += 8;
    size -= 8;
  }
  while (size-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

bool Crc32cUsesHardware() { return Crc32cImplementation() != Crc32cPortable; }

}  // namespace internal

uint32_t Crc32c(const void* data, size_t size, uint32_t crc) {
  return Crc32cImplementation()(data, size, crc);
}

uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t size_b) {
  // Appending B to A appends size_b zero bytes to A's register and then
  // XORs in B's CRC: the pre- and post-inversions cancel, as in zlib's
  // crc32_combine.
  const ZeroBytePowers& powers = Powers();
  for (int k = 0; size_b != 0; ++k, size_b >>= 1) {
    if (size_b & 1) crc_a = Apply(powers.ops[k], crc_a);
  }
  return crc_a ^ crc_b;
}

void Sha256::ContextDeleter::operator()(evp_md_ctx_st* ctx) const {
  EVP_MD_CTX_free(ctx);
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  CheckOpenSsl(ctx_ != nullptr, "EVP_MD_CTX_new");
  CheckOpenSsl(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1,
               "EVP_DigestInit_ex");
}

Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::Update(const void* data, size_t size) {
  CheckOpenSsl(EVP_DigestUpdate(ctx_.get(), data, size) == 1,
               "EVP_DigestUpdate");
}

std::array<uint8_t, 32> Sha256::Finish() {
  std::array<uint8_t, 32> digest;
  unsigned int length = 0;
  CheckOpenSsl(EVP_DigestFinal_ex(ctx_.get(), digest.data(), &length) == 1 &&
                   length == digest.size(),
               "EVP_DigestFinal_ex");
  return digest;
}

std::string Sha256::FinishHex() {
  const std::array<uint8_t, 32> digest = Finish();
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
}

}  // namespace engram::collections
