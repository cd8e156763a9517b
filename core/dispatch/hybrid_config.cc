#include "core/dispatch/hybrid_config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace engram::core {
namespace {

using Member = std::variant<uint64_t HybridConfig::*, uint32_t HybridConfig::*,
                            double HybridConfig::*, bool HybridConfig::*>;

// One field: its key, where it lives, its static range and whether a reload
// applies it at once. Cross-field ranges are checked in ValidateHybridConfig.
struct Field {
  absl::string_view key;
  Member member;
  double min = 0;  // for doubles; integers use the uint64 bounds
  double max = 0;
  bool min_exclusive = false;
  uint64_t int_min = 0;
  uint64_t int_max = 0;
  bool hot = false;
};

constexpr double kMaxSeconds = 1e7;

Field Int64(absl::string_view key, uint64_t HybridConfig::*m, uint64_t lo,
            uint64_t hi, bool hot) {
  Field f{key, m};
  f.int_min = lo;
  f.int_max = hi;
  f.hot = hot;
  return f;
}
Field Int32(absl::string_view key, uint32_t HybridConfig::*m, uint64_t lo,
            uint64_t hi, bool hot) {
  Field f{key, m};
  f.int_min = lo;
  f.int_max = hi;
  f.hot = hot;
  return f;
}
Field Real(absl::string_view key, double HybridConfig::*m, double lo,
           bool lo_exclusive, double hi, bool hot) {
  Field f{key, m};
  f.min = lo;
  f.min_exclusive = lo_exclusive;
  f.max = hi;
  f.hot = hot;
  return f;
}
Field Bool(absl::string_view key, bool HybridConfig::*m, bool hot) {
  Field f{key, m};
  f.hot = hot;
  return f;
}

const std::vector<Field>& Fields() {
  using C = HybridConfig;
  constexpr bool kHot = true;
  constexpr bool kRestart = false;
  constexpr uint64_t kMaxWork = uint64_t{1} << 62;
  static const std::vector<Field>* const fields = new std::vector<Field>{
      Int64("min_gpu_work_cosine", &C::min_gpu_work_cosine, 0, kMaxWork, kHot),
      Int64("min_gpu_work_spread", &C::min_gpu_work_spread, 0, kMaxWork, kHot),
      Real("gpu_advantage", &C::gpu_advantage, 0.1, false, 100, kHot),
      Bool("probe_enabled", &C::probe_enabled, kHot),
      Bool("cpu_fallback", &C::cpu_fallback, kHot),
      Int32("max_chunk_queries", &C::max_chunk_queries, 1, uint64_t{1} << 24,
            kHot),
      Int32("min_chunk_queries", &C::min_chunk_queries, 1, uint64_t{1} << 24,
            kHot),
      Int32("max_oom_retries", &C::max_oom_retries, 0, 32, kHot),
      Int64("cpu_chunk_work", &C::cpu_chunk_work, 1, kMaxWork, kHot),
      Int32("perf_window_samples", &C::perf_window_samples, 1, 4096, kRestart),
      Real("perf_max_sample_age_seconds", &C::perf_max_sample_age_seconds, 0,
           true, kMaxSeconds, kRestart),
      Int32("perf_min_samples", &C::perf_min_samples, 1, 4096, kRestart),
      Int32("success_window_calls", &C::success_window_calls, 1, 100000,
            kRestart),
      Real("success_max_age_seconds", &C::success_max_age_seconds, 0, true,
           kMaxSeconds, kRestart),
      Real("probe_initial_interval_seconds", &C::probe_initial_interval_seconds,
           0, true, kMaxSeconds, kRestart),
      Real("probe_max_interval_seconds", &C::probe_max_interval_seconds, 0,
           true, kMaxSeconds, kRestart),
      Real("probe_backoff", &C::probe_backoff, 1, false, 16, kRestart),
      Int32("breaker_window_calls", &C::breaker_window_calls, 1, 100000,
            kRestart),
      Int32("breaker_min_calls", &C::breaker_min_calls, 1, 100000, kRestart),
      Real("breaker_failure_rate", &C::breaker_failure_rate, 0, true, 1,
           kRestart),
      Real("breaker_window_seconds", &C::breaker_window_seconds, 0, true,
           kMaxSeconds, kRestart),
      Int32("breaker_consecutive_failures", &C::breaker_consecutive_failures, 1,
            100000, kRestart),
      Real("breaker_open_initial_seconds", &C::breaker_open_initial_seconds, 0,
           true, kMaxSeconds, kRestart),
      Real("breaker_open_max_seconds", &C::breaker_open_max_seconds, 0, true,
           kMaxSeconds, kRestart),
      Real("breaker_open_backoff", &C::breaker_open_backoff, 1, false, 16,
           kRestart),
      Real("breaker_healthy_reset_seconds", &C::breaker_healthy_reset_seconds,
           0, true, kMaxSeconds, kRestart),
      Int32("breaker_half_open_probes", &C::breaker_half_open_probes, 1, 1000,
            kRestart),
      Real("memory_safety_margin", &C::memory_safety_margin, 0, true, 1,
           kRestart),
      Real("memory_high_pressure", &C::memory_high_pressure, 0, true, 1,
           kRestart),
      Real("memory_refresh_seconds", &C::memory_refresh_seconds, 0, false,
           kMaxSeconds, kRestart),
      Real("memory_stale_seconds", &C::memory_stale_seconds, 0, true,
           kMaxSeconds, kRestart),
  };
  return *fields;
}

const Field* FindField(absl::string_view key) {
  for (const Field& f : Fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

// The shortest decimal that reads back as exactly `v`.
std::string FormatDouble(double v) {
  for (int precision = 6; precision <= 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

std::string FieldValue(const HybridConfig& c, const Field& f) {
  return std::visit(
      [&](auto member) -> std::string {
        using T = std::decay_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<T, bool>) {
          return c.*member ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return FormatDouble(c.*member);
        } else {
          return absl::StrCat(c.*member);
        }
      },
      f.member);
}

absl::Status CheckRange(const HybridConfig& c, const Field& f) {
  return std::visit(
      [&](auto member) -> absl::Status {
        using T = std::decay_t<decltype(c.*member)>;
        const T v = c.*member;
        if constexpr (std::is_same_v<T, bool>) {
          return absl::OkStatus();
        } else if constexpr (std::is_same_v<T, double>) {
          const bool low = f.min_exclusive ? !(v > f.min) : !(v >= f.min);
          if (!std::isfinite(v) || low || !(v <= f.max)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "hybrid config: ", f.key, " = ", FormatDouble(v),
                " is outside ", f.min_exclusive ? "(" : "[",
                FormatDouble(f.min), ", ", FormatDouble(f.max), "]"));
          }
          return absl::OkStatus();
        } else {
          if (v < f.int_min || v > f.int_max) {
            return absl::InvalidArgumentError(
                absl::StrCat("hybrid config: ", f.key, " = ", v,
                             " is outside [", f.int_min, ", ", f.int_max, "]"));
          }
          return absl::OkStatus();
        }
      },
      f.member);
}

absl::Status SetField(HybridConfig* c, const Field& f, absl::string_view text) {
  return std::visit(
      [&](auto member) -> absl::Status {
        using T = std::decay_t<decltype(c->*member)>;
        if constexpr (std::is_same_v<T, bool>) {
          const std::string lower = absl::AsciiStrToLower(text);
          if (lower == "true" || lower == "1") {
            c->*member = true;
          } else if (lower == "false" || lower == "0") {
            c->*member = false;
          } else {
            return absl::InvalidArgumentError(
                absl::StrCat("expected true or false, got \"", text, "\""));
          }
        } else if constexpr (std::is_same_v<T, double>) {
          double v = 0;
          if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
            return absl::InvalidArgumentError(
                absl::StrCat("expected a finite number, got \"", text, "\""));
          }
          c->*member = v;
        } else {
          uint64_t v = 0;
          if (!absl::SimpleAtoi(text, &v)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "expected a non-negative integer, got \"", text, "\""));
          }
          if (v > f.int_max) {
            return absl::InvalidArgumentError(absl::StrCat(
                text, " is outside [", f.int_min, ", ", f.int_max, "]"));
          }
          c->*member = static_cast<T>(v);
        }
        return CheckRange(*c, f);
      },
      f.member);
}

struct Assignment {
  int line = 0;
  const Field* field = nullptr;
  std::string value;
};

struct Section {
  std::string profile;  // empty for the base section
  std::vector<Assignment> assignments;
};

absl::StatusOr<std::vector<Section>> SplitSections(absl::string_view text) {
  std::vector<Section> sections(1);
  absl::flat_hash_set<std::string> profiles;
  absl::flat_hash_set<absl::string_view> keys;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("hybrid config line ", line_number, ": ", what));
    };
    if (absl::ConsumePrefix(&line, "[")) {
      if (!absl::ConsumeSuffix(&line, "]")) return error("unclosed '['");
      line = absl::StripAsciiWhitespace(line);
      if (!absl::ConsumePrefix(&line, "profile")) {
        return error("sections are written [profile NAME]");
      }
      const std::string name(absl::StripAsciiWhitespace(line));
      if (name.empty()) return error("a profile needs a NAME");
      if (!profiles.insert(absl::AsciiStrToLower(name)).second) {
        return error(absl::StrCat("profile \"", name, "\" appears twice"));
      }
      sections.push_back(Section{name, {}});
      keys.clear();
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) return error("expected key = value");
    const absl::string_view key =
        absl::StripAsciiWhitespace(line.substr(0, eq));
    const absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(eq + 1));
    const Field* field = FindField(key);
    if (field == nullptr) {
      return error(absl::StrCat("unknown key \"", key, "\""));
    }
    if (value.empty()) return error(absl::StrCat(key, " has no value"));
    if (!keys.insert(field->key).second) {
      return error(absl::StrCat(key, " is set twice in one section"));
    }
    sections.back().assignments.push_back(
        Assignment{line_number, field, std::string(value)});
  }
  return sections;
}

absl::Status Apply(const Section& section, HybridConfig* config) {
  for (const Assignment& a : section.assignments) {
    absl::Status status = SetField(config, *a.field, a.value);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("hybrid config line ",
                                                     a.line, ": ", a.field->key,
                                                     ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateHybridConfig(const HybridConfig& c) {
  for (const Field& f : Fields()) {
    absl::Status status = CheckRange(c, f);
    if (!status.ok()) return status;
  }
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("hybrid config: ", what));
  };
  if (c.min_chunk_queries > c.max_chunk_queries) {
    return bad("min_chunk_queries must be <= max_chunk_queries");
  }
  if (c.perf_min_samples > c.perf_window_samples) {
    return bad("perf_min_samples must be <= perf_window_samples");
  }
  if (c.probe_max_interval_seconds < c.probe_initial_interval_seconds) {
    return bad(
        "probe_max_interval_seconds must be >= "
        "probe_initial_interval_seconds");
  }
  if (c.breaker_min_calls > c.breaker_window_calls) {
    return bad("breaker_min_calls must be <= breaker_window_calls");
  }
  if (c.breaker_open_max_seconds < c.breaker_open_initial_seconds) {
    return bad(
        "breaker_open_max_seconds must be >= breaker_open_initial_seconds");
  }
  if (c.memory_refresh_seconds > c.memory_stale_seconds) {
    return bad("memory_refresh_seconds must be <= memory_stale_seconds");
  }
  return absl::OkStatus();
}

absl::StatusOr<HybridConfig> ParseHybridConfig(absl::string_view text,
                                               absl::string_view device_name,
                                               std::string* selected_profile) {
  absl::StatusOr<std::vector<Section>> sections = SplitSections(text);
  if (!sections.ok()) return sections.status();
  HybridConfig config;
  absl::Status status = Apply(sections->front(), &config);
  if (!status.ok()) return status;
  const Section* best = nullptr;
  if (!device_name.empty()) {
    const std::string device = absl::AsciiStrToLower(device_name);
    for (size_t i = 1; i < sections->size(); ++i) {
      const Section& s = (*sections)[i];
      if (absl::StrContains(device, absl::AsciiStrToLower(s.profile)) &&
          (best == nullptr || s.profile.size() > best->profile.size())) {
        best = &s;
      }
    }
  }
  // Every profile must be valid even when another device would use it, so a
  // typo is found on the machine where the file is edited.
  for (size_t i = 1; i < sections->size(); ++i) {
    HybridConfig trial = config;
    status = Apply((*sections)[i], &trial);
    if (!status.ok()) return status;
  }
  if (best != nullptr) {
    status = Apply(*best, &config);
    if (!status.ok()) return status;
  }
  status = ValidateHybridConfig(config);
  if (!status.ok()) return status;
  if (selected_profile != nullptr) {
    *selected_profile = best == nullptr ? "" : best->profile;
  }
  return config;
}

absl::StatusOr<HybridConfig> LoadHybridConfigFile(
    const std::string& path, absl::string_view device_name,
    std::string* selected_profile) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open hybrid config file ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<HybridConfig> config =
      ParseHybridConfig(buffer.str(), device_name, selected_profile);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string FormatHybridConfig(const HybridConfig& config) {
  std::string out;
  for (const Field& f : Fields()) {
    absl::StrAppend(&out, f.key, " = ", FieldValue(config, f), "\n");
  }
  return out;
}

std::vector<std::string> RestartOnlyChanges(const HybridConfig& before,
                                            const HybridConfig& after) {
  std::vector<std::string> changed;
  for (const Field& f : Fields()) {
    if (!f.hot && FieldValue(before, f) != FieldValue(after, f)) {
      changed.emplace_back(f.key);
    }
  }
  return changed;
}

CircuitBreaker::Options BreakerOptionsFrom(const HybridConfig& c,
                                           Clock* clock) {
  CircuitBreaker::Options o;
  o.window_calls = c.breaker_window_calls;
  o.min_calls = c.breaker_min_calls;
  o.failure_rate_threshold = c.breaker_failure_rate;
  o.window_duration = absl::Seconds(c.breaker_window_seconds);
  o.consecutive_failures_to_open = c.breaker_consecutive_failures;
  o.open_initial = absl::Seconds(c.breaker_open_initial_seconds);
  o.open_max = absl::Seconds(c.breaker_open_max_seconds);
  o.open_backoff = c.breaker_open_backoff;
  o.healthy_reset = absl::Seconds(c.breaker_healthy_reset_seconds);
  o.half_open_probes = c.breaker_half_open_probes;
  o.clock = clock;
  return o;
}

PerformanceModel::Options PerformanceModelOptionsFrom(const HybridConfig& c,
                                                      Clock* clock) {
  PerformanceModel::Options o;
  o.window_samples = c.perf_window_samples;
  o.max_sample_age = absl::Seconds(c.perf_max_sample_age_seconds);
  o.min_samples = c.perf_min_samples;
  o.success_window = c.success_window_calls;
  o.success_max_age = absl::Seconds(c.success_max_age_seconds);
  o.probe_initial_interval = absl::Seconds(c.probe_initial_interval_seconds);
  o.probe_max_interval = absl::Seconds(c.probe_max_interval_seconds);
  o.probe_backoff = c.probe_backoff;
  o.clock = clock;
  return o;
}

MemoryPressureMonitor::Options MemoryMonitorOptionsFrom(const HybridConfig& c,
                                                        Clock* clock) {
  MemoryPressureMonitor::Options o;
  o.safety_margin = c.memory_safety_margin;
  o.high_pressure_fraction = c.memory_high_pressure;
  o.refresh_interval = absl::Seconds(c.memory_refresh_seconds);
  o.stale_after = absl::Seconds(c.memory_stale_seconds);
  o.clock = clock;
  return o;
}

absl::StatusOr<std::unique_ptr<ConfigStore>> ConfigStore::Create(
    const HybridConfig& initial) {
  absl::Status status = ValidateHybridConfig(initial);
  if (!status.ok()) return status;
  return std::unique_ptr<ConfigStore>(
      new ConfigStore(std::make_shared<const HybridConfig>(initial)));
}

std::shared_ptr<const HybridConfig> ConfigStore::Get() const {
  absl::MutexLock lock(&mu_);
  return config_;
}

absl::Status ConfigStore::Update(const HybridConfig& next) {
  absl::Status status = ValidateHybridConfig(next);
  if (!status.ok()) return status;
  // Built before taking the lock: readers wait only for a pointer swap. The
  // old config is released outside the lock too, by `previous`.
  auto fresh = std::make_shared<const HybridConfig>(next);
  std::shared_ptr<const HybridConfig> previous;
  {
    absl::MutexLock lock(&mu_);
    previous = std::exchange(config_, std::move(fresh));
    ++version_;
  }
  return absl::OkStatus();
}

absl::Status ConfigStore::ReloadFromFile(const std::string& path,
                                         absl::string_view device_name) {
  absl::StatusOr<HybridConfig> config = LoadHybridConfigFile(path, device_name);
  if (!config.ok()) return config.status();
  return Update(*config);
}

uint64_t ConfigStore::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

}  // namespace engram::core
