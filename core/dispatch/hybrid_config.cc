#include "core/dispatch/hybrid_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/key_value_text.h"
#include "base/status_macros.h"
#include "core/dispatch/option_check.h"

namespace engram::dispatch {
namespace {

constexpr absl::string_view kWhat = "hybrid config";

// Where a key's value lives: HybridConfig itself or one of the components'
// Options it embeds. Get() reaches that part of a config, const or not.
enum class Part { kDispatch, kBreaker, kModel, kMemory, kLedger };
template <typename P>
struct PartOf;
template <>
struct PartOf<HybridConfig> {
  [[maybe_unused]] static constexpr Part kPart = Part::kDispatch;
  template <typename Config>
  static auto& Get(Config& c) {
    return c;
  }
};
template <>
struct PartOf<CircuitBreaker::Options> {
  static constexpr Part kPart = Part::kBreaker;
  template <typename Config>
  static auto& Get(Config& c) {
    return c.breaker;
  }
};
template <>
struct PartOf<PerformanceModel::Options> {
  static constexpr Part kPart = Part::kModel;
  template <typename Config>
  static auto& Get(Config& c) {
    return c.model;
  }
};
template <>
struct PartOf<MemoryPressureMonitor::Options> {
  static constexpr Part kPart = Part::kMemory;
  template <typename Config>
  static auto& Get(Config& c) {
    return c.memory;
  }
};

template <>
struct PartOf<DeviceMemoryLedger::Options> {
  static constexpr Part kPart = Part::kLedger;
  template <typename Config>
  static auto& Get(Config& c) {
    return c.ledger;
  }
};

template <typename Config, typename P, typename T>
auto& At(Config& c, T P::*member) {
  return PartOf<P>::Get(c).*member;
}

using BreakerOptions = CircuitBreaker::Options;
using ModelOptions = PerformanceModel::Options;
using MemoryOptions = MemoryPressureMonitor::Options;
using LedgerOptions = DeviceMemoryLedger::Options;
using Member =
    std::variant<uint64_t HybridConfig::*, uint32_t HybridConfig::*,
                 double HybridConfig::*, bool HybridConfig::*,
                 uint32_t BreakerOptions::*, double BreakerOptions::*,
                 absl::Duration BreakerOptions::*, uint32_t ModelOptions::*,
                 double ModelOptions::*, absl::Duration ModelOptions::*,
                 double MemoryOptions::*, absl::Duration MemoryOptions::*,
                 bool LedgerOptions::*, absl::Duration LedgerOptions::*>;

// One key: the field it sets and, for a dispatch field, its range (the
// components' ranges are theirs to check). The dispatch fields are the hot
// ones: the components are built once.
struct Field {
  absl::string_view key;
  Member member;
  Part part = Part::kDispatch;
  absl::string_view member_name = "";  // in the component's Options
  // Dispatch fields: integers use the int bounds, numbers the others.
  uint64_t int_min = 0;
  uint64_t int_max = 0;
  double min = 0;
  bool min_open = false;
  double max = 0;

  bool hot() const { return part == Part::kDispatch; }
};

template <typename T>
Field Int(absl::string_view key, T HybridConfig::*m, uint64_t lo, uint64_t hi) {
  Field f{key, m};
  f.int_min = lo;
  f.int_max = hi;
  return f;
}
Field Real(absl::string_view key, double HybridConfig::*m, double lo,
           bool lo_open, double hi) {
  Field f{key, m};
  f.min = lo;
  f.min_open = lo_open;
  f.max = hi;
  return f;
}
Field Bool(absl::string_view key, bool HybridConfig::*m) { return {key, m}; }
template <typename P, typename T>
Field Option(absl::string_view key, T P::*m, absl::string_view member_name) {
  Field f{key, m};
  f.part = PartOf<P>::kPart;
  f.member_name = member_name;
  return f;
}

// In the order FormatHybridConfig writes them.
const std::vector<Field>& Fields() {
  using C = HybridConfig;
  using B = BreakerOptions;
  using M = ModelOptions;
  using Y = MemoryOptions;
  using L = LedgerOptions;
  constexpr uint64_t kMaxWork = uint64_t{1} << 62;
  static const std::vector<Field>* const fields = new std::vector<Field>{
      Int("min_gpu_work_cosine", &C::min_gpu_work_cosine, 0, kMaxWork),
      Int("min_gpu_work_spread", &C::min_gpu_work_spread, 0, kMaxWork),
      Real("gpu_advantage", &C::gpu_advantage, 0.1, false, 100),
      Bool("probe_enabled", &C::probe_enabled),
      Real("probe_max_share", &C::probe_max_share, 0, false, 1),
      Real("probe_max_cost_ratio", &C::probe_max_cost_ratio, 1, false, 1e6),
      Bool("cpu_fallback", &C::cpu_fallback),
      Int("max_chunk_queries", &C::max_chunk_queries, 1, uint64_t{1} << 24),
      Int("min_chunk_queries", &C::min_chunk_queries, 1, uint64_t{1} << 24),
      Int("max_oom_retries", &C::max_oom_retries, 0, 32),
      Int("cpu_chunk_work", &C::cpu_chunk_work, 1, kMaxWork),
      Option("perf_window_samples", &M::window_samples, "window_samples"),
      Option("perf_max_sample_age_seconds", &M::max_sample_age,
             "max_sample_age"),
      Option("perf_min_samples", &M::min_samples, "min_samples"),
      Option("success_window_calls", &M::success_window, "success_window"),
      Option("success_max_age_seconds", &M::success_max_age, "success_max_age"),
      Option("probe_initial_interval_seconds", &M::probe_initial_interval,
             "probe_initial_interval"),
      Option("probe_max_interval_seconds", &M::probe_max_interval,
             "probe_max_interval"),
      Option("probe_backoff", &M::probe_backoff, "probe_backoff"),
      Option("breaker_window_calls", &B::window_calls, "window_calls"),
      Option("breaker_min_calls", &B::min_calls, "min_calls"),
      Option("breaker_failure_rate", &B::failure_rate_threshold,
             "failure_rate_threshold"),
      Option("breaker_window_seconds", &B::window_duration, "window_duration"),
      Option("breaker_consecutive_failures", &B::consecutive_failures_to_open,
             "consecutive_failures_to_open"),
      Option("breaker_open_initial_seconds", &B::open_initial, "open_initial"),
      Option("breaker_open_max_seconds", &B::open_max, "open_max"),
      Option("breaker_open_backoff", &B::open_backoff, "open_backoff"),
      Option("breaker_healthy_reset_seconds", &B::healthy_reset,
             "healthy_reset"),
      Option("breaker_half_open_probes", &B::half_open_probes,
             "half_open_probes"),
      Option("memory_safety_margin", &Y::safety_margin, "safety_margin"),
      Option("memory_high_pressure", &Y::high_pressure_fraction,
             "high_pressure_fraction"),
      Option("memory_refresh_seconds", &Y::refresh_interval,
             "refresh_interval"),
      Option("memory_stale_seconds", &Y::stale_after, "stale_after"),
      Option("memory_ledger", &L::enabled, "enabled"),
      Option("memory_ledger_wait_seconds", &L::max_wait, "max_wait"),
  };
  return *fields;
}

const Field* FindField(absl::string_view key) {
  for (const Field& f : Fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

std::string FieldValue(const HybridConfig& c, const Field& f) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = At(c, member);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return FormatShortestDouble(v);
        } else if constexpr (std::is_same_v<T, absl::Duration>) {
          return FormatShortestDouble(absl::ToDoubleSeconds(v));
        } else {
          return absl::StrCat(v);
        }
      },
      f.member);
}

// The range of a dispatch field; the components' fields pass here.
absl::Status CheckDispatchRange(const HybridConfig& c, const Field& f) {
  if (f.part != Part::kDispatch) return absl::OkStatus();
  return std::visit(
      [&](auto member) -> absl::Status {
        const auto& v = At(c, member);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, double>) {
          return CheckRealRange(f.key, v, f.min, f.min_open, f.max);
        } else if constexpr (std::is_integral_v<T> &&
                             !std::is_same_v<T, bool>) {
          return CheckIntRange(f.key, v, f.int_min, f.int_max);
        } else {
          return absl::OkStatus();
        }
      },
      f.member);
}

// Parses `text` into the field; ranges are left to validation, except that
// an integer too wide for its field is refused before it is narrowed.
absl::Status SetField(HybridConfig* c, const Field& f, absl::string_view text) {
  return std::visit(
      [&](auto member) -> absl::Status {
        auto& v = At(*c, member);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          const std::string lower = absl::AsciiStrToLower(text);
          if (lower == "true" || lower == "1") {
            v = true;
          } else if (lower == "false" || lower == "0") {
            v = false;
          } else {
            return absl::InvalidArgumentError(absl::StrCat(
                f.key, ": expected true or false, got \"", text, "\""));
          }
        } else if constexpr (std::is_same_v<T, double> ||
                             std::is_same_v<T, absl::Duration>) {
          double d = 0;
          if (!absl::SimpleAtod(text, &d) || !std::isfinite(d)) {
            return absl::InvalidArgumentError(absl::StrCat(
                f.key, ": expected a finite number, got \"", text, "\""));
          }
          if constexpr (std::is_same_v<T, double>) {
            v = d;
          } else {
            v = absl::Seconds(d);
          }
        } else {
          uint64_t n = 0;
          if (!absl::SimpleAtoi(text, &n)) {
            return absl::InvalidArgumentError(
                absl::StrCat(f.key, ": expected a non-negative integer, got \"",
                             text, "\""));
          }
          if (n > std::numeric_limits<T>::max()) {
            if (f.part == Part::kDispatch) {
              return CheckIntRange(f.key, n, f.int_min, f.int_max);
            }
            return absl::InvalidArgumentError(
                absl::StrCat(f.key, " = ", text, " does not fit in ",
                             sizeof(T) * 8, " bits"));
          }
          v = static_cast<T>(n);
        }
        return absl::OkStatus();
      },
      f.member);
}

// ValidateHybridConfig without its prefix. The components' messages name
// their options by the file's keys.
absl::Status Validate(const HybridConfig& c) {
  for (const Field& f : Fields()) {
    ENGRAM_RETURN_IF_ERROR(CheckDispatchRange(c, f));
  }
  ENGRAM_RETURN_IF_ERROR(CheckOrder(c.min_chunk_queries <= c.max_chunk_queries,
                                    "min_chunk_queries", "max_chunk_queries"));
  auto key_of = [](Part part) {
    return [part](absl::string_view member) -> std::string {
      for (const Field& f : Fields()) {
        if (f.part == part && f.member_name == member) {
          return std::string(f.key);
        }
      }
      return std::string(member);
    };
  };
  ENGRAM_RETURN_IF_ERROR(
      CircuitBreaker::Validate(c.breaker, key_of(Part::kBreaker)));
  ENGRAM_RETURN_IF_ERROR(
      PerformanceModel::Validate(c.model, key_of(Part::kModel)));
  ENGRAM_RETURN_IF_ERROR(
      MemoryPressureMonitor::Validate(c.memory, key_of(Part::kMemory)));
  return DeviceMemoryLedger::Validate(c.ledger, key_of(Part::kLedger));
}

// Whether `message` names `key` as a whole word.
bool Names(absl::string_view message, absl::string_view key) {
  auto word_char = [](char ch) { return absl::ascii_isalnum(ch) || ch == '_'; };
  for (size_t at = message.find(key); at != absl::string_view::npos;
       at = message.find(key, at + 1)) {
    const size_t end = at + key.size();
    if ((at == 0 || !word_char(message[at - 1])) &&
        (end == message.size() || !word_char(message[end]))) {
      return true;
    }
  }
  return false;
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
  ENGRAM_ASSIGN_OR_RETURN(std::vector<base::KeyValueLine> lines,
                          base::LexKeyValueText(text, kWhat));
  std::vector<Section> sections(1);
  absl::flat_hash_set<std::string> profiles;
  absl::flat_hash_set<absl::string_view> keys;
  for (base::KeyValueLine& line : lines) {
    auto error = [&](absl::string_view what) {
      return base::KeyValueLineError(kWhat, line.number, what);
    };
    if (line.is_section) {
      if (line.section != "profile") {
        return error("sections are written [profile NAME]");
      }
      if (line.args.empty()) return error("a profile needs a NAME");
      if (!profiles.insert(absl::AsciiStrToLower(line.args)).second) {
        return error(absl::StrCat("profile \"", line.args, "\" appears twice"));
      }
      sections.push_back(Section{std::move(line.args), {}});
      keys.clear();
      continue;
    }
    const Field* field = FindField(line.key);
    if (field == nullptr) {
      return error(absl::StrCat("unknown key \"", line.key, "\""));
    }
    if (!keys.insert(field->key).second) {
      return error(absl::StrCat(line.key, " is set twice in one section"));
    }
    sections.back().assignments.push_back(
        Assignment{line.number, field, std::move(line.value)});
  }
  return sections;
}

// Applies `section` to `config` and validates the result. An error names
// the section's line that set the key it is about (the latest one when it
// names several), or no line when the section set none of them.
absl::Status ApplySection(const Section& section, HybridConfig* config) {
  for (const Assignment& a : section.assignments) {
    absl::Status status = SetField(config, *a.field, a.value);
    if (!status.ok()) {
      return base::KeyValueLineError(kWhat, a.line, status.message());
    }
  }
  absl::Status status = Validate(*config);
  if (status.ok()) return status;
  int line = 0;
  for (const Assignment& a : section.assignments) {
    if (Names(status.message(), a.field->key)) line = a.line;
  }
  if (line == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kWhat, ": ", status.message()));
  }
  return base::KeyValueLineError(kWhat, line, status.message());
}

}  // namespace

absl::Status ValidateHybridConfig(const HybridConfig& c) {
  absl::Status status = Validate(c);
  if (status.ok()) return status;
  return absl::InvalidArgumentError(
      absl::StrCat(kWhat, ": ", status.message()));
}

absl::StatusOr<HybridConfig> ParseHybridConfig(absl::string_view text,
                                               absl::string_view device_name,
                                               std::string* selected_profile) {
  ENGRAM_ASSIGN_OR_RETURN(std::vector<Section> sections, SplitSections(text));
  HybridConfig config;
  ENGRAM_RETURN_IF_ERROR(ApplySection(sections.front(), &config));
  const Section* best = nullptr;
  if (!device_name.empty()) {
    const std::string device = absl::AsciiStrToLower(device_name);
    for (size_t i = 1; i < sections.size(); ++i) {
      const Section& s = sections[i];
      if (absl::StrContains(device, absl::AsciiStrToLower(s.profile)) &&
          (best == nullptr || s.profile.size() > best->profile.size())) {
        best = &s;
      }
    }
  }
  // Every profile must be valid even when another device would use it, so a
  // mistake is found on the machine where the file is edited.
  HybridConfig selected = config;
  for (size_t i = 1; i < sections.size(); ++i) {
    HybridConfig trial = config;
    ENGRAM_RETURN_IF_ERROR(ApplySection(sections[i], &trial));
    if (&sections[i] == best) selected = trial;
  }
  if (selected_profile != nullptr) {
    *selected_profile = best == nullptr ? "" : best->profile;
  }
  return selected;
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
    if (!f.hot() && FieldValue(before, f) != FieldValue(after, f)) {
      changed.emplace_back(f.key);
    }
  }
  return changed;
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

}  // namespace engram::dispatch
