#include "core/dispatch/hybrid_config.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class HybridConfigTest : public ::testing::Test {
 protected:
  std::string WriteFile(const std::string& text) {
    const std::string path = absl::StrCat(
        ::testing::TempDir(), "/hybrid_config_test_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        ".conf");
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(HybridConfigTest, DefaultsAreValid) {
  EXPECT_TRUE(ValidateHybridConfig(HybridConfig{}).ok());
  EXPECT_DOUBLE_EQ(HybridConfig{}.memory.safety_margin, 0.8);
  EXPECT_TRUE(HybridConfig{}.cpu_fallback);
}

TEST_F(HybridConfigTest, ParsesKeysCommentsAndBlankLines) {
  absl::StatusOr<HybridConfig> config = ParseHybridConfig(
      "# thresholds measured on the build box\n"
      "\n"
      "min_gpu_work_cosine = 123456   # Q*N*d\n"
      "  gpu_advantage=1.5\n"
      "cpu_fallback = false\n"
      "memory_safety_margin = 0.7\n",
      "");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->min_gpu_work_cosine, 123456u);
  EXPECT_DOUBLE_EQ(config->gpu_advantage, 1.5);
  EXPECT_FALSE(config->cpu_fallback);
  EXPECT_DOUBLE_EQ(config->memory.safety_margin, 0.7);
  EXPECT_EQ(config->max_chunk_queries, HybridConfig{}.max_chunk_queries);
}

TEST_F(HybridConfigTest, RejectsBadLinesNamingThem) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"no_such_key = 1", "line 1: unknown key \"no_such_key\""},
      {"\nmin_gpu_work_cosine", "line 2: expected key = value"},
      {"min_gpu_work_cosine = lots", "non-negative integer"},
      {"min_gpu_work_cosine = -5", "non-negative integer"},
      {"gpu_advantage = nan", "finite number"},
      {"cpu_fallback = maybe", "true or false"},
      {"memory_safety_margin = 1.5", "outside (0, 1]"},
      {"memory_safety_margin = 0", "outside (0, 1]"},
      {"max_oom_retries = 33", "outside [0, 32]"},
      {"max_chunk_queries = 99999999999", "outside [1, 16777216]"},
      {"probe_backoff = 2\nprobe_backoff = 3",
       "line 2: probe_backoff is set "
       "twice"},
      {"[profile]", "needs a NAME"},
      {"[profile A]\n[profile a]", "appears twice"},
      {"[gpu H100]", "[profile NAME]"},
      {"[profile H100", "unclosed"},
      {"min_gpu_work_cosine =", "has no value"},
      {"min_chunk_queries = 100\nmax_chunk_queries = 50",
       "min_chunk_queries must be <= max_chunk_queries"},
      {"breaker_min_calls = 30", "breaker_min_calls must be <= "},
      {"[profile Other]\nbreaker_failure_rate = 2", "line 2"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<HybridConfig> config = ParseHybridConfig(c.text, "H100");
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
        << c.text;
    EXPECT_THAT(config.status().message(), HasSubstr(c.message)) << c.text;
  }
}

TEST_F(HybridConfigTest, ProfileIsSelectedByDeviceName) {
  const std::string text =
      "min_gpu_work_cosine = 1000\n"
      "max_chunk_queries = 100\n"
      "[profile H100]\n"
      "min_gpu_work_cosine = 2000\n"
      "[profile h100 nvl]\n"
      "min_gpu_work_cosine = 3000\n"
      "[profile simulated-gpu]\n"
      "min_gpu_work_cosine = 4000\n";
  std::string profile;
  auto base = ParseHybridConfig(text, "", &profile);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->min_gpu_work_cosine, 1000u);
  EXPECT_EQ(profile, "");

  auto h100 = ParseHybridConfig(text, "NVIDIA H100 80GB HBM3", &profile);
  ASSERT_TRUE(h100.ok());
  EXPECT_EQ(h100->min_gpu_work_cosine, 2000u);
  EXPECT_EQ(h100->max_chunk_queries, 100u);  // base keys still apply
  EXPECT_EQ(profile, "H100");

  // The longest matching name wins.
  auto nvl = ParseHybridConfig(text, "NVIDIA H100 NVL", &profile);
  ASSERT_TRUE(nvl.ok());
  EXPECT_EQ(nvl->min_gpu_work_cosine, 3000u);
  EXPECT_EQ(profile, "h100 nvl");

  auto other = ParseHybridConfig(text, "NVIDIA A100", &profile);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->min_gpu_work_cosine, 1000u);
  EXPECT_EQ(profile, "");
}

TEST_F(HybridConfigTest, FormatRoundTrips) {
  HybridConfig config;
  config.min_gpu_work_spread = 77;
  config.gpu_advantage = 1.0 / 3.0;
  config.probe_enabled = false;
  config.breaker.open_max = absl::Seconds(123.456);
  const std::string text = FormatHybridConfig(config);
  EXPECT_THAT(text, HasSubstr("probe_enabled = false\n"));
  auto back = ParseHybridConfig(text, "");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(FormatHybridConfig(*back), text);
  EXPECT_EQ(back->gpu_advantage, config.gpu_advantage);
}

TEST_F(HybridConfigTest, LoadsFromAFile) {
  const std::string path = WriteFile(
      "max_oom_retries = 2\n[profile simulated]\nmax_oom_retries = 7\n");
  auto config = LoadHybridConfigFile(path, "simulated-gpu");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_oom_retries, 7u);
  EXPECT_EQ(LoadHybridConfigFile(path + ".missing", "").status().code(),
            absl::StatusCode::kNotFound);
  const std::string bad = WriteFile("max_oom_retries = x\n");
  EXPECT_THAT(LoadHybridConfigFile(bad, "").status().message(), HasSubstr(bad));
}

TEST_F(HybridConfigTest, KeysSetTheComponentsOptions) {
  absl::StatusOr<HybridConfig> config = ParseHybridConfig(
      "breaker_half_open_probes = 7\n"
      "breaker_open_initial_seconds = 0.5\n"
      "breaker_failure_rate = 0.25\n"
      "perf_window_samples = 32\n"
      "probe_max_interval_seconds = 90\n"
      "memory_safety_margin = 0.6\n"
      "memory_refresh_seconds = 0\n",
      "");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->breaker.half_open_probes, 7u);
  EXPECT_EQ(config->breaker.open_initial, absl::Milliseconds(500));
  EXPECT_DOUBLE_EQ(config->breaker.failure_rate_threshold, 0.25);
  EXPECT_EQ(config->model.window_samples, 32u);
  EXPECT_EQ(config->model.probe_max_interval, absl::Seconds(90));
  EXPECT_DOUBLE_EQ(config->memory.safety_margin, 0.6);
  EXPECT_EQ(config->memory.refresh_interval, absl::ZeroDuration());
  // The rest keep the components' own defaults.
  EXPECT_EQ(config->breaker.window_calls,
            CircuitBreaker::Options{}.window_calls);
  EXPECT_EQ(config->model.max_sample_age,
            PerformanceModel::Options{}.max_sample_age);
}

TEST_F(HybridConfigTest, TheComponentsRangesAreCheckedUnderTheFileKeys) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"breaker_half_open_probes = 1001",
       "line 1: breaker_half_open_probes = 1001 is outside [1, 1000]"},
      {"breaker_consecutive_failures = 0",
       "line 1: breaker_consecutive_failures = 0 is outside [1, 100000]"},
      {"breaker_window_seconds = 0", "line 1: breaker_window_seconds = 0s"},
      {"breaker_healthy_reset_seconds = 1e8",
       "line 1: breaker_healthy_reset_seconds = 1e+08s is outside"},
      {"perf_window_samples = 4\nperf_min_samples = 5",
       "line 2: perf_min_samples must be <= perf_window_samples"},
      {"probe_initial_interval_seconds = 100",
       "line 1: probe_initial_interval_seconds must be <= "
       "probe_max_interval_seconds"},
      {"memory_stale_seconds = 0.1",
       "line 1: memory_refresh_seconds must be <= memory_stale_seconds"},
      {"breaker_window_calls = 99999999999", "does not fit in 32 bits"},
      {"breaker_open_max_seconds = soon", "finite number"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<HybridConfig> config = ParseHybridConfig(c.text, "");
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
        << c.text;
    EXPECT_THAT(config.status().message(), HasSubstr(c.message)) << c.text;
  }
  HybridConfig bad;
  bad.breaker.half_open_probes = 0;
  EXPECT_THAT(ValidateHybridConfig(bad).message(),
              HasSubstr("breaker_half_open_probes = 0 is outside [1, 1000]"));
}

TEST_F(HybridConfigTest, EveryProfileWithTheBaseKeysMustBeValid) {
  // The profile for another device breaks a cross-field rule: found here.
  const std::string text =
      "breaker_min_calls = 15\n"
      "[profile Other]\n"
      "breaker_window_calls = 12\n";
  absl::StatusOr<HybridConfig> config = ParseHybridConfig(text, "H100");
  EXPECT_THAT(config.status().message(),
              HasSubstr("line 3: breaker_min_calls must be <= "
                        "breaker_window_calls"));
  // Raising the window in the profile is fine.
  EXPECT_TRUE(ParseHybridConfig("breaker_min_calls = 15\n"
                                "[profile Other]\n"
                                "breaker_window_calls = 40\n",
                                "H100")
                  .ok());
}

TEST_F(HybridConfigTest, WhatTheConfigValidatesTheComponentsAccept) {
  HybridConfig config;
  config.breaker.half_open_probes = 1000;
  config.breaker.open_max = absl::Seconds(1e7);
  config.model.window_samples = 4096;
  config.memory.refresh_interval = config.memory.stale_after;
  ASSERT_TRUE(ValidateHybridConfig(config).ok());
  EXPECT_TRUE(CircuitBreaker::Create(config.breaker).ok());
  EXPECT_TRUE(PerformanceModel::Create(config.model).ok());
  EXPECT_TRUE(MemoryPressureMonitor::Create(config.memory, [] {
                return absl::StatusOr<DeviceMemoryInfo>();
              }).ok());
  config.breaker.half_open_probes = 1001;
  EXPECT_FALSE(ValidateHybridConfig(config).ok());
  EXPECT_FALSE(CircuitBreaker::Create(config.breaker).ok());
}

TEST_F(HybridConfigTest, RestartOnlyChangesListsOnlyRestartFields) {
  HybridConfig before;
  HybridConfig after = before;
  after.min_gpu_work_cosine = 1;  // hot
  after.cpu_fallback = false;     // hot
  EXPECT_THAT(RestartOnlyChanges(before, after), IsEmpty());
  after.breaker.window_calls = 40;
  after.memory.safety_margin = 0.5;
  EXPECT_THAT(RestartOnlyChanges(before, after),
              ElementsAre("breaker_window_calls", "memory_safety_margin"));
}

TEST_F(HybridConfigTest, StoreSwapsAtomicallyAndKeepsOldSnapshotsAlive) {
  auto store = ConfigStore::Create(HybridConfig{});
  ASSERT_TRUE(store.ok());
  std::shared_ptr<const HybridConfig> held = (*store)->Get();
  HybridConfig next;
  next.min_gpu_work_cosine = 42;
  ASSERT_TRUE((*store)->Update(next).ok());
  EXPECT_EQ((*store)->Get()->min_gpu_work_cosine, 42u);
  EXPECT_EQ(held->min_gpu_work_cosine, HybridConfig{}.min_gpu_work_cosine);
  EXPECT_EQ((*store)->version(), 2u);
}

TEST_F(HybridConfigTest, StoreRejectsInvalidConfigsAndKeepsTheCurrentOne) {
  HybridConfig bad;
  bad.memory.safety_margin = 2;
  EXPECT_FALSE(ConfigStore::Create(bad).ok());
  auto store = ConfigStore::Create(HybridConfig{});
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Update(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_DOUBLE_EQ((*store)->Get()->memory.safety_margin, 0.8);
  EXPECT_EQ((*store)->version(), 1u);
  const std::string path = WriteFile("max_oom_retries = 99\n");
  EXPECT_FALSE((*store)->ReloadFromFile(path, "").ok());
  EXPECT_EQ((*store)->Get()->max_oom_retries, HybridConfig{}.max_oom_retries);
  const std::string good = WriteFile("max_oom_retries = 9\n");
  EXPECT_TRUE((*store)->ReloadFromFile(good, "").ok());
  EXPECT_EQ((*store)->Get()->max_oom_retries, 9u);
}

TEST_F(HybridConfigTest, ReadersNeverSeeAHalfWrittenConfig) {
  HybridConfig first;
  first.max_chunk_queries = 2;
  first.min_chunk_queries = 1;
  auto store = ConfigStore::Create(first);
  ASSERT_TRUE(store.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        std::shared_ptr<const HybridConfig> c = (*store)->Get();
        // Every config written keeps these two fields equal.
        ASSERT_EQ(c->min_chunk_queries, c->max_chunk_queries / 2);
      }
    });
  }
  threads.emplace_back([&] {
    for (uint32_t i = 1; i <= 500; ++i) {
      HybridConfig c;
      c.max_chunk_queries = 2 * i;
      c.min_chunk_queries = i;
      ASSERT_TRUE((*store)->Update(c).ok());
    }
  });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ((*store)->Get()->max_chunk_queries, 1000u);
}

}  // namespace
}  // namespace engram::dispatch
