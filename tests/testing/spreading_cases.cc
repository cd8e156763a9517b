#include "tests/testing/spreading_cases.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace engram::testing {

namespace v1 = ::engram::similarity::v1;

absl::StatusOr<std::vector<SpreadCase>> LoadSpreadCases(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  SpreadCaseFile file;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status =
      google::protobuf::util::JsonStringToMessage(text.str(), &file, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", status.ToString()));
  }
  return std::vector<SpreadCase>(file.cases().begin(), file.cases().end());
}

kernels::SpreadParams ToKernelParams(const v1::SpreadParams& params) {
  kernels::SpreadParams out;  // the API defaults
  if (params.has_max_hops()) out.max_hops = params.max_hops();
  switch (params.decay_case()) {
    case v1::SpreadParams::kExponentialRate:
      out.decay = kernels::DecayKind::kExponential;
      out.decay_param = params.exponential_rate();
      break;
    case v1::SpreadParams::kPowerLawExponent:
      out.decay = kernels::DecayKind::kPowerLaw;
      out.decay_param = params.power_law_exponent();
      break;
    case v1::SpreadParams::kLinearSlope:
      out.decay = kernels::DecayKind::kLinear;
      out.decay_param = params.linear_slope();
      break;
    case v1::SpreadParams::kConstantFactor:
      out.decay = kernels::DecayKind::kConstant;
      out.decay_param = params.constant_factor();
      break;
    case v1::SpreadParams::DECAY_NOT_SET:
      break;
  }
  if (params.has_threshold()) out.threshold = params.threshold();
  out.hop_thresholds.assign(params.hop_thresholds().begin(),
                            params.hop_thresholds().end());
  if (params.has_max_activation()) out.max_activation = params.max_activation();
  return out;
}

kernels::GraphView ToGraphView(const v1::Graph& graph) {
  return kernels::GraphView{
      graph.num_nodes(),
      absl::MakeConstSpan(graph.row_offsets().data(),
                          graph.row_offsets().size()),
      absl::MakeConstSpan(graph.targets().data(), graph.targets().size()),
      absl::MakeConstSpan(graph.weights().data(), graph.weights().size())};
}

std::vector<kernels::SpreadSeed> ToSeeds(const SpreadCase& spread_case) {
  std::vector<kernels::SpreadSeed> seeds;
  seeds.reserve(spread_case.seeds_size());
  for (const v1::Seed& seed : spread_case.seeds()) {
    seeds.push_back({seed.node(), seed.activation()});
  }
  return seeds;
}

}  // namespace engram::testing
