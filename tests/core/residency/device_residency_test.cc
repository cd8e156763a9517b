// Tests of DeviceResidency (core/residency/device_residency.h) over a real
// CollectionStore and the fault-injecting simulated GPU: uploads ahead of
// use, LRU eviction under a small budget, failures, the sticky stop,
// deletion, re-admission, and searches through the HybridExecutor reading
// the resident copies with the CPU's results.
#include "core/residency/device_residency.h"

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/collections/collection_store.h"
#include "core/collections/memory_budget.h"
#include "core/collections/resident_metrics.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/testing/random_data.h"

namespace engram::residency {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kDim = 16;
constexpr uint64_t kRows = 64;
// ResidentFootprintBytes(64, 16): 4096 + 512 + 260.
constexpr uint64_t kSegmentBytes = 4868;
// A device of 100 000 bytes; with device_fraction 0.1 the budget holds two
// segments, not three.
constexpr uint64_t kDeviceBytes = 100000;

// The value of the counter or gauge `name` whose labels include `labels`.
double MetricValue(prometheus::Registry& registry, const std::string& name,
                   const std::map<std::string, std::string>& labels = {}) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      bool match = true;
      for (const auto& [key, value] : labels) {
        bool found = false;
        for (const auto& pair : metric.label) {
          found |= pair.name == key && pair.value == value;
        }
        match &= found;
      }
      if (!match) continue;
      return family.type == prometheus::MetricType::Counter
                 ? metric.counter.value
                 : metric.gauge.value;
    }
  }
  return -1;
}

class DeviceResidencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(dispatch::ResidentFootprintBytes(kRows, kDim), kSegmentBytes);
    dispatch::testing::SimulatedGpuBackend::Options gpu;
    gpu.clock = &clock_;
    gpu.launch_overhead = absl::Microseconds(10);
    gpu.seconds_per_unit = 1e-12;
    gpu.seconds_per_target_byte = 1e-9;
    gpu.memory_bytes = kDeviceBytes;
    gpu_ = *dispatch::testing::SimulatedGpuBackend::Create(gpu);
    cpu_ = *dispatch::CpuBackend::Create({});
    resident_metrics_ =
        std::make_unique<collections::ResidentMetrics>(registry_);
    metrics_ = std::make_unique<DeviceResidencyMetrics>(registry_);
  }

  DeviceResidency::Options BaseOptions() {
    DeviceResidency::Options o;
    o.gpu = gpu_.get();
    o.device_fraction = 0.1;
    o.min_free_fraction = 0.0;
    o.resident_metrics = resident_metrics_.get();
    o.metrics = metrics_.get();
    o.clock = &clock_;
    return o;
  }

  // The cache, and a store that tells it of its changes.
  void Make(const DeviceResidency::Options& options) {
    auto residency = DeviceResidency::Create(options);
    ASSERT_TRUE(residency.ok()) << residency.status();
    residency_ = *std::move(residency);
    collections::MemoryBudget::Options budget;
    budget.limit_bytes = 64 << 20;
    collections::CollectionStore::Options store;
    store.budget = *collections::MemoryBudget::Create(budget);
    store.observer = residency_.get();
    store_ = *collections::CollectionStore::Create(store);
  }
  void Make() { Make(BaseOptions()); }

  // Creates (or appends to) collection `name` with kRows random rows and
  // waits for the uploads it queued. Returns the new version.
  std::shared_ptr<const collections::Collection> Commit(const std::string& name,
                                                        bool create = true) {
    data_.push_back(engram::testing::RandomMatrix(kRows, kDim, ++seed_));
    collections::UploadOptions o;
    o.name = name;
    o.create = create;
    o.dimension = create ? kDim : 0;
    o.rows = kRows;
    auto upload = store_->BeginUpload(o);
    EXPECT_TRUE(upload.ok()) << upload.status();
    if (!upload.ok()) return nullptr;
    EXPECT_TRUE(
        (*upload)
            ->Append(kernels::MatrixView{data_.back().data(), kRows, kDim})
            .ok());
    auto committed = (*upload)->Commit();
    EXPECT_TRUE(committed.ok()) << committed.status();
    EXPECT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
    return committed.ok() ? *committed : nullptr;
  }

  static uint64_t LastSegment(const collections::Collection& c) {
    return c.segments().back()->id();
  }

  // An executor over the CPU backend and the simulated GPU itself (so that
  // its residency calls are seen).
  dispatch::HybridExecutor& Executor() {
    dispatch::HybridConfig c;
    c.min_gpu_work_cosine = 1;
    c.probe_enabled = false;
    c.min_chunk_queries = 1;
    c.memory.refresh_interval = absl::ZeroDuration();
    config_ = *dispatch::ConfigStore::Create(c);
    dispatch::HybridExecutor::Options options;
    options.cpu = cpu_.get();
    options.gpu = gpu_.get();
    options.config = config_.get();
    options.clock = &clock_;
    executor_ = *dispatch::HybridExecutor::Create(options);
    return *executor_;
  }

  // Top-3 of 4 random queries against `segment`, through the executor on
  // the GPU only, naming the segment as resident targets; expects the CPU
  // backend's lists.
  void ExpectSearchMatchesTheCpu(const collections::Segment& segment) {
    const std::vector<float> queries =
        engram::testing::RandomMatrix(4, kDim, 99);
    dispatch::CosineJob job;
    job.queries = kernels::MatrixView{queries.data(), 4, kDim};
    job.targets = segment.vectors();
    job.top_k = 3;
    job.placement = dispatch::Placement::kGpuOnly;
    job.resident_targets = segment.id();
    dispatch::CosineOutput gpu_out;
    ASSERT_TRUE(executor_->Cosine(job, &gpu_out).ok());
    EXPECT_EQ(gpu_out.report.backend, dispatch::BackendKind::kGpu);
    dispatch::CosineOutput cpu_out;
    ASSERT_TRUE(cpu_->Cosine(job, &cpu_out).ok());
    ASSERT_EQ(gpu_out.top.size(), cpu_out.top.size());
    for (size_t i = 0; i < cpu_out.top.size(); ++i) {
      ASSERT_EQ(gpu_out.top[i].size(), cpu_out.top[i].size());
      for (size_t j = 0; j < cpu_out.top[i].size(); ++j) {
        EXPECT_EQ(gpu_out.top[i][j].index, cpu_out.top[i][j].index);
        EXPECT_EQ(gpu_out.top[i][j].score, cpu_out.top[i][j].score);
      }
    }
  }

  dispatch::ManualClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<collections::ResidentMetrics> resident_metrics_;
  std::unique_ptr<DeviceResidencyMetrics> metrics_;
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> gpu_;
  std::unique_ptr<dispatch::CpuBackend> cpu_;
  std::unique_ptr<dispatch::ConfigStore> config_;
  std::unique_ptr<dispatch::HybridExecutor> executor_;
  std::unique_ptr<DeviceResidency> residency_;
  std::unique_ptr<collections::CollectionStore> store_;
  std::vector<std::vector<float>> data_;
  uint64_t seed_ = 0;
};

TEST_F(DeviceResidencyTest, CreateRejectsBadOptions) {
  DeviceResidency::Options o = BaseOptions();
  o.gpu = nullptr;
  EXPECT_EQ(DeviceResidency::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.gpu = cpu_.get();  // no residency
  EXPECT_THAT(DeviceResidency::Create(o).status().message(),
              HasSubstr("holds no resident data"));
  o = BaseOptions();
  o.device_fraction = 0.0;
  EXPECT_FALSE(DeviceResidency::Create(o).ok());
  o = BaseOptions();
  o.device_fraction = 1.5;
  EXPECT_FALSE(DeviceResidency::Create(o).ok());
  o = BaseOptions();
  o.min_free_fraction = 1.0;
  EXPECT_FALSE(DeviceResidency::Create(o).ok());
  o = BaseOptions();
  o.readmit_interval = -absl::Seconds(1);
  EXPECT_FALSE(DeviceResidency::Create(o).ok());
  EXPECT_TRUE(DeviceResidency::Create(BaseOptions()).ok());
}

TEST_F(DeviceResidencyTest, ASearchAfterCommitFindsTheSegmentResident) {
  Make();
  const auto a = Commit("a");
  ASSERT_NE(a, nullptr);
  const uint64_t id = LastSegment(*a);
  // Uploaded by the background thread at commit, before any search.
  EXPECT_TRUE(residency_->IsResident(id));
  EXPECT_TRUE(gpu_->HoldsResident(id));
  EXPECT_EQ(gpu_->stats().resident_uploads, 1u);
  DeviceResidency::Stats stats = residency_->stats();
  EXPECT_EQ(stats.uploads, 1u);
  EXPECT_EQ(stats.resident_bytes, kSegmentBytes);
  EXPECT_EQ(stats.pending, 0u);
  EXPECT_EQ(residency_->Describe(a->uid()).label, "host+gpu");
  EXPECT_EQ(MetricValue(registry_, "engram_resident_device_bytes",
                        {{"device", "gpu"}}),
            kSegmentBytes);
  EXPECT_EQ(MetricValue(registry_, "engram_resident_uploads_total"), 1);

  Executor();
  residency_->Touch(*a);
  ExpectSearchMatchesTheCpu(*a->segments().back());
  // The search read the copy; nothing more was uploaded.
  EXPECT_EQ(gpu_->stats().resident_uploads, 1u);
  EXPECT_EQ(gpu_->stats().resident_hits, 1u);
  ASSERT_FALSE(gpu_->history().empty());
  const auto call = gpu_->history().back();
  EXPECT_TRUE(call.resident);
  EXPECT_EQ(call.bytes,
            dispatch::CosineFootprint(4, kRows, kDim, 3, true).TotalBytes());
}

TEST_F(DeviceResidencyTest, AnAppendUploadsOnlyTheNewSegment) {
  Make();
  ASSERT_NE(Commit("a"), nullptr);
  const auto a2 = Commit("a", /*create=*/false);
  ASSERT_NE(a2, nullptr);
  ASSERT_EQ(a2->segments().size(), 2u);
  EXPECT_EQ(gpu_->stats().resident_uploads, 2u);
  const CollectionResidency r = residency_->Describe(a2->uid());
  EXPECT_EQ(r.segments, 2u);
  EXPECT_EQ(r.resident_segments, 2u);
  EXPECT_EQ(r.resident_rows, 2 * kRows);
  EXPECT_EQ(r.device_bytes, 2 * kSegmentBytes);
  EXPECT_EQ(r.label, "host+gpu");
}

TEST_F(DeviceResidencyTest, TheLeastRecentlyTouchedCopyIsEvictedFirst) {
  Make();
  const auto a = Commit("a");
  const auto b = Commit("b");
  ASSERT_TRUE(residency_->IsResident(LastSegment(*a)));
  ASSERT_TRUE(residency_->IsResident(LastSegment(*b)));
  // a was committed first but searched since: b is the least recent.
  residency_->Touch(*a);
  const auto c = Commit("c");
  EXPECT_TRUE(residency_->IsResident(LastSegment(*a)));
  EXPECT_FALSE(residency_->IsResident(LastSegment(*b)));
  EXPECT_TRUE(residency_->IsResident(LastSegment(*c)));
  EXPECT_FALSE(gpu_->HoldsResident(LastSegment(*b)));
  EXPECT_EQ(residency_->stats().evictions, 1u);
  EXPECT_EQ(residency_->stats().resident_bytes, 2 * kSegmentBytes);
  EXPECT_LE(residency_->stats().resident_bytes,
            residency_->stats().budget_bytes);
  EXPECT_EQ(MetricValue(registry_, "engram_resident_evictions_total",
                        {{"device", "gpu"}}),
            1);
  EXPECT_EQ(residency_->Describe(b->uid()).label, "host");

  // The host copy still serves b, at the CPU's results.
  Executor();
  ExpectSearchMatchesTheCpu(*b->segments().back());
  EXPECT_FALSE(gpu_->history().back().resident);
  EXPECT_EQ(gpu_->stats().resident_hits, 0u);
}

TEST_F(DeviceResidencyTest, MakeRoomEvictsAndATouchReadmitsIntoFreeBudget) {
  DeviceResidency::Options o = BaseOptions();
  o.readmit_interval = absl::Seconds(10);
  Make(o);
  const auto a = Commit("a");
  const auto b = Commit("b");
  const auto c = Commit("c");  // evicts a
  ASSERT_FALSE(residency_->IsResident(LastSegment(*a)));
  // No room without evicting: a touch does not readmit it.
  clock_.Advance(absl::Seconds(11));
  residency_->Touch(*a);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_FALSE(residency_->IsResident(LastSegment(*a)));

  // A request needs room: the least recently used copy (b) goes.
  EXPECT_EQ(residency_->MakeRoom(1), kSegmentBytes);
  EXPECT_FALSE(residency_->IsResident(LastSegment(*b)));
  EXPECT_TRUE(residency_->IsResident(LastSegment(*c)));
  EXPECT_EQ(residency_->stats().evictions, 2u);

  // Now a fits: the next touch readmits it, in the background.
  residency_->Touch(*a);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_TRUE(residency_->IsResident(LastSegment(*a)));

  // b was evicted just now: touched again at once, it waits for
  // readmit_interval even though it would need no room after a MakeRoom.
  residency_->MakeRoom(1);  // evicts c
  residency_->Touch(*b);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_FALSE(residency_->IsResident(LastSegment(*b)));
  clock_.Advance(absl::Seconds(11));
  residency_->Touch(*b);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_TRUE(residency_->IsResident(LastSegment(*b)));
}

TEST_F(DeviceResidencyTest, AnInjectedOomLeavesTheSegmentHostOnlyAndIsCounted) {
  Make();
  gpu_->FailNextUploads(1, dispatch::DeviceOutOfMemoryError("injected"));
  const auto a = Commit("a");
  EXPECT_FALSE(residency_->IsResident(LastSegment(*a)));
  EXPECT_FALSE(gpu_->HoldsResident(LastSegment(*a)));
  DeviceResidency::Stats stats = residency_->stats();
  EXPECT_EQ(stats.upload_failures, 1u);
  EXPECT_EQ(stats.upload_ooms, 1u);
  EXPECT_EQ(stats.uploads, 0u);
  EXPECT_FALSE(stats.stopped);
  EXPECT_EQ(residency_->Describe(a->uid()).label, "host");
  EXPECT_EQ(MetricValue(registry_, "engram_resident_upload_failures_total",
                        {{"reason", "out_of_memory"}}),
            1);

  // A device really out of memory (another tenant) is the same.
  gpu_->SetReservedBytes(kDeviceBytes - 100);
  const auto b = Commit("b");
  EXPECT_FALSE(residency_->IsResident(LastSegment(*b)));
  EXPECT_EQ(residency_->stats().upload_ooms, 2u);

  // Residency goes on: the next commit that fits is uploaded.
  gpu_->SetReservedBytes(0);
  const auto c = Commit("c");
  EXPECT_TRUE(residency_->IsResident(LastSegment(*c)));

  // The host-only segment still serves searches.
  Executor();
  ExpectSearchMatchesTheCpu(*a->segments().back());
}

TEST_F(DeviceResidencyTest, ADeviceErrorOnUploadIsCountedAndResidencyGoesOn) {
  Make();
  gpu_->FailNextUploads(1, absl::UnavailableError("device error"));
  const auto a = Commit("a");
  EXPECT_FALSE(residency_->IsResident(LastSegment(*a)));
  EXPECT_EQ(residency_->stats().upload_failures, 1u);
  EXPECT_EQ(residency_->stats().upload_ooms, 0u);
  EXPECT_EQ(MetricValue(registry_, "engram_resident_upload_failures_total",
                        {{"reason", "device_error"}}),
            1);
  const auto b = Commit("b");
  EXPECT_TRUE(residency_->IsResident(LastSegment(*b)));
}

TEST_F(DeviceResidencyTest, AStickyErrorStopsResidency) {
  Make();
  const auto a = Commit("a");
  ASSERT_TRUE(residency_->IsResident(LastSegment(*a)));
  gpu_->InjectStickyError();
  const auto b = Commit("b");
  DeviceResidency::Stats stats = residency_->stats();
  EXPECT_TRUE(stats.stopped);
  EXPECT_THAT(stats.stop_reason, HasSubstr("sticky"));
  EXPECT_EQ(stats.upload_failures, 1u);
  // The copies on the lost device are dropped ...
  EXPECT_FALSE(residency_->IsResident(LastSegment(*a)));
  EXPECT_FALSE(gpu_->HoldsResident(LastSegment(*a)));
  EXPECT_EQ(stats.resident_bytes, 0u);
  EXPECT_EQ(stats.evictions, 0u);  // not for room
  EXPECT_EQ(MetricValue(registry_, "engram_resident_upload_failures_total",
                        {{"reason", "sticky"}}),
            1);
  // ... and nothing more is tried: not on commit, not on touch.
  const auto c = Commit("c");
  clock_.Advance(absl::Hours(1));
  residency_->Touch(*b);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(gpu_->stats().resident_upload_failures, 1u);
  EXPECT_FALSE(residency_->IsResident(LastSegment(*c)));
  EXPECT_EQ(residency_->Describe(c->uid()).label, "host");
}

TEST_F(DeviceResidencyTest, DeletingACollectionDropsItsCopies) {
  Make();
  const auto a = Commit("a");
  const auto a2 = Commit("a", /*create=*/false);
  ASSERT_EQ(gpu_->ResidentBytes(), 2 * kSegmentBytes);
  ASSERT_TRUE(store_->Delete("a").ok());
  for (const auto& segment : a2->segments()) {
    EXPECT_FALSE(gpu_->HoldsResident(segment->id()));
    EXPECT_FALSE(residency_->IsResident(segment->id()));
  }
  EXPECT_EQ(gpu_->ResidentBytes(), 0u);
  DeviceResidency::Stats stats = residency_->stats();
  EXPECT_EQ(stats.dropped, 2u);
  EXPECT_EQ(stats.evictions, 0u);
  EXPECT_EQ(stats.segments, 0u);
  EXPECT_EQ(residency_->Describe(a->uid()).segments, 0u);
  EXPECT_EQ(MetricValue(registry_, "engram_resident_device_bytes"), 0);
  // A commit notification overtaken by the deletion changes nothing.
  residency_->OnCommitted(a2);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(residency_->stats().segments, 0u);
  EXPECT_EQ(gpu_->stats().resident_uploads, 2u);
}

TEST_F(DeviceResidencyTest, UploadsLeaveTheConfiguredShareOfTheDeviceFree) {
  dispatch::MemoryPressureMonitor::Options memory =
      dispatch::HybridConfig{}.memory;
  memory.refresh_interval = absl::ZeroDuration();
  memory.clock = &clock_;
  auto monitor = *dispatch::MemoryPressureMonitor::Create(
      memory, [this] { return gpu_->QueryMemory(); });
  DeviceResidency::Options o = BaseOptions();
  o.memory = monitor.get();
  o.device_fraction = 1.0;
  o.min_free_fraction = 0.5;
  o.readmit_interval = absl::ZeroDuration();
  Make(o);
  // 45 000 of 100 000 bytes free: an upload would leave less than half.
  gpu_->SetReservedBytes(55000);
  const auto a = Commit("a");
  EXPECT_FALSE(residency_->IsResident(LastSegment(*a)));
  EXPECT_EQ(residency_->stats().no_room, 1u);
  // Refused before trying: not an upload failure.
  EXPECT_EQ(gpu_->stats().resident_upload_failures, 0u);
  EXPECT_EQ(residency_->stats().upload_failures, 0u);

  // The other tenant leaves; the next search readmits it.
  gpu_->SetReservedBytes(0);
  residency_->Touch(*a);
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  EXPECT_TRUE(residency_->IsResident(LastSegment(*a)));
  // Ten segments fit in half the device: the eleventh evicts the oldest.
  std::vector<std::shared_ptr<const collections::Collection>> more;
  for (int i = 0; i < 10; ++i) more.push_back(Commit("m" + std::to_string(i)));
  EXPECT_EQ(residency_->stats().resident_segments, 10u);
  EXPECT_FALSE(residency_->IsResident(LastSegment(*a)));
  EXPECT_GE(gpu_->QueryMemory()->free_bytes, kDeviceBytes / 2);
}

TEST_F(DeviceResidencyTest, ConcurrentCommitsTouchesAndDeletesStayConsistent) {
  DeviceResidency::Options o = BaseOptions();
  o.readmit_interval = absl::ZeroDuration();
  o.device_fraction = 0.3;  // six segments
  Make(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 6; ++i) {
        const std::string name = absl::StrCat("t", t, "_", i);
        const std::vector<float> rows =
            engram::testing::RandomMatrix(kRows, kDim, 1000 + t * 10 + i);
        collections::UploadOptions u;
        u.name = name;
        u.create = true;
        u.dimension = kDim;
        u.rows = kRows;
        auto upload = store_->BeginUpload(u);
        ASSERT_TRUE(upload.ok());
        ASSERT_TRUE((*upload)
                        ->Append(kernels::MatrixView{rows.data(), kRows, kDim})
                        .ok());
        auto c = (*upload)->Commit();
        ASSERT_TRUE(c.ok());
        residency_->Touch(**c);
        if (i % 2 == 1) {
          ASSERT_TRUE(store_->Delete(name).ok());
        }
        residency_->MakeRoom(i % 3 == 0 ? kSegmentBytes : 0);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(residency_->WaitIdle(absl::Seconds(10)));
  const DeviceResidency::Stats stats = residency_->stats();
  EXPECT_EQ(stats.segments, 12u);  // the collections not deleted
  EXPECT_LE(stats.resident_bytes, stats.budget_bytes);
  // The cache's view and the device's agree.
  EXPECT_EQ(gpu_->ResidentBytes(), stats.resident_bytes);
  EXPECT_EQ(stats.resident_bytes, stats.resident_segments * kSegmentBytes);
}

TEST_F(DeviceResidencyTest, DestructionDropsEveryCopy) {
  Make();
  Commit("a");
  Commit("b");
  ASSERT_EQ(gpu_->ResidentBytes(), 2 * kSegmentBytes);
  store_.reset();
  residency_.reset();
  EXPECT_EQ(gpu_->ResidentBytes(), 0u);
}

}  // namespace
}  // namespace engram::residency
