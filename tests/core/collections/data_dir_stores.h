// The stores of one process over a data directory, wired as ResidentData
// wires them (the directory is both stores' journal), for the data
// directory's tests; with a catalog, one replica of shared mode.
#ifndef ENGRAM_TESTS_CORE_COLLECTIONS_DATA_DIR_STORES_H_
#define ENGRAM_TESTS_CORE_COLLECTIONS_DATA_DIR_STORES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/collections/catalog.h"
#include "core/collections/data_dir.h"
#include "core/validation.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/time_scale.h"

namespace engram::collections::testing {

struct DataDirStores {
  explicit DataDirStores(const std::string& path,
                         std::shared_ptr<Catalog> catalog = nullptr,
                         uint64_t budget_bytes = 1 << 30,
                         bool map_segments = true,
                         bool background_merge = true) {
    DataDir::Options options;
    options.path = path;
    options.catalog = std::move(catalog);
    options.map_segments = map_segments;
    dir = *DataDir::Open(options);
    auto budget = MakeBudget(budget_bytes);
    CollectionStore::Options c;
    c.budget = budget;
    c.journal = dir.get();
    collections = *CollectionStore::Create(c);
    GraphStore::Options g;
    g.budget = budget;
    g.journal = dir->graph_journal();
    g.validate = [](const kernels::GraphView& graph) {
      dispatch::SpreadJob job;
      job.graph = graph;
      return core::ValidateSpreadJob(job, core::RequestLimits());
    };
    g.background_merge = background_merge;
    graphs = *GraphStore::Create(g);
  }
  // Changes from the catalog stop before the stores go.
  ~DataDirStores() { dir->StopFollowing(); }

  std::vector<LoadOutcome> Load() {
    return *dir->Load(collections.get(), graphs.get());
  }
  // Shared mode: loads, then follows the catalog.
  void LoadAndFollow() {
    Load();
    ASSERT_TRUE(dir->Follow().ok());
  }
  // The collection once it is at `version`, waiting for the catalog.
  std::shared_ptr<const Collection> At(const std::string& name,
                                       uint64_t version) {
    auto c = collections->GetAtLeast(
        name, version, engram::testing::Scaled(absl::Seconds(10)));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  std::unique_ptr<DataDir> dir;
  std::unique_ptr<CollectionStore> collections;
  std::unique_ptr<GraphStore> graphs;
};

// Every row of a collection, in order, and every row's stored id.
inline std::vector<float> RowsOf(const Collection& c) {
  std::vector<float> out;
  for (const auto& s : c.segments()) {
    const kernels::MatrixView& v = s->vectors();
    out.insert(out.end(), v.data, v.data + v.rows * v.cols);
  }
  return out;
}
inline std::vector<uint64_t> IdsOf(const Collection& c) {
  std::vector<uint64_t> out;
  for (uint64_t r = 0; r < c.rows(); ++r) out.push_back(c.IdOf(r));
  return out;
}

}  // namespace engram::collections::testing

#endif  // ENGRAM_TESTS_CORE_COLLECTIONS_DATA_DIR_STORES_H_
