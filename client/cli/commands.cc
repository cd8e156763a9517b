#include "client/cli/commands.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/edge_list.h"
#include "client/npy.h"
#include "client/random_data.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "client/status_conversion.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.pb.h"
#include "kernels/status_macros.h"

// The defaults live in the option structs so that tests building options by
// hand see the same values as the command line.
ABSL_FLAG(std::string, server, engram::client::cli::CommonOptions().server,
          "Server address, any gRPC target: host:port, dns:///host:port, ...");
ABSL_FLAG(absl::Duration, timeout, engram::client::cli::CommonOptions().timeout,
          "Deadline of the call, e.g. 500ms, 30s, 2m; inf for none.");
ABSL_FLAG(std::string, request_id, "",
          "Sent as x-request-id metadata, for finding the call in server "
          "logs; printable ASCII.");

ABSL_FLAG(std::string, queries, "",
          "Query vectors: a .npy file of float32, Q x D (or 1-D: one query).");
ABSL_FLAG(std::string, targets, "",
          "Target vectors: a .npy file of float32, N x D (or 1-D).");
ABSL_FLAG(std::string, random, "",
          "Instead of files: Q queries and N targets of dimension D, uniform "
          "on [-1, 1), generated from --seed.");
ABSL_FLAG(uint64_t, seed, engram::client::cli::CosineOptions().seed,
          "Seed of the --random data; the same seed gives the same data.");
ABSL_FLAG(uint32_t, top_k, 0,
          "cosine: best K targets per query; spread: the K most activated "
          "nodes. 0 returns every score or activation.");
ABSL_FLAG(std::optional<float>, min_score, std::nullopt,
          "With --top_k: drop scores below this. Not sent unless given.");
ABSL_FLAG(std::string, placement,
          engram::client::cli::CosineOptions().placement,
          "Where to compute: auto, cpu or gpu.");

ABSL_FLAG(std::string, graph, "",
          "Edge list file: one 'source target weight' per line, tab or "
          "space separated; '#' comments.");
ABSL_FLAG(std::optional<uint32_t>, num_nodes, std::nullopt,
          "Number of nodes; default: the largest id in the graph + 1.");
ABSL_FLAG(std::string, seeds, "",
          "Required. Start nodes and activations: node:activation,...");
ABSL_FLAG(std::optional<uint32_t>, max_hops, std::nullopt,
          "Hops to spread (server default 4, at most 64).");
ABSL_FLAG(std::string, decay, "",
          "Decay per hop: exponential:RATE, power_law:EXPONENT, "
          "linear:SLOPE or constant:FACTOR (server default "
          "exponential:0.7).");
ABSL_FLAG(std::optional<float>, threshold, std::nullopt,
          "Activation below which a node stops spreading (server default "
          "0.01).");
ABSL_FLAG(std::string, hop_thresholds, "",
          "Per-hop thresholds t1,t2,... overriding --threshold at hop 1, "
          "2, ...");
ABSL_FLAG(std::optional<float>, max_activation, std::nullopt,
          "Cap on a node's activation (server default 1.0).");

ABSL_FLAG(std::string, service, "",
          "Service name to check; empty checks the whole server.");

namespace engram::client::cli {
namespace {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;

struct FlagSpec {
  absl::string_view name;
  absl::string_view value_hint;
};

struct CommandSpec {
  Subcommand subcommand;
  absl::string_view name;
  absl::string_view summary;
  std::vector<FlagSpec> flags;
};

const std::vector<FlagSpec>& CommonFlags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"server", "HOST:PORT"}, {"timeout", "DURATION"}, {"request_id", "ID"}};
  return *flags;
}

const std::vector<CommandSpec>& Commands() {
  static const auto* commands = new std::vector<CommandSpec>{
      {Subcommand::kCosine,
       "cosine",
       "Cosine similarity of query vectors against target vectors "
       "(BatchCosine).",
       {{"queries", "FILE.npy"},
        {"targets", "FILE.npy"},
        {"random", "Q,N,D"},
        {"seed", "S"},
        {"top_k", "K"},
        {"min_score", "S"},
        {"placement", "auto|cpu|gpu"}}},
      {Subcommand::kSpread,
       "spread",
       "Spreading activation from seed nodes through a weighted directed "
       "graph (Spread).",
       {{"graph", "FILE"},
        {"num_nodes", "N"},
        {"seeds", "NODE:ACT,..."},
        {"max_hops", "H"},
        {"decay", "KIND:VALUE"},
        {"threshold", "T"},
        {"hop_thresholds", "T1,T2,..."},
        {"max_activation", "A"},
        {"top_k", "K"},
        {"placement", "auto|cpu|gpu"}}},
      {Subcommand::kStats,
       "stats",
       "The server's request, latency and backend statistics (GetStats).",
       {}},
      {Subcommand::kHealth,
       "health",
       "The standard gRPC health check; exits 0 only when SERVING.",
       {{"service", "NAME"}}},
  };
  return *commands;
}

const CommandSpec& SpecFor(Subcommand subcommand) {
  for (const CommandSpec& spec : Commands()) {
    if (spec.subcommand == subcommand) return spec;
  }
  return Commands().front();  // Unreachable: every Subcommand has a spec.
}

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& spec : Commands()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool Takes(const CommandSpec& spec, absl::string_view flag) {
  auto named = [flag](const FlagSpec& f) { return f.name == flag; };
  return std::any_of(CommonFlags().begin(), CommonFlags().end(), named) ||
         std::any_of(spec.flags.begin(), spec.flags.end(), named);
}

bool IsHelp(absl::string_view arg) {
  return arg == "--help" || arg == "-help" || arg == "-h";
}

absl::Status UsageError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::Status ValidateRequestId(absl::string_view id) {
  for (char c : id) {
    if (c < 0x20 || c > 0x7e) {
      return UsageError("--request_id must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<float> ParseFiniteFloat(absl::string_view text,
                                       absl::string_view what) {
  float value = 0.0f;
  if (!absl::SimpleAtof(text, &value)) {
    return UsageError(absl::StrCat(what, " '", text, "' is not a number"));
  }
  if (!std::isfinite(value)) {
    return UsageError(absl::StrCat(what, " '", text, "' is not finite"));
  }
  return value;
}

absl::Status RequireFinite(const std::optional<float>& value,
                           absl::string_view flag) {
  if (value.has_value() && !std::isfinite(*value)) {
    return UsageError(
        absl::StrCat("--", flag, " must be finite, got ", *value));
  }
  return absl::OkStatus();
}

// Appends `prefix` and `text`, word-wrapped to 80 columns with continuation
// lines indented by `indent`.
void AppendWrapped(absl::string_view prefix, absl::string_view text,
                   std::size_t indent, std::string* out) {
  constexpr std::size_t kWidth = 80;
  absl::StrAppend(out, prefix);
  std::size_t column = prefix.size();
  bool line_has_words = false;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (line_has_words && column + 1 + word.size() > kWidth) {
      absl::StrAppend(out, "\n", std::string(indent, ' '));
      column = indent;
      line_has_words = false;
    }
    if (line_has_words) {
      out->push_back(' ');
      ++column;
    }
    absl::StrAppend(out, word);
    column += word.size();
    line_has_words = true;
  }
  out->push_back('\n');
}

void AppendFlagHelp(const FlagSpec& spec, std::string* out) {
  absl::StrAppend(out, "  --", spec.name, "=", spec.value_hint, "\n");
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(spec.name);
  if (flag == nullptr) return;
  std::string help = flag->Help();
  const std::string default_value = flag->DefaultValue();
  if (!default_value.empty()) {
    absl::StrAppend(&help, " (default: ", default_value, ")");
  }
  AppendWrapped("      ", help, 6, out);
}

absl::Status ResetFlagsToDefaults() {
  std::vector<FlagSpec> all = CommonFlags();
  for (const CommandSpec& spec : Commands()) {
    all.insert(all.end(), spec.flags.begin(), spec.flags.end());
  }
  for (const FlagSpec& spec : all) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(spec.name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(flag->DefaultValue(), &error)) {
      return absl::InternalError(
          absl::StrCat("cannot reset flag --", spec.name, ": ", error));
    }
  }
  return absl::OkStatus();
}

constexpr absl::string_view kOutputAndExitCodes =
    "Output: the response as one JSON object on stdout (proto field names,\n"
    "default values included). Errors go to stderr as\n"
    "  error: <CODE_NAME>: <message>\n"
    "\n"
    "Exit codes:\n"
    "  0  success; for health, the server is SERVING\n"
    "  1  the RPC failed, or health answered other than SERVING\n"
    "  2  usage or input error (unknown subcommand or flag, bad value,\n"
    "     unreadable or malformed input file); nothing was sent\n";

}  // namespace

absl::StatusOr<Invocation> ParseArgs(const std::vector<std::string>& args) {
  Invocation invocation;
  if (args.empty()) {
    return UsageError("missing subcommand (cosine, spread, stats or health)");
  }
  if (IsHelp(args[0]) || args[0] == "help") {
    invocation.help = true;
    if (args.size() > 1) {
      const CommandSpec* spec = FindCommand(args[1]);
      if (spec != nullptr) invocation.subcommand = spec->subcommand;
    }
    return invocation;
  }
  const CommandSpec* spec = FindCommand(args[0]);
  if (spec == nullptr) {
    if (absl::StartsWith(args[0], "-")) {
      return UsageError(absl::StrCat("expected a subcommand before ", args[0],
                                     " (cosine, spread, stats or health)"));
    }
    return UsageError(absl::StrCat("unknown subcommand '", args[0],
                                   "' (cosine, spread, stats or health)"));
  }
  invocation.subcommand = spec->subcommand;
  if (std::any_of(args.begin() + 1, args.end(), IsHelp)) {
    invocation.help = true;
    return invocation;
  }

  // Each parse starts from the defaults, so that its result depends on
  // `args` alone, whatever an earlier parse left in the flags.
  ENGRAM_RETURN_IF_ERROR(ResetFlagsToDefaults());
  for (std::size_t i = 1; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "-") || arg.empty()) {
      return UsageError(absl::StrCat("unexpected argument '", args[i], "'"));
    }
    absl::ConsumePrefix(&arg, "-");
    const std::size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    if (!Takes(*spec, name)) {
      const bool elsewhere =
          std::any_of(Commands().begin(), Commands().end(),
                      [name](const CommandSpec& c) { return Takes(c, name); });
      if (elsewhere) {
        return UsageError(
            absl::StrCat("--", name, " is not a flag of '", spec->name, "'"));
      }
      return UsageError(absl::StrCat("unknown flag --", name));
    }
    std::string value;
    if (equals != absl::string_view::npos) {
      value = std::string(arg.substr(equals + 1));
    } else if (i + 1 < args.size()) {
      // Every flag takes a value, so the next argument is it even when it
      // starts with '-' (e.g. --min_score -0.5).
      value = args[++i];
    } else {
      return UsageError(absl::StrCat("--", name, " needs a value"));
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      return UsageError(absl::StrCat("invalid value '", value, "' for --", name,
                                     ": ", error));
    }
  }

  CommonOptions& common = invocation.common;
  common.server = absl::GetFlag(FLAGS_server);
  common.timeout = absl::GetFlag(FLAGS_timeout);
  common.request_id = absl::GetFlag(FLAGS_request_id);
  ENGRAM_RETURN_IF_ERROR(ValidateRequestId(common.request_id));
  if (common.timeout <= absl::ZeroDuration()) {
    return UsageError(absl::StrCat("--timeout must be positive, got ",
                                   absl::FormatDuration(common.timeout)));
  }

  CosineOptions& cosine = invocation.cosine;
  cosine.queries_path = absl::GetFlag(FLAGS_queries);
  cosine.targets_path = absl::GetFlag(FLAGS_targets);
  cosine.random = absl::GetFlag(FLAGS_random);
  cosine.seed = absl::GetFlag(FLAGS_seed);
  cosine.top_k = absl::GetFlag(FLAGS_top_k);
  cosine.min_score = absl::GetFlag(FLAGS_min_score);
  cosine.placement = absl::GetFlag(FLAGS_placement);

  SpreadOptions& spread = invocation.spread;
  spread.graph_path = absl::GetFlag(FLAGS_graph);
  spread.num_nodes = absl::GetFlag(FLAGS_num_nodes);
  spread.seeds = absl::GetFlag(FLAGS_seeds);
  spread.max_hops = absl::GetFlag(FLAGS_max_hops);
  spread.decay = absl::GetFlag(FLAGS_decay);
  spread.threshold = absl::GetFlag(FLAGS_threshold);
  spread.hop_thresholds = absl::GetFlag(FLAGS_hop_thresholds);
  spread.max_activation = absl::GetFlag(FLAGS_max_activation);
  spread.top_k = absl::GetFlag(FLAGS_top_k);
  spread.placement = absl::GetFlag(FLAGS_placement);

  invocation.health.service = absl::GetFlag(FLAGS_service);
  return invocation;
}

std::string UsageText(std::optional<Subcommand> subcommand) {
  std::string out;
  if (!subcommand.has_value()) {
    absl::StrAppend(
        &out,
        "engram-cli: command-line client of the Engram Similarity Service.\n"
        "\n"
        "Usage: engram-cli <subcommand> [--flag=value ...]\n"
        "       engram-cli <subcommand> --help\n"
        "\n"
        "Subcommands:\n");
    for (const CommandSpec& spec : Commands()) {
      AppendWrapped(
          absl::StrCat("  ", spec.name, std::string(8 - spec.name.size(), ' ')),
          spec.summary, 10, &out);
    }
    absl::StrAppend(&out, "\nFlags of every subcommand:\n");
    for (const FlagSpec& flag : CommonFlags()) AppendFlagHelp(flag, &out);
    absl::StrAppend(&out, "\n", kOutputAndExitCodes);
    return out;
  }
  const CommandSpec& spec = SpecFor(*subcommand);
  AppendWrapped(absl::StrCat("engram-cli ", spec.name, ": "), spec.summary, 0,
                &out);
  absl::StrAppend(&out, "\nUsage: engram-cli ", spec.name,
                  " [--flag=value ...]\n");
  if (*subcommand == Subcommand::kCosine) {
    absl::StrAppend(&out,
                    "Give --queries and --targets, or --random (with "
                    "--seed).\n");
  }
  if (!spec.flags.empty()) {
    absl::StrAppend(&out, "\nFlags:\n");
    for (const FlagSpec& flag : spec.flags) AppendFlagHelp(flag, &out);
  }
  absl::StrAppend(&out, "\nFlags of every subcommand:\n");
  for (const FlagSpec& flag : CommonFlags()) AppendFlagHelp(flag, &out);
  absl::StrAppend(&out, "\n", kOutputAndExitCodes);
  return out;
}

absl::StatusOr<v1::Placement> ParsePlacement(absl::string_view text) {
  if (text == "auto") return v1::PLACEMENT_AUTO;
  if (text == "cpu") return v1::PLACEMENT_CPU_ONLY;
  if (text == "gpu") return v1::PLACEMENT_GPU_ONLY;
  return UsageError(
      absl::StrCat("placement '", text, "' is not one of auto, cpu, gpu"));
}

absl::Status ParseDecay(absl::string_view text, v1::SpreadParams* params) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits(':', 1));
  if (parts.size() != 2) {
    return UsageError(absl::StrCat(
        "decay '", text,
        "': expected KIND:VALUE with KIND exponential, power_law, linear or "
        "constant"));
  }
  const absl::string_view kind = absl::StripAsciiWhitespace(parts[0]);
  ENGRAM_ASSIGN_OR_RETURN(
      const float value,
      ParseFiniteFloat(absl::StripAsciiWhitespace(parts[1]),
                       absl::StrCat("decay '", text, "': value")));
  if (kind == "exponential") {
    params->set_exponential_rate(value);
  } else if (kind == "power_law") {
    params->set_power_law_exponent(value);
  } else if (kind == "linear") {
    params->set_linear_slope(value);
  } else if (kind == "constant") {
    params->set_constant_factor(value);
  } else {
    return UsageError(absl::StrCat("decay '", text, "': unknown kind '", kind,
                                   "' (exponential, power_law, linear or "
                                   "constant)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SpreadSeed>> ParseSeeds(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError("no seeds given: expected node:activation,...");
  }
  std::vector<SpreadSeed> seeds;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    const std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    if (parts.size() != 2) {
      return UsageError(
          absl::StrCat("seed '", item, "': expected node:activation"));
    }
    const absl::string_view node = absl::StripAsciiWhitespace(parts[0]);
    SpreadSeed seed;
    // SimpleAtoi into an unsigned type rejects a minus sign.
    if (node.empty() || !absl::ascii_isdigit(node[0]) ||
        !absl::SimpleAtoi(node, &seed.node)) {
      return UsageError(absl::StrCat("seed '", item, "': node '", node,
                                     "' is not a 32-bit non-negative "
                                     "integer"));
    }
    ENGRAM_ASSIGN_OR_RETURN(
        seed.activation,
        ParseFiniteFloat(absl::StripAsciiWhitespace(parts[1]),
                         absl::StrCat("seed '", item, "': activation")));
    seeds.push_back(seed);
  }
  return seeds;
}

absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError("empty list: expected comma-separated numbers");
  }
  std::vector<float> values;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    ENGRAM_ASSIGN_OR_RETURN(
        const float value,
        ParseFiniteFloat(absl::StripAsciiWhitespace(item), "list item"));
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<v1::BatchCosineRequest> BuildCosineRequest(
    const CosineOptions& options) {
  const bool has_files =
      !options.queries_path.empty() || !options.targets_path.empty();
  const bool has_random = !options.random.empty();
  if (has_files && has_random) {
    return UsageError(
        "give either --queries and --targets, or --random, not both");
  }
  if (!has_files && !has_random) {
    return UsageError(
        "give --queries and --targets (.npy files), or --random=Q,N,D");
  }
  if (has_files &&
      (options.queries_path.empty() || options.targets_path.empty())) {
    return UsageError("--queries and --targets must be given together");
  }
  ENGRAM_RETURN_IF_ERROR(RequireFinite(options.min_score, "min_score"));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));

  FloatMatrix queries, targets;
  if (has_random) {
    ENGRAM_ASSIGN_OR_RETURN(const RandomShape shape,
                            ParseRandomShape(options.random));
    RandomCosineData data = MakeRandomCosineData(shape, options.seed);
    queries = std::move(data.queries);
    targets = std::move(data.targets);
  } else {
    ENGRAM_ASSIGN_OR_RETURN(queries, ReadNpyFile(options.queries_path));
    ENGRAM_ASSIGN_OR_RETURN(targets, ReadNpyFile(options.targets_path));
  }
  ENGRAM_ASSIGN_OR_RETURN(v1::Matrix query_matrix, MakeMatrix(queries));
  ENGRAM_ASSIGN_OR_RETURN(v1::Matrix target_matrix, MakeMatrix(targets));
  return MakeCosineRequest(std::move(query_matrix), std::move(target_matrix),
                           options.top_k, options.min_score, placement);
}

absl::StatusOr<v1::SpreadRequest> BuildSpreadRequest(
    const SpreadOptions& options) {
  if (options.graph_path.empty()) {
    return UsageError("--graph is required (an edge list file)");
  }
  if (options.seeds.empty()) {
    return UsageError("--seeds is required (node:activation,...)");
  }
  ENGRAM_ASSIGN_OR_RETURN(const std::vector<SpreadSeed> seeds,
                          ParseSeeds(options.seeds));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));
  ENGRAM_RETURN_IF_ERROR(RequireFinite(options.threshold, "threshold"));
  ENGRAM_RETURN_IF_ERROR(
      RequireFinite(options.max_activation, "max_activation"));

  v1::SpreadParams params;
  if (options.max_hops.has_value()) params.set_max_hops(*options.max_hops);
  if (!options.decay.empty()) {
    ENGRAM_RETURN_IF_ERROR(ParseDecay(options.decay, &params));
  }
  if (options.threshold.has_value()) params.set_threshold(*options.threshold);
  if (!options.hop_thresholds.empty()) {
    absl::StatusOr<std::vector<float>> thresholds =
        ParseFloatList(options.hop_thresholds);
    if (!thresholds.ok()) {
      return UsageError(
          absl::StrCat("--hop_thresholds: ", thresholds.status().message()));
    }
    params.mutable_hop_thresholds()->Assign(thresholds->begin(),
                                            thresholds->end());
  }
  if (options.max_activation.has_value()) {
    params.set_max_activation(*options.max_activation);
  }

  ENGRAM_ASSIGN_OR_RETURN(const std::vector<Edge> edges,
                          ReadEdgeListFile(options.graph_path));
  const uint32_t num_nodes = options.num_nodes.value_or(NumNodesFor(edges));
  absl::StatusOr<v1::Graph> graph = MakeGraph(num_nodes, edges);
  if (!graph.ok()) {
    return UsageError(
        absl::StrCat(options.graph_path, ": ", graph.status().message()));
  }
  return MakeSpreadRequest(*std::move(graph), seeds, std::move(params),
                           options.top_k, placement);
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the response as JSON: ", status.ToString()));
  }
  return json;
}

std::string FormatError(const absl::Status& status) {
  return absl::StrCat("error: ", CodeName(status.code()), ": ",
                      status.message());
}

namespace {

// Prints the result of an RPC: the response as JSON, or the error.
template <typename Response>
int Print(const absl::StatusOr<Response>& response, std::ostream& out,
          std::ostream& err) {
  if (!response.ok()) {
    err << FormatError(response.status()) << "\n";
    return kExitRpcError;
  }
  absl::StatusOr<std::string> json = ToJson(*response);
  if (!json.ok()) {
    err << FormatError(json.status()) << "\n";
    return kExitRpcError;
  }
  out << *json << "\n";
  return kExitOk;
}

}  // namespace

int Run(const Invocation& invocation, std::ostream& out, std::ostream& err) {
  if (!invocation.subcommand.has_value()) {
    err << FormatError(UsageError("missing subcommand")) << "\n";
    return kExitUsage;
  }
  const Subcommand subcommand = *invocation.subcommand;

  // Requests are built before connecting so that bad input never reaches
  // the network and always exits with kExitUsage.
  v1::BatchCosineRequest cosine_request;
  v1::SpreadRequest spread_request;
  if (subcommand == Subcommand::kCosine || subcommand == Subcommand::kSpread) {
    absl::Status built;
    if (subcommand == Subcommand::kCosine) {
      absl::StatusOr<v1::BatchCosineRequest> request =
          BuildCosineRequest(invocation.cosine);
      built = request.status();
      if (request.ok()) cosine_request = *std::move(request);
    } else {
      absl::StatusOr<v1::SpreadRequest> request =
          BuildSpreadRequest(invocation.spread);
      built = request.status();
      if (request.ok()) spread_request = *std::move(request);
    }
    if (!built.ok()) {
      err << FormatError(built) << "\n";
      return kExitUsage;
    }
  }

  SimilarityClient::Options options;
  options.target = invocation.common.server;
  options.timeout = invocation.common.timeout;
  absl::StatusOr<std::unique_ptr<SimilarityClient>> client =
      SimilarityClient::Create(options);
  if (!client.ok()) {
    err << FormatError(client.status()) << "\n";
    return kExitUsage;
  }
  CallOptions call;
  call.request_id = invocation.common.request_id;

  switch (subcommand) {
    case Subcommand::kCosine:
      return Print((*client)->BatchCosine(cosine_request, call), out, err);
    case Subcommand::kSpread:
      return Print((*client)->Spread(spread_request, call), out, err);
    case Subcommand::kStats:
      return Print((*client)->GetStats(call), out, err);
    case Subcommand::kHealth: {
      absl::StatusOr<health::HealthCheckResponse::ServingStatus> status =
          (*client)->Health(invocation.health.service, call);
      absl::StatusOr<health::HealthCheckResponse> response;
      if (status.ok()) {
        health::HealthCheckResponse message;
        message.set_status(*status);
        response = std::move(message);
      } else {
        response = status.status();
      }
      const int code = Print(response, out, err);
      if (code != kExitOk) return code;
      return *status == health::HealthCheckResponse::SERVING ? kExitOk
                                                             : kExitRpcError;
    }
  }
  return kExitUsage;  // Unreachable: the switch covers every subcommand.
}

int Main(int argc, char** argv, std::ostream& out, std::ostream& err) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  absl::StatusOr<Invocation> invocation = ParseArgs(args);
  if (!invocation.ok()) {
    err << FormatError(invocation.status()) << "\n"
        << "run 'engram-cli --help' for usage\n";
    return kExitUsage;
  }
  if (invocation->help) {
    out << UsageText(invocation->subcommand);
    return kExitOk;
  }
  return Run(*invocation, out, err);
}

}  // namespace engram::client::cli
