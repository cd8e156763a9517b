#include "client/cli/commands.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "client/edge_list.h"
#include "client/file_io.h"
#include "client/npy.h"
#include "client/random_data.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "client/status_conversion.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

// The defaults live in the option structs so that tests building options by
// hand see the same values as the command line.
ABSL_FLAG(std::string, server, engram::client::cli::CommonOptions().server,
          "Server address, any gRPC target: host:port, dns:///host:port, ...");
ABSL_FLAG(absl::Duration, timeout, engram::client::cli::CommonOptions().timeout,
          "Deadline of the call, e.g. 500ms, 30s, 2m; inf for none.");
ABSL_FLAG(std::string, request_id, "",
          "Sent as x-request-id metadata, for finding the call in server "
          "logs; printable ASCII.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle the server's certificate must chain to; turns TLS "
          "on.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate for mutual TLS (with --tls_key_file).");
ABSL_FLAG(std::string, tls_key_file, "", "PEM key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, when it differs from "
          "the host in --server.");

ABSL_FLAG(std::string, queries, "",
          "Query vectors: a .npy file of float32, Q x D (or 1-D: one query).");
ABSL_FLAG(std::string, targets, "",
          "Target vectors: a .npy file of float32, N x D (or 1-D).");
ABSL_FLAG(std::string, random, "",
          "Instead of files: Q,N,D for Q queries and N targets of dimension "
          "D (Q,D for collection search and bench --rpc=SearchCollection: "
          "queries only), uniform on [-1, 1), generated from --seed.");
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

ABSL_FLAG(std::string, graph_name, "",
          "A resident graph (graph put) to spread over, instead of --graph.");
ABSL_FLAG(std::string, name, "", "The resident collection or graph to act on.");
ABSL_FLAG(uint32_t, dimension, 0,
          "collection create: the vector dimension, [1, 65536].");
ABSL_FLAG(std::string, metadata, "",
          "collection create/upload: key=value,... stored with the "
          "collection.");
ABSL_FLAG(std::string, file, "",
          "collection upload/append: the rows, a .npy file of float32, "
          "N x D.");
ABSL_FLAG(std::string, ids, "",
          "collection upload/append: the rows' ids, a .npy file of one "
          "integer per row ('<u8', '<i8', '<u4' or '<i4'; default: rows are "
          "numbered from 0 in the collection).");
ABSL_FLAG(uint64_t, chunk_rows, 0,
          "collection upload/append: rows per stream message (0: about "
          "4 MiB per message).");
ABSL_FLAG(uint64_t, chunk_entries,
          engram::client::cli::GraphOptions().chunk_entries,
          "graph put: row offsets or edges per stream message.");
ABSL_FLAG(std::string, collection, "",
          "bench --rpc=SearchCollection: the resident collection to search.");

ABSL_FLAG(std::string, service, "",
          "Service name to check; empty checks the whole server.");

ABSL_FLAG(std::string, rpc, engram::client::cli::BenchOptions().rpc,
          "The call to load the server with: cosine (BatchCosine, shaped by "
          "the cosine flags), spread (Spread, shaped by the spread flags "
          "or --random_graph) or SearchCollection (against --collection, "
          "queries from --random=Q,D or --queries, with --top_k).");
ABSL_FLAG(std::string, method, "",
          "Full gRPC method to call with the same request instead of the "
          "Similarity service's, e.g. /engram.bench.v1.Echo/BatchCosine for "
          "bench/echo_server.");
ABSL_FLAG(uint32_t, concurrency,
          engram::client::cli::BenchOptions().concurrency,
          "Calls in flight: always this many (closed loop), or at most this "
          "many with --rate.");
ABSL_FLAG(double, rate, 0.0,
          "Open loop: start this many calls per second on a fixed schedule "
          "(latency counts from the scheduled time). 0: closed loop.");
ABSL_FLAG(absl::Duration, duration,
          engram::client::cli::BenchOptions().duration,
          "How long to measure, after the warm-up.");
ABSL_FLAG(absl::Duration, warmup, engram::client::cli::BenchOptions().warmup,
          "Load applied before measuring (connection set-up, caches, the "
          "server's pools), not counted.");
ABSL_FLAG(std::string, format, engram::client::cli::BenchOptions().format,
          "Report as text or json.");
ABSL_FLAG(std::string, random_graph, "",
          "Spread: instead of --graph, NODES,DEGREE: every node gets DEGREE "
          "out-edges to random nodes, weights uniform on (0, 1], from "
          "--seed.");

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
      {"server", "HOST:PORT"},       {"timeout", "DURATION"},
      {"request_id", "ID"},          {"tls_ca_file", "FILE.pem"},
      {"tls_cert_file", "FILE.pem"}, {"tls_key_file", "FILE.pem"},
      {"tls_server_name", "NAME"}};
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
        {"graph_name", "NAME"},
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
      {Subcommand::kBench,
       "bench",
       "Load generator: the cosine or spread request sent over and over, "
       "closed loop or at a fixed rate, for a fixed time; reports requests/s, "
       "vectors/s or edges/s, latency percentiles and errors by code.",
       {{"rpc", "cosine|spread|SearchCollection"},
        {"collection", "NAME"},
        {"method", "/PACKAGE.SERVICE/METHOD"},
        {"concurrency", "C"},
        {"rate", "R"},
        {"duration", "DURATION"},
        {"warmup", "DURATION"},
        {"format", "text|json"},
        {"queries", "FILE.npy"},
        {"targets", "FILE.npy"},
        {"random", "Q,N,D"},
        {"seed", "S"},
        {"top_k", "K"},
        {"min_score", "S"},
        {"placement", "auto|cpu|gpu"},
        {"graph", "FILE"},
        {"random_graph", "NODES,DEGREE"},
        {"num_nodes", "N"},
        {"seeds", "NODE:ACT,..."},
        {"max_hops", "H"},
        {"decay", "KIND:VALUE"},
        {"threshold", "T"},
        {"hop_thresholds", "T1,T2,..."},
        {"max_activation", "A"}}},
      {Subcommand::kCollection,
       "collection",
       "Resident collections: collection create|upload|append|delete|list|"
       "describe|search (uploads stream a .npy file in chunks).",
       {{"name", "NAME"},
        {"dimension", "D"},
        {"metadata", "KEY=VALUE,..."},
        {"file", "FILE.npy"},
        {"ids", "FILE.npy"},
        {"chunk_rows", "N"},
        {"queries", "FILE.npy"},
        {"random", "Q,D"},
        {"seed", "S"},
        {"top_k", "K"},
        {"min_score", "S"},
        {"placement", "auto|cpu|gpu"}}},
      {Subcommand::kGraph,
       "graph",
       "Resident graphs: graph put|delete|list|describe (put streams an "
       "edge list as CSR in chunks).",
       {{"name", "NAME"},
        {"graph", "FILE"},
        {"num_nodes", "N"},
        {"chunk_entries", "N"}}},
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

constexpr absl::string_view kSubcommandList =
    "(cosine, spread, stats, health, bench, collection or graph)";

bool TakesAction(Subcommand subcommand) {
  return subcommand == Subcommand::kCollection ||
         subcommand == Subcommand::kGraph;
}

const std::vector<absl::string_view>& ActionsOf(Subcommand subcommand) {
  static const auto* collection = new std::vector<absl::string_view>{
      "create", "upload", "append", "delete", "list", "describe", "search"};
  static const auto* graph =
      new std::vector<absl::string_view>{"put", "delete", "list", "describe"};
  return subcommand == Subcommand::kGraph ? *graph : *collection;
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
    return UsageError(absl::StrCat("missing subcommand ", kSubcommandList));
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
                                     " ", kSubcommandList));
    }
    return UsageError(
        absl::StrCat("unknown subcommand '", args[0], "' ", kSubcommandList));
  }
  invocation.subcommand = spec->subcommand;
  if (std::any_of(args.begin() + 1, args.end(), IsHelp)) {
    invocation.help = true;
    return invocation;
  }

  std::size_t first_flag = 1;
  std::string action;
  if (TakesAction(spec->subcommand)) {
    const std::vector<absl::string_view>& actions = ActionsOf(spec->subcommand);
    if (args.size() < 2 ||
        std::find(actions.begin(), actions.end(), args[1]) == actions.end()) {
      return UsageError(absl::StrCat(
          "'", spec->name, "' needs an action first: one of ",
          absl::StrJoin(actions, ", "),
          args.size() < 2 ? "" : absl::StrCat(" (got '", args[1], "')")));
    }
    action = args[1];
    first_flag = 2;
  }

  // Each parse starts from the defaults, so that its result depends on
  // `args` alone, whatever an earlier parse left in the flags.
  ENGRAM_RETURN_IF_ERROR(ResetFlagsToDefaults());
  for (std::size_t i = first_flag; i < args.size(); ++i) {
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
  common.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  common.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  common.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  common.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  ENGRAM_RETURN_IF_ERROR(ValidateRequestId(common.request_id));
  if (common.tls_cert_file.empty() != common.tls_key_file.empty()) {
    return UsageError("--tls_cert_file and --tls_key_file go together");
  }
  if (common.tls_ca_file.empty() &&
      !(common.tls_cert_file.empty() && common.tls_server_name.empty())) {
    return UsageError(
        "--tls_cert_file, --tls_key_file and --tls_server_name need "
        "--tls_ca_file");
  }
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
  spread.graph_name = absl::GetFlag(FLAGS_graph_name);
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

  BenchOptions& bench = invocation.bench;
  bench.rpc = absl::GetFlag(FLAGS_rpc);
  bench.method = absl::GetFlag(FLAGS_method);
  bench.concurrency = absl::GetFlag(FLAGS_concurrency);
  bench.rate = absl::GetFlag(FLAGS_rate);
  bench.duration = absl::GetFlag(FLAGS_duration);
  bench.warmup = absl::GetFlag(FLAGS_warmup);
  bench.format = absl::GetFlag(FLAGS_format);
  bench.random_graph = absl::GetFlag(FLAGS_random_graph);
  bench.collection = absl::GetFlag(FLAGS_collection);

  CollectionOptions& collection = invocation.collection;
  collection.action = action;
  collection.name = absl::GetFlag(FLAGS_name);
  collection.dimension = absl::GetFlag(FLAGS_dimension);
  collection.metadata = absl::GetFlag(FLAGS_metadata);
  collection.file = absl::GetFlag(FLAGS_file);
  collection.ids_file = absl::GetFlag(FLAGS_ids);
  collection.chunk_rows = absl::GetFlag(FLAGS_chunk_rows);

  GraphOptions& graph = invocation.graph;
  graph.action = action;
  graph.name = absl::GetFlag(FLAGS_name);
  graph.graph_path = absl::GetFlag(FLAGS_graph);
  graph.num_nodes = absl::GetFlag(FLAGS_num_nodes);
  graph.chunk_entries = absl::GetFlag(FLAGS_chunk_entries);
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
          absl::StrCat(
              "  ", spec.name,
              std::string(12 - std::min<size_t>(spec.name.size(), 11), ' ')),
          spec.summary, 14, &out);
    }
    absl::StrAppend(&out, "\nFlags of every subcommand:\n");
    for (const FlagSpec& flag : CommonFlags()) AppendFlagHelp(flag, &out);
    absl::StrAppend(&out, "\n", kOutputAndExitCodes);
    return out;
  }
  const CommandSpec& spec = SpecFor(*subcommand);
  AppendWrapped(absl::StrCat("engram-cli ", spec.name, ": "), spec.summary, 0,
                &out);
  absl::StrAppend(
      &out, "\nUsage: engram-cli ", spec.name,
      TakesAction(*subcommand)
          ? absl::StrCat(" <", absl::StrJoin(ActionsOf(*subcommand), "|"), ">")
          : "",
      " [--flag=value ...]\n");
  if (*subcommand == Subcommand::kCosine) {
    absl::StrAppend(&out,
                    "Give --queries and --targets, or --random (with "
                    "--seed).\n");
  }
  if (*subcommand == Subcommand::kBench) {
    absl::StrAppend(
        &out,
        "The request is built once, as cosine (--random or --queries and "
        "--targets)\nor spread (--graph or --random_graph, and --seeds, "
        "default 0:1) would send it.\nvectors/s counts target vectors, "
        "pairs/s query-target pairs, edges/s graph\nedges, all of successful "
        "calls. Exits 0 when at least one call succeeded.\n");
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

namespace {

// The SpreadParams `options` give (only those given are set).
absl::StatusOr<v1::SpreadParams> BuildSpreadParams(
    const SpreadOptions& options) {
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
  return params;
}

}  // namespace

absl::StatusOr<v1::SpreadRequest> BuildSpreadRequest(
    const SpreadOptions& options) {
  if (options.graph_path.empty() && options.graph_name.empty()) {
    return UsageError(
        "--graph is required (an edge list file), or --graph_name (a "
        "resident graph)");
  }
  if (!options.graph_path.empty() && !options.graph_name.empty()) {
    return UsageError("give --graph or --graph_name, not both");
  }
  if (options.seeds.empty()) {
    return UsageError("--seeds is required (node:activation,...)");
  }
  ENGRAM_ASSIGN_OR_RETURN(const std::vector<SpreadSeed> seeds,
                          ParseSeeds(options.seeds));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));
  ENGRAM_ASSIGN_OR_RETURN(v1::SpreadParams params, BuildSpreadParams(options));
  if (!options.graph_name.empty()) {
    v1::SpreadRequest request = MakeSpreadRequest(
        v1::Graph(), seeds, std::move(params), options.top_k, placement);
    request.clear_graph();
    request.set_graph_name(options.graph_name);
    return request;
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

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(
    absl::string_view text) {
  std::map<std::string, std::string> metadata;
  if (absl::StripAsciiWhitespace(text).empty()) return metadata;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    const absl::string_view key =
        absl::StripAsciiWhitespace(parts.empty() ? "" : parts[0]);
    if (parts.size() != 2 || key.empty()) {
      return UsageError(
          absl::StrCat("metadata '", item, "': expected key=value"));
    }
    metadata[std::string(key)] = std::string(parts[1]);
  }
  return metadata;
}

absl::StatusOr<v1::SearchCollectionRequest> BuildSearchRequest(
    const std::string& collection, const CosineOptions& options) {
  if (collection.empty()) {
    return UsageError("the collection to search is required");
  }
  if (options.queries_path.empty() == options.random.empty()) {
    return UsageError(
        "give exactly one of --queries (a .npy file) and --random=Q,D");
  }
  if (!options.targets_path.empty()) {
    return UsageError("--targets is not used: the targets are resident");
  }
  ENGRAM_RETURN_IF_ERROR(RequireFinite(options.min_score, "min_score"));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));
  FloatMatrix queries;
  if (!options.random.empty()) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(options.random, ',');
    size_t q = 0, d = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &q) ||
        !absl::SimpleAtoi(parts[1], &d) || q == 0 || d == 0 ||
        q * d > kMaxRandomValues) {
      return UsageError(absl::StrCat(
          "--random '", options.random,
          "': expected Q,D (queries and dimension, both >= 1) for a search"));
    }
    std::mt19937_64 rng(options.seed);
    queries = RandomMatrix(q, d, rng);
  } else {
    ENGRAM_ASSIGN_OR_RETURN(queries, ReadNpyFile(options.queries_path));
  }
  v1::SearchCollectionRequest request;
  request.set_collection(collection);
  ENGRAM_ASSIGN_OR_RETURN(*request.mutable_queries(), MakeMatrix(queries));
  request.set_top_k(options.top_k);
  if (options.min_score.has_value()) request.set_min_score(*options.min_score);
  request.set_placement(placement);
  return request;
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

absl::StatusOr<BenchRequest> BuildBenchRequest(const Invocation& invocation) {
  const BenchOptions& bench = invocation.bench;
  BenchRequest out;
  if (bench.rpc == "cosine") {
    if (!bench.random_graph.empty()) {
      return UsageError("--random_graph is for --rpc=spread");
    }
    ENGRAM_ASSIGN_OR_RETURN(const v1::BatchCosineRequest request,
                            BuildCosineRequest(invocation.cosine));
    out.method = "/engram.similarity.v1.Similarity/BatchCosine";
    out.payload = request.SerializeAsString();
    const uint64_t q = request.queries().rows();
    const uint64_t n = request.targets().rows();
    out.vectors = n;
    out.pairs = q * n;
    out.shape = absl::StrCat("BatchCosine Q=", q, " N=", n,
                             " d=", request.targets().cols(),
                             " top_k=", request.top_k());
  } else if (bench.rpc == "spread") {
    SpreadOptions options = invocation.spread;
    if (options.seeds.empty()) options.seeds = "0:1";
    if (bench.random_graph.empty()) {
      ENGRAM_ASSIGN_OR_RETURN(const v1::SpreadRequest request,
                              BuildSpreadRequest(options));
      out.payload = request.SerializeAsString();
      out.edges = request.graph().targets_size();
      out.shape = absl::StrCat("Spread nodes=", request.graph().num_nodes(),
                               " edges=", out.edges);
    } else {
      if (!options.graph_path.empty()) {
        return UsageError("give --graph or --random_graph, not both");
      }
      const std::vector<absl::string_view> parts =
          absl::StrSplit(bench.random_graph, ',');
      uint32_t nodes = 0, degree = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &nodes) ||
          !absl::SimpleAtoi(parts[1], &degree) || nodes == 0) {
        return UsageError(absl::StrCat("--random_graph '", bench.random_graph,
                                       "': expected NODES,DEGREE with NODES "
                                       ">= 1"));
      }
      if (uint64_t{nodes} * degree > (uint64_t{1} << 31)) {
        return UsageError("--random_graph: more than 2^31 edges");
      }
      ENGRAM_ASSIGN_OR_RETURN(const std::vector<SpreadSeed> seeds,
                              ParseSeeds(options.seeds));
      ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                              ParsePlacement(options.placement));
      ENGRAM_ASSIGN_OR_RETURN(v1::SpreadParams params,
                              BuildSpreadParams(options));
      std::mt19937_64 rng(invocation.cosine.seed);
      std::uniform_int_distribution<uint32_t> node(0, nodes - 1);
      std::uniform_real_distribution<float> unit(0.0f, 1.0f);
      std::vector<Edge> edges;
      edges.reserve(uint64_t{nodes} * degree);
      for (uint32_t u = 0; u < nodes; ++u) {
        for (uint32_t i = 0; i < degree; ++i) {
          edges.push_back({u, node(rng), 1.0f - unit(rng)});
        }
      }
      absl::StatusOr<v1::Graph> graph = MakeGraph(nodes, edges);
      if (!graph.ok()) return UsageError(graph.status().message());
      const v1::SpreadRequest request =
          MakeSpreadRequest(*std::move(graph), seeds, std::move(params),
                            options.top_k, placement);
      out.payload = request.SerializeAsString();
      out.edges = edges.size();
      out.shape = absl::StrCat("Spread nodes=", nodes, " edges=", out.edges,
                               " (random, degree ", degree, ")");
    }
    out.method = "/engram.similarity.v1.Similarity/Spread";
  } else if (bench.rpc == "SearchCollection") {
    if (bench.collection.empty()) {
      return UsageError("--collection is required with --rpc=SearchCollection");
    }
    ENGRAM_ASSIGN_OR_RETURN(
        const v1::SearchCollectionRequest request,
        BuildSearchRequest(bench.collection, invocation.cosine));
    out.method = "/engram.similarity.v1.Similarity/SearchCollection";
    out.payload = request.SerializeAsString();
    out.shape = absl::StrCat("SearchCollection collection=", bench.collection,
                             " Q=", request.queries().rows(),
                             " d=", request.queries().cols(),
                             " top_k=", request.top_k());
  } else {
    return UsageError(absl::StrCat("--rpc '", bench.rpc,
                                   "' is not one of cosine, spread, "
                                   "SearchCollection"));
  }
  if (!bench.collection.empty() && bench.rpc != "SearchCollection") {
    return UsageError("--collection is for --rpc=SearchCollection");
  }
  if (!bench.method.empty()) {
    if (bench.method.front() != '/' ||
        std::count(bench.method.begin(), bench.method.end(), '/') != 2) {
      return UsageError(absl::StrCat("--method '", bench.method,
                                     "': expected /package.Service/Method"));
    }
    out.method = bench.method;
  }
  return out;
}

namespace {

absl::Status ValidateBenchOptions(const BenchOptions& options) {
  if (options.concurrency == 0) {
    return UsageError("--concurrency must be at least 1");
  }
  if (!(options.rate >= 0.0) || !std::isfinite(options.rate)) {
    return UsageError("--rate must be a finite number >= 0");
  }
  if (options.duration <= absl::ZeroDuration() ||
      options.duration == absl::InfiniteDuration()) {
    return UsageError("--duration must be positive and finite");
  }
  if (options.warmup < absl::ZeroDuration() ||
      options.warmup == absl::InfiniteDuration()) {
    return UsageError("--warmup must be >= 0 and finite");
  }
  if (options.format != "text" && options.format != "json") {
    return UsageError(
        absl::StrCat("--format '", options.format, "' is not text or json"));
  }
  return absl::OkStatus();
}

// One load run: calls go out through the callback API and each completion
// (on a gRPC thread) records its outcome and, closed loop, starts the next.
class LoadRun {
 public:
  LoadRun(std::shared_ptr<grpc::Channel> channel, const BenchOptions& options,
          const BenchRequest& request, absl::Duration timeout)
      : stub_(std::move(channel)),
        options_(options),
        method_(request.method),
        timeout_(timeout) {
    grpc::Slice slice(request.payload);
    payload_ = grpc::ByteBuffer(&slice, 1);
  }

  // Applies the load and waits for every call to finish.
  void Run() {
    const absl::Time start = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      measure_from_ = start + options_.warmup;
      stop_at_ = measure_from_ + options_.duration;
    }
    if (options_.rate == 0.0) {
      for (uint32_t i = 0; i < options_.concurrency; ++i) {
        {
          absl::MutexLock lock(&mu_);
          ++in_flight_;
        }
        StartCall(absl::Now());
      }
    } else {
      RunSchedule(start);
    }
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &LoadRun::Idle));
  }

  // Fills the counts and latencies of `report`.
  void Report(BenchReport* report) {
    absl::MutexLock lock(&mu_);
    report->seconds = absl::ToDoubleSeconds(options_.duration);
    report->ok = ok_;
    for (const auto& [code, count] : errors_) {
      report->errors.emplace_back(CodeName(static_cast<absl::StatusCode>(code)),
                                  count);
    }
    std::sort(latencies_.begin(), latencies_.end());
    if (latencies_.empty()) return;
    auto at = [&](double fraction) {
      const size_t i = static_cast<size_t>(
          std::ceil(fraction * static_cast<double>(latencies_.size())));
      return absl::ToDoubleMilliseconds(
          latencies_[std::clamp<size_t>(i, 1, latencies_.size()) - 1]);
    };
    absl::Duration total;
    for (absl::Duration d : latencies_) total += d;
    report->latency_mean_ms = absl::ToDoubleMilliseconds(total) /
                              static_cast<double>(latencies_.size());
    report->latency_p50_ms = at(0.50);
    report->latency_p90_ms = at(0.90);
    report->latency_p99_ms = at(0.99);
    report->latency_max_ms = absl::ToDoubleMilliseconds(latencies_.back());
  }

 private:
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
    absl::Time scheduled;
  };

  // Open loop: call i is due at start + i / rate; a call waits for a free
  // slot when `concurrency` are in flight, and its latency still counts from
  // when it was due.
  void RunSchedule(absl::Time start) {
    const absl::Duration interval = absl::Seconds(1.0 / options_.rate);
    for (int64_t i = 0;; ++i) {
      const absl::Time due = start + i * interval;
      {
        absl::MutexLock lock(&mu_);
        if (due >= stop_at_) return;
      }
      // Sleeping overshoots by up to tens of microseconds, which would
      // count as latency: sleep to just short of the due time, then yield.
      const absl::Duration kSpin = absl::Microseconds(200);
      if (const absl::Time now = absl::Now(); due - now > kSpin) {
        absl::SleepFor(due - now - kSpin);
      }
      while (absl::Now() < due) std::this_thread::yield();
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &LoadRun::SlotFree));
        ++in_flight_;
      }
      StartCall(due);
    }
  }

  bool SlotFree() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ < options_.concurrency;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  }

  void StartCall(absl::Time scheduled) {
    auto* call = new Call;
    call->scheduled = scheduled;
    call->request = payload_;  // shares the slices, no copy
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    stub_.UnaryCall(&call->context, method_, grpc::StubOptions(),
                    &call->request, &call->response,
                    [this, call](grpc::Status status) { Done(call, status); });
  }

  void Done(Call* call, const grpc::Status& status) {
    const absl::Time now = absl::Now();
    const absl::Time scheduled = call->scheduled;
    delete call;
    bool again = false;
    {
      absl::MutexLock lock(&mu_);
      if (scheduled >= measure_from_ && scheduled < stop_at_) {
        latencies_.push_back(now - scheduled);
        if (status.ok()) {
          ++ok_;
        } else {
          ++errors_[static_cast<int>(status.error_code())];
        }
      }
      again = options_.rate == 0.0 && now < stop_at_;
      if (!again) --in_flight_;
    }
    if (again) StartCall(now);
  }

  grpc::GenericStub stub_;
  const BenchOptions& options_;
  const std::string method_;
  const absl::Duration timeout_;
  grpc::ByteBuffer payload_;

  absl::Mutex mu_;
  absl::Time measure_from_ ABSL_GUARDED_BY(mu_);
  absl::Time stop_at_ ABSL_GUARDED_BY(mu_);
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ok_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, uint64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> latencies_ ABSL_GUARDED_BY(mu_);
};

// "12.3" style numbers for the reports: enough digits, no exponent for the
// magnitudes a benchmark produces.
std::string Number(double value, int decimals = 3) {
  if (!std::isfinite(value)) return "0";
  return absl::StrFormat("%.*f", decimals, value);
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const CommonOptions& common) {
  if (common.tls_ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ENGRAM_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                          ReadFileToString(common.tls_ca_file));
  if (!common.tls_cert_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                            ReadFileToString(common.tls_cert_file));
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_private_key,
                            ReadFileToString(common.tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<BenchReport> RunBench(const CommonOptions& common,
                                     const BenchOptions& options,
                                     const BenchRequest& request) {
  ENGRAM_RETURN_IF_ERROR(ValidateBenchOptions(options));
  if (request.method.empty()) return UsageError("no method to call");
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          ChannelCredentialsFor(common));
  grpc::ChannelArguments args;
  const int max_bytes = SimilarityClient::Options().max_message_bytes;
  args.SetMaxSendMessageSize(max_bytes);
  args.SetMaxReceiveMessageSize(max_bytes);
  if (!common.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(common.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(common.server, credentials, args);
  LoadRun run(channel, options, request, common.timeout);
  run.Run();

  BenchReport report;
  report.target = common.server;
  report.method = request.method;
  report.shape = request.shape;
  report.concurrency = options.concurrency;
  report.rate = options.rate;
  report.request_bytes = request.payload.size();
  run.Report(&report);
  const double ok = static_cast<double>(report.ok);
  report.requests_per_second = ok / report.seconds;
  report.vectors_per_second = ok * request.vectors / report.seconds;
  report.pairs_per_second = ok * request.pairs / report.seconds;
  report.edges_per_second = ok * request.edges / report.seconds;
  return report;
}

std::string BenchReportJson(const BenchReport& r) {
  std::string errors;
  for (const auto& [code, count] : r.errors) {
    absl::StrAppend(&errors, errors.empty() ? "" : ",", JsonString(code), ":",
                    count);
  }
  return absl::StrCat(
      "{\"target\":", JsonString(r.target),
      ",\"method\":", JsonString(r.method), ",\"shape\":", JsonString(r.shape),
      ",\"concurrency\":", r.concurrency, ",\"rate\":", Number(r.rate),
      ",\"seconds\":", Number(r.seconds),
      ",\"request_bytes\":", r.request_bytes, ",\"ok\":", r.ok, ",\"errors\":{",
      errors, "},\"requests_per_second\":", Number(r.requests_per_second),
      ",\"vectors_per_second\":", Number(r.vectors_per_second),
      ",\"pairs_per_second\":", Number(r.pairs_per_second),
      ",\"edges_per_second\":", Number(r.edges_per_second),
      ",\"latency_ms\":{\"mean\":", Number(r.latency_mean_ms, 4),
      ",\"p50\":", Number(r.latency_p50_ms, 4),
      ",\"p90\":", Number(r.latency_p90_ms, 4),
      ",\"p99\":", Number(r.latency_p99_ms, 4),
      ",\"max\":", Number(r.latency_max_ms, 4), "}}");
}

std::string BenchReportText(const BenchReport& r) {
  std::string errors;
  for (const auto& [code, count] : r.errors) {
    absl::StrAppend(&errors, errors.empty() ? "" : ", ", code, " ", count);
  }
  const std::string load =
      r.rate > 0.0
          ? absl::StrCat("open loop at ", Number(r.rate, 1),
                         " requests/s, at most ", r.concurrency, " in flight")
          : absl::StrCat("closed loop, ", r.concurrency, " in flight");
  std::string out = absl::StrCat(
      "bench: ", r.shape, " (", r.request_bytes, " request bytes)\n",
      "  target:     ", r.target, " ", r.method, "\n", "  load:       ", load,
      ", ", Number(r.seconds, 1), " s measured\n", "  calls:      ", r.ok,
      " ok, errors: ", errors.empty() ? "none" : errors, "\n",
      "  throughput: ", Number(r.requests_per_second, 1), " requests/s");
  if (r.vectors_per_second > 0.0) {
    absl::StrAppend(&out, ", ", Number(r.vectors_per_second, 0), " vectors/s, ",
                    Number(r.pairs_per_second, 0), " pairs/s");
  }
  if (r.edges_per_second > 0.0) {
    absl::StrAppend(&out, ", ", Number(r.edges_per_second, 0), " edges/s");
  }
  absl::StrAppend(&out, "\n", "  latency ms: p50 ", Number(r.latency_p50_ms),
                  "  p90 ", Number(r.latency_p90_ms), "  p99 ",
                  Number(r.latency_p99_ms), "  max ", Number(r.latency_max_ms),
                  "  mean ", Number(r.latency_mean_ms), "\n");
  return out;
}

namespace {

// Prints the result of an RPC: the response as JSON, or the error.
template <typename Response>
int Print(const absl::StatusOr<Response>& response, std::ostream& out,
          std::ostream& err);

// What `collection ACTION` and `graph ACTION` send, read before connecting
// so that bad input exits with kExitUsage.
struct ResidentInput {
  v1::CreateCollectionRequest create;
  UploadOptions upload;
  FloatMatrix rows;
  std::vector<uint64_t> ids;  // empty: none sent
  v1::SearchCollectionRequest search;
  v1::Graph graph;
};

absl::StatusOr<ResidentInput> BuildResidentInput(const Invocation& invocation) {
  ResidentInput input;
  if (*invocation.subcommand == Subcommand::kCollection) {
    const CollectionOptions& c = invocation.collection;
    if (c.action != "list" && c.name.empty()) {
      return UsageError(absl::StrCat("collection ", c.action, " needs --name"));
    }
    ENGRAM_ASSIGN_OR_RETURN(const auto metadata, ParseMetadata(c.metadata));
    if (c.action == "create") {
      if (c.dimension == 0) {
        return UsageError("collection create needs --dimension (>= 1)");
      }
      input.create.set_name(c.name);
      input.create.set_dimension(c.dimension);
      input.create.mutable_metadata()->insert(metadata.begin(), metadata.end());
    } else if (c.action == "upload" || c.action == "append") {
      if (c.file.empty()) {
        return UsageError(absl::StrCat("collection ", c.action,
                                       " needs --file (a .npy file)"));
      }
      if (c.action == "append" && !metadata.empty()) {
        return UsageError("--metadata is set when the collection is created");
      }
      ENGRAM_ASSIGN_OR_RETURN(input.rows, ReadNpyFile(c.file));
      if (!c.ids_file.empty()) {
        ENGRAM_ASSIGN_OR_RETURN(input.ids, ReadNpyIdsFile(c.ids_file));
        if (input.ids.size() != input.rows.rows) {
          return UsageError(absl::StrCat(
              "--ids holds ", input.ids.size(), " ids for the ",
              input.rows.rows, " rows of --file; give one id per row"));
        }
      }
      input.upload.name = c.name;
      input.upload.create = c.action == "upload";
      input.upload.metadata = metadata;
      input.upload.chunk_rows = c.chunk_rows;
    } else if (c.action == "search") {
      ENGRAM_ASSIGN_OR_RETURN(input.search,
                              BuildSearchRequest(c.name, invocation.cosine));
    }
    return input;
  }
  const GraphOptions& g = invocation.graph;
  if (g.action != "list" && g.name.empty()) {
    return UsageError(absl::StrCat("graph ", g.action, " needs --name"));
  }
  if (g.action == "put") {
    if (g.graph_path.empty()) {
      return UsageError("graph put needs --graph (an edge list file)");
    }
    if (g.chunk_entries == 0) return UsageError("--chunk_entries must be >= 1");
    ENGRAM_ASSIGN_OR_RETURN(const std::vector<Edge> edges,
                            ReadEdgeListFile(g.graph_path));
    absl::StatusOr<v1::Graph> graph =
        MakeGraph(g.num_nodes.value_or(NumNodesFor(edges)), edges);
    if (!graph.ok()) {
      return UsageError(
          absl::StrCat(g.graph_path, ": ", graph.status().message()));
    }
    input.graph = *std::move(graph);
  }
  return input;
}

// Prints an empty JSON object for calls that answer nothing but success.
int PrintStatus(const absl::Status& status, std::ostream& out,
                std::ostream& err) {
  if (!status.ok()) {
    err << FormatError(status) << "\n";
    return kExitRpcError;
  }
  out << "{}\n";
  return kExitOk;
}

int RunResident(const Invocation& invocation, const ResidentInput& input,
                const SimilarityClient& client, const CallOptions& call,
                std::ostream& out, std::ostream& err) {
  if (*invocation.subcommand == Subcommand::kCollection) {
    const CollectionOptions& c = invocation.collection;
    if (c.action == "create") {
      return Print(client.CreateCollection(input.create, call), out, err);
    }
    if (c.action == "upload" || c.action == "append") {
      return Print(
          client.UploadCollection(input.upload, input.rows, input.ids, call),
          out, err);
    }
    if (c.action == "delete") {
      return PrintStatus(client.DeleteCollection(c.name, call), out, err);
    }
    if (c.action == "list")
      return Print(client.ListCollections(call), out, err);
    if (c.action == "describe") {
      return Print(client.DescribeCollection(c.name, call), out, err);
    }
    return Print(client.SearchCollection(input.search, call), out, err);
  }
  const GraphOptions& g = invocation.graph;
  if (g.action == "put") {
    return Print(client.PutGraph(g.name, input.graph, g.chunk_entries, call),
                 out, err);
  }
  if (g.action == "delete") {
    return PrintStatus(client.DeleteGraph(g.name, call), out, err);
  }
  if (g.action == "list") return Print(client.ListGraphs(call), out, err);
  return Print(client.DescribeGraph(g.name, call), out, err);
}

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

  if (subcommand == Subcommand::kBench) {
    absl::StatusOr<BenchRequest> request = BuildBenchRequest(invocation);
    absl::Status valid = request.status();
    if (valid.ok()) valid = ValidateBenchOptions(invocation.bench);
    if (!valid.ok()) {
      err << FormatError(valid) << "\n";
      return kExitUsage;
    }
    absl::StatusOr<BenchReport> report =
        RunBench(invocation.common, invocation.bench, *request);
    if (!report.ok()) {
      err << FormatError(report.status()) << "\n";
      return kExitUsage;
    }
    out << (invocation.bench.format == "json" ? BenchReportJson(*report) + "\n"
                                              : BenchReportText(*report));
    return report->ok > 0 ? kExitOk : kExitRpcError;
  }

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

  ResidentInput resident;
  if (TakesAction(subcommand)) {
    absl::StatusOr<ResidentInput> built = BuildResidentInput(invocation);
    if (!built.ok()) {
      err << FormatError(built.status()) << "\n";
      return kExitUsage;
    }
    resident = *std::move(built);
  }

  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFor(invocation.common);
  if (!credentials.ok()) {
    err << FormatError(credentials.status()) << "\n";
    return kExitUsage;
  }
  SimilarityClient::Options options;
  options.target = invocation.common.server;
  options.timeout = invocation.common.timeout;
  options.credentials = *credentials;
  options.tls_server_name = invocation.common.tls_server_name;
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
    case Subcommand::kBench:
      break;  // Handled above.
    case Subcommand::kCollection:
    case Subcommand::kGraph:
      return RunResident(invocation, resident, **client, call, out, err);
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
