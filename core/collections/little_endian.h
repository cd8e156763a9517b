// Fixed-width integers in the little-endian byte order of the resident
// data files (snapshot.h, data_dir.h), written and read with memcpy: the
// files are read only on little-endian hosts, which every platform we build
// for is.
#ifndef ENGRAM_CORE_COLLECTIONS_LITTLE_ENDIAN_H_
#define ENGRAM_CORE_COLLECTIONS_LITTLE_ENDIAN_H_

#include <cstring>

namespace engram::collections {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "resident data files are little-endian and written with memcpy");

template <typename T>
void StoreLittleEndian(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

template <typename T>
T LoadLittleEndian(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_LITTLE_ENDIAN_H_
