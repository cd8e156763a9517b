// Helpers shared by the tests of engram::collections: stores over a fresh
// budget, uploads of in-memory matrices, temporary directories and raw file
// edits for corruption tests.
#ifndef ENGRAM_TESTS_CORE_COLLECTIONS_TEST_UTIL_H_
#define ENGRAM_TESTS_CORE_COLLECTIONS_TEST_UTIL_H_

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/collections/collection_store.h"
#include "core/collections/memory_budget.h"
#include "gtest/gtest.h"

namespace engram::collections::testing {

inline std::shared_ptr<MemoryBudget> MakeBudget(uint64_t limit = 1 << 30) {
  MemoryBudget::Options options;
  options.limit_bytes = limit;
  return *MemoryBudget::Create(options);
}

inline std::unique_ptr<CollectionStore> MakeStore(
    std::shared_ptr<MemoryBudget> budget) {
  CollectionStore::Options options;
  options.budget = std::move(budget);
  return *CollectionStore::Create(options);
}

// Stages `values` (rows x dim) in chunks of `chunk_rows` rows, with `ids`
// when given, as the chunks of a stream arrive (a durable upload's rows go
// to its segment file as they come), and returns the uncommitted upload.
inline absl::StatusOr<std::unique_ptr<CollectionUpload>> Stage(
    CollectionStore& store, const std::string& name, uint32_t dim,
    const std::vector<float>& values, const std::vector<uint64_t>& ids,
    bool create, uint64_t chunk_rows) {
  UploadOptions o;
  o.name = name;
  o.create = create;
  o.dimension = create ? dim : 0;
  o.rows = values.size() / dim;
  o.with_ids = !ids.empty();
  auto upload = store.BeginUpload(o);
  if (!upload.ok()) return upload.status();
  for (uint64_t r = 0; r < o.rows; r += chunk_rows) {
    const uint64_t n = std::min(chunk_rows, o.rows - r);
    absl::Status s =
        (*upload)->Append(kernels::MatrixView{values.data() + r * dim,
                                              static_cast<size_t>(n), dim},
                          ids.empty() ? absl::Span<const uint64_t>()
                                      : absl::MakeConstSpan(ids.data() + r, n));
    if (!s.ok()) return s;
  }
  return upload;
}

// Creates collection `name` holding `values` (rows x dim) in one upload (or
// appends them, with create false). Unlike Stage it hands `ids` to Append
// whole, so that a test may pass a wrong number of them.
inline absl::StatusOr<std::shared_ptr<const Collection>> Upload(
    CollectionStore& store, const std::string& name, uint32_t dim,
    const std::vector<float>& values, const std::vector<uint64_t>& ids = {},
    bool create = true) {
  UploadOptions o;
  o.name = name;
  o.create = create;
  o.dimension = create ? dim : 0;
  o.rows = values.size() / dim;
  o.with_ids = !ids.empty();
  auto upload = store.BeginUpload(o);
  if (!upload.ok()) return upload.status();
  absl::Status s = (*upload)->Append(
      kernels::MatrixView{values.data(), values.size() / dim, dim}, ids);
  if (!s.ok()) return s;
  return (*upload)->Commit();
}

// A fresh empty directory for this test.
inline std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/collections_",
                   info->test_suite_name(), "_", info->name(), "_", ::getpid());
  std::system(
      absl::StrCat("rm -rf '", dir, "' && mkdir -p '", dir, "'").c_str());
  return dir;
}

inline std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace engram::collections::testing

#endif  // ENGRAM_TESTS_CORE_COLLECTIONS_TEST_UTIL_H_
