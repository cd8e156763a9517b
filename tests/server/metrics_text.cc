#include "tests/server/metrics_text.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace engram::testing {
namespace {

double ParseValue(absl::string_view s) {
  if (s == "+Inf") return std::numeric_limits<double>::infinity();
  if (s == "-Inf") return -std::numeric_limits<double>::infinity();
  double v = 0;
  if (!absl::SimpleAtod(s, &v)) return std::nan("");
  return v;
}

}  // namespace

std::vector<MetricSample> ParseSamples(const std::string& text) {
  std::vector<MetricSample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    MetricSample s;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    if (brace != absl::string_view::npos && brace < space) {
      s.name = std::string(line.substr(0, brace));
      const size_t close = line.rfind('}');
      const absl::string_view labels =
          line.substr(brace + 1, close - brace - 1);
      for (absl::string_view pair :
           absl::StrSplit(labels, ',', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        absl::string_view value = pair.substr(eq + 1);
        absl::ConsumePrefix(&value, "\"");
        absl::ConsumeSuffix(&value, "\"");
        s.labels[std::string(pair.substr(0, eq))] = std::string(value);
      }
    } else {
      s.name = std::string(line.substr(0, space));
    }
    s.value = ParseValue(line.substr(space + 1));
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> SampleValue(const std::string& text,
                                  const std::string& name,
                                  const MetricLabels& labels) {
  for (const MetricSample& s : ParseSamples(text)) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

std::map<std::string, std::string> DeclaredFamilies(const std::string& text) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "# TYPE ")) continue;
    const std::vector<std::string> parts = absl::StrSplit(line, ' ');
    if (parts.size() == 2) out[parts[0]] = parts[1];
  }
  return out;
}

std::vector<std::pair<double, double>> HistogramBuckets(
    const std::string& text, const std::string& name,
    const MetricLabels& labels) {
  std::vector<std::pair<double, double>> out;
  for (const MetricSample& s : ParseSamples(text)) {
    if (s.name != name + "_bucket") continue;
    MetricLabels rest = s.labels;
    const auto le = rest.find("le");
    if (le == rest.end()) continue;
    const double bound = ParseValue(le->second);
    rest.erase(le);
    if (rest == labels) out.emplace_back(bound, s.value);
  }
  std::sort(out.begin(), out.end());
  return out;
}

double BucketQuantile(const std::vector<std::pair<double, double>>& buckets,
                      double q) {
  if (buckets.empty() || buckets.back().second == 0) return std::nan("");
  const double rank = q * buckets.back().second;
  double lower_bound = 0, lower_count = 0;
  for (const auto& [bound, count] : buckets) {
    if (count >= rank) {
      if (std::isinf(bound)) return lower_bound;
      if (count == lower_count) return bound;
      return lower_bound + (bound - lower_bound) * (rank - lower_count) /
                               (count - lower_count);
    }
    lower_bound = bound;
    lower_count = count;
  }
  return lower_bound;
}

}  // namespace engram::testing
