#include "core/collections/checksum.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace engram::collections {
namespace {

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  // RFC 3720 B.4: 32 bytes of zeros.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
}

TEST(Crc32cTest, IncrementalEqualsWholeAtEverySplit) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 31 + 7));
  const uint32_t whole = Crc32c(data);
  for (size_t split = 0; split <= data.size(); split += 13) {
    const uint32_t first = Crc32c(data.substr(0, split));
    EXPECT_EQ(Crc32c(data.substr(split), first), whole) << split;
  }
  // Unaligned starts take the same path as aligned ones.
  EXPECT_EQ(Crc32c(data.data() + 1, 100), Crc32c(data.substr(1, 100)));
}

TEST(Crc32cTest, DetectsASingleFlippedBit) {
  std::string data(4096, 'x');
  const uint32_t before = Crc32c(data);
  data[1234] ^= 0x10;
  EXPECT_NE(Crc32c(data), before);
}

// Random bytes from a fixed seed, so that a failure reproduces.
std::vector<uint8_t> RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(size);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

TEST(Crc32cTest, PortableKnownVectors) {
  EXPECT_EQ(internal::Crc32cPortable("", 0), 0u);
  EXPECT_EQ(internal::Crc32cPortable("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(internal::Crc32cPortable(zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Crc32cTest, UsesTheCrc32InstructionWhereThereIsOne) {
#if defined(__x86_64__)
  EXPECT_EQ(internal::Crc32cUsesHardware(),
            static_cast<bool>(__builtin_cpu_supports("sse4.2")));
#else
  EXPECT_FALSE(internal::Crc32cUsesHardware());
#endif
  if (!internal::Crc32cUsesHardware()) {
    GTEST_SKIP() << "no crc32 instruction: the comparisons below hold the "
                    "table path against itself";
  }
}

// Every length up to 1024 from every start within a 64-byte line, with a
// random initial CRC: covers the byte steps to an eight-byte boundary, the
// word steps, the trailing bytes and the three-chain short blocks (768
// bytes and up).
TEST(Crc32cTest, HardwareEqualsPortableAtEveryLengthAndAlignment) {
  const std::vector<uint8_t> data = RandomBytes(1024 + 64, 1);
  std::mt19937 rng(2);
  for (size_t size = 0; size <= 1024; ++size) {
    for (size_t offset = 0; offset < 64; ++offset) {
      const uint32_t seed = offset == 0 ? 0 : static_cast<uint32_t>(rng());
      const uint8_t* p = data.data() + offset;
      ASSERT_EQ(Crc32c(p, size, seed), internal::Crc32cPortable(p, size, seed))
          << "size " << size << " offset " << offset << " seed " << seed;
    }
  }
}

// Lengths around the multiples of the short (3 x 256) and long (3 x 8192)
// three-chain blocks, where one kind of step hands over to the next.
TEST(Crc32cTest, HardwareEqualsPortableAroundBlockBoundaries) {
  const std::vector<uint8_t> data = RandomBytes(4 * 3 * 8192 + 64, 3);
  std::mt19937 rng(4);
  std::vector<size_t> sizes;
  for (size_t block : {size_t{3 * 256}, size_t{3 * 8192}}) {
    for (size_t k = 1; k <= 4; ++k) {
      for (size_t delta = 0; delta <= 24; ++delta) {
        sizes.push_back(k * block + delta);
        sizes.push_back(k * block - delta);
      }
    }
  }
  sizes.push_back(3 * 8192 + 3 * 256);
  sizes.push_back(3 * 8192 + 3 * 256 - 1);
  sizes.push_back(2 * 3 * 8192 + 2 * 3 * 256 + 7);
  for (size_t size : sizes) {
    for (size_t offset = 0; offset < 16; ++offset) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      const uint8_t* p = data.data() + offset;
      ASSERT_EQ(Crc32c(p, size, seed), internal::Crc32cPortable(p, size, seed))
          << "size " << size << " offset " << offset;
    }
  }
}

TEST(Crc32cTest, HardwareEqualsPortableOnMebibytes) {
  const std::vector<uint8_t> data = RandomBytes((size_t{5} << 20) + 64, 5);
  std::mt19937 rng(6);
  for (int round = 0; round < 16; ++round) {
    const size_t offset = rng() % 64;
    const size_t size = (size_t{1} << 20) + rng() % (size_t{4} << 20);
    const uint32_t seed = static_cast<uint32_t>(rng());
    const uint8_t* p = data.data() + offset;
    ASSERT_EQ(Crc32c(p, size, seed), internal::Crc32cPortable(p, size, seed))
        << "size " << size << " offset " << offset;
  }
  EXPECT_EQ(Crc32c(data.data(), data.size()),
            internal::Crc32cPortable(data.data(), data.size()));
}

// Chaining over random splits, as snapshot files are checked chunk by chunk,
// with either path on either side of the split.
TEST(Crc32cTest, ChainsAcrossRandomSplits) {
  const std::vector<uint8_t> data = RandomBytes((size_t{3} << 20) + 5, 7);
  const uint32_t whole = internal::Crc32cPortable(data.data(), data.size());
  EXPECT_EQ(Crc32c(data.data(), data.size()), whole);
  std::mt19937 rng(8);
  for (int round = 0; round < 64; ++round) {
    const size_t split = rng() % (data.size() + 1);
    const uint8_t* p = data.data();
    const size_t rest = data.size() - split;
    EXPECT_EQ(Crc32c(p + split, rest, Crc32c(p, split)), whole) << split;
    EXPECT_EQ(Crc32c(p + split, rest, internal::Crc32cPortable(p, split)),
              whole)
        << split;
    EXPECT_EQ(internal::Crc32cPortable(p + split, rest, Crc32c(p, split)),
              whole)
        << split;
  }
  // Many small pieces of random sizes.
  uint32_t crc = 0;
  for (size_t at = 0; at < data.size();) {
    const size_t piece = std::min<size_t>(rng() % 40000, data.size() - at);
    crc = Crc32c(data.data() + at, piece, crc);
    at += piece;
  }
  EXPECT_EQ(crc, whole);
}

// Checksums of pieces computed apart join into the checksum of the whole,
// at every kind of split: empty sides, odd sizes, more than 4 GiB declared.
TEST(Crc32cTest, CombineJoinsPiecesComputedApart) {
  const std::vector<uint8_t> data = RandomBytes((size_t{1} << 20) + 3, 9);
  const uint32_t whole = Crc32c(data.data(), data.size());
  std::mt19937 rng(10);
  std::vector<size_t> splits = {0, 1, 7, 8, 9, data.size() - 1, data.size()};
  for (int round = 0; round < 64; ++round) {
    splits.push_back(rng() % (data.size() + 1));
  }
  for (size_t split : splits) {
    const uint8_t* p = data.data();
    EXPECT_EQ(
        Crc32cCombine(Crc32c(p, split), Crc32c(p + split, data.size() - split),
                      data.size() - split),
        whole)
        << split;
  }
  // Many pieces, as parallel workers produce them, joined left to right.
  uint32_t crc = 0;
  for (size_t at = 0; at < data.size();) {
    const size_t piece = std::min<size_t>(rng() % 70000, data.size() - at);
    crc = Crc32cCombine(crc, Crc32c(data.data() + at, piece), piece);
    at += piece;
  }
  EXPECT_EQ(crc, whole);
}

TEST(Crc32cTest, CombineAcrossZerosOfAnySize) {
  // Appending n zero bytes by brute force against the combine's operator.
  const std::string head = "engram";
  for (uint64_t zeros :
       {uint64_t{1}, uint64_t{3}, uint64_t{4096}, uint64_t{100003}}) {
    const std::string whole = head + std::string(zeros, '\0');
    EXPECT_EQ(
        Crc32cCombine(Crc32c(head), Crc32c(std::string(zeros, '\0')), zeros),
        Crc32c(whole))
        << zeros;
  }
  // A size beyond 32 bits uses the high powers: combining with an empty B
  // of that size must differ from a zero shift, and combining twice by
  // halves must equal once by the whole.
  const uint32_t a = Crc32c(head);
  const uint64_t big = (uint64_t{5} << 32) + 12345;
  const uint32_t zero_crc_half = 0;  // shift only
  EXPECT_EQ(Crc32cCombine(Crc32cCombine(a, zero_crc_half, big / 2),
                          zero_crc_half, big - big / 2),
            Crc32cCombine(a, zero_crc_half, big));
  EXPECT_NE(Crc32cCombine(a, 0, big), a);
}

std::string Sha(const std::string& s) {
  Sha256 h;
  h.Update(s);
  return h.FinishHex();
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, IncrementalEqualsWhole) {
  std::string data;
  for (int i = 0; i < 777; ++i) data.push_back(static_cast<char>(i));
  for (size_t split : {0, 1, 55, 56, 63, 64, 65, 500, 777}) {
    Sha256 h;
    h.Update(data.substr(0, split));
    h.Update(data.substr(split));
    EXPECT_EQ(h.FinishHex(), Sha(data)) << split;
  }
}

TEST(Sha256Test, RandomPiecesEqualWhole) {
  const std::vector<uint8_t> data = RandomBytes((size_t{1} << 20) + 3, 9);
  Sha256 whole;
  whole.Update(data.data(), data.size());
  const std::string expected = whole.FinishHex();
  std::mt19937 rng(10);
  for (int round = 0; round < 8; ++round) {
    Sha256 h;
    for (size_t at = 0; at < data.size();) {
      const size_t piece = std::min<size_t>(rng() % 300, data.size() - at);
      h.Update(data.data() + at, piece);
      at += piece;
    }
    EXPECT_EQ(h.FinishHex(), expected) << round;
  }
}

TEST(Sha256Test, MovedObjectCarriesItsState) {
  Sha256 h;
  h.Update("ab");
  Sha256 moved(std::move(h));
  moved.Update("c");
  Sha256 assigned;
  assigned.Update("discarded");
  assigned = std::move(moved);
  EXPECT_EQ(assigned.FinishHex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace engram::collections
