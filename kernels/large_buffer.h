// Uninitialised scratch arrays for the kernels' large per-call buffers
// (spreading's in-edge lists run to hundreds of MB).
//
// A std::vector of that size is zeroed by the constructor and then by the
// kernel again as 4 KiB pages fault in, one by one: for a fresh 200 MB
// buffer that costs more than the pass that fills it. LargeBuffer leaves the
// contents uninitialised and, on Linux, asks for transparent huge pages
// (madvise(MADV_HUGEPAGE), which the default "madvise" THP mode honours), so
// the same buffer faults in as 100 pages of 2 MiB.
//
// Thread-safety: like a plain array; concurrent writes to distinct elements
// are fine.
#ifndef ENGRAM_KERNELS_LARGE_BUFFER_H_
#define ENGRAM_KERNELS_LARGE_BUFFER_H_

#include <cstddef>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace engram::kernels {

template <typename T>
class LargeBuffer {
  static_assert(std::is_trivially_copyable_v<T> &&
                    std::is_trivially_destructible_v<T>,
                "LargeBuffer holds plain data only");

 public:
  LargeBuffer() = default;
  // Room for `size` elements, uninitialised. Throws std::bad_alloc like a
  // std::vector when the memory is not there.
  explicit LargeBuffer(size_t size) : size_(size) {
    if (size == 0) return;
    const size_t bytes = RoundUp(size * sizeof(T));
    void* p = nullptr;
    if (posix_memalign(&p, Alignment(bytes), bytes) != 0) {
      throw std::bad_alloc();
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Advice only: without THP the buffer works the same, with small pages.
    if (bytes >= kHugePage) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    data_ = static_cast<T*>(p);
  }
  LargeBuffer(LargeBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  LargeBuffer& operator=(LargeBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;
  ~LargeBuffer() { std::free(data_); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  static constexpr size_t kHugePage = size_t{2} << 20;

  // Whole huge pages for large buffers, so that madvise covers them all.
  static size_t RoundUp(size_t bytes) {
    return bytes < kHugePage ? bytes
                             : (bytes + kHugePage - 1) / kHugePage * kHugePage;
  }
  static size_t Alignment(size_t bytes) {
    return bytes < kHugePage ? 64 : kHugePage;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_LARGE_BUFFER_H_
