// Reading a Prometheus text exposition in tests: sample values by name and
// labels, histogram buckets, and the families it declares.
#ifndef ENGRAM_TESTS_SERVER_METRICS_TEXT_H_
#define ENGRAM_TESTS_SERVER_METRICS_TEXT_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace engram::testing {

using MetricLabels = std::map<std::string, std::string>;

struct MetricSample {
  std::string name;
  MetricLabels labels;
  double value = 0;
};

// Every sample line of `text` (comments skipped). Label values must not
// contain '"' or ',' (ours never do).
std::vector<MetricSample> ParseSamples(const std::string& text);

// The value of the one sample called `name` whose labels equal `labels`
// exactly; nullopt when there is none.
std::optional<double> SampleValue(const std::string& text,
                                  const std::string& name,
                                  const MetricLabels& labels = {});

// The family names declared by "# TYPE" lines, with their types.
std::map<std::string, std::string> DeclaredFamilies(const std::string& text);

// The (upper bound, cumulative count) buckets of histogram `name` with
// `labels` (the "le" label aside), in order; the quantile of them as PromQL
// histogram_quantile() computes it.
std::vector<std::pair<double, double>> HistogramBuckets(
    const std::string& text, const std::string& name,
    const MetricLabels& labels = {});
double BucketQuantile(const std::vector<std::pair<double, double>>& buckets,
                      double q);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_SERVER_METRICS_TEXT_H_
