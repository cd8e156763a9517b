#include "client/cli/flags.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "client/cli/invocation.h"
#include "client/cli/output.h"

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
ABSL_FLAG(bool, quiet, false,
          "No progress display on stderr, even on a terminal (wins over "
          "--progress).");
ABSL_FLAG(bool, progress, false,
          "collection upload/append, graph put: show progress on stderr even "
          "when it is not a terminal, as plain lines (at most one a second) "
          "instead of one line redrawn in place; a terminal gets it without "
          "this flag.");

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
          "collection upload/append/upsert: the rows, a .npy file of "
          "float32, N x D.");
ABSL_FLAG(std::string, ids, "",
          "collection upload/append/upsert: the rows' ids, a .npy file of one "
          "integer per row ('<u8', '<i8', '<u4' or '<i4'; required by upsert; "
          "upload/append default: rows are numbered from 0 in the "
          "collection). collection delete-rows: a .npy file of ids to "
          "delete.");
ABSL_FLAG(std::string, id_list, "",
          "collection delete-rows: ids to delete, ID,ID,... (with --ids, "
          "both are deleted).");
ABSL_FLAG(std::string, labels, "",
          "collection upload/append/upsert: the rows' labels, a file of JSON "
          "lines, one RowLabels in protobuf JSON per row in row order (a "
          "blank line: no labels), e.g. "
          "{\"tags\":[{\"key\":\"kind\",\"text\":\"episode\"},"
          "{\"key\":\"user\",\"integer\":\"42\"}],"
          "\"attributes\":{\"t\":1.5}}");
ABSL_FLAG(uint64_t, chunk_rows, 0,
          "collection upload/append: rows per stream message (0: about "
          "4 MiB per message).");
ABSL_FLAG(std::string, idempotency_key, "",
          "collection upload/append/upsert/delete-rows, graph update: a key "
          "of at most 128 printable ASCII characters; running the same "
          "command again with the same key applies the change at most once "
          "(the answer says replayed).");
ABSL_FLAG(uint64_t, expected_version, 0,
          "collection upsert/delete-rows, graph update: apply only to this "
          "version of the collection or graph (a describe or write answer "
          "says it), else ABORTED and nothing changes. 0: whatever version "
          "it is.");
ABSL_FLAG(std::string, filter, "",
          "collection search: only rows passing this RowFilter in protobuf "
          "JSON, or @FILE to read it from a file, e.g. "
          "{\"deny_ids\":[\"7\"],\"where\":{\"tag\":{\"key\":\"kind\","
          "\"values\":[{\"text\":\"episode\"}]}}}; the answer's "
          "rows_searched says how many rows were scored.");
ABSL_FLAG(std::string, edits, "",
          "graph update: a file of changes, one a line: 'add_nodes COUNT', "
          "'remove SOURCE TARGET', 'set SOURCE TARGET WEIGHT', 'add SOURCE "
          "TARGET WEIGHT'; '#' comments. Sent with the flags' changes.");
ABSL_FLAG(uint32_t, add_nodes, 0,
          "graph update: nodes to add, numbered from the graph's num_nodes "
          "on.");
ABSL_FLAG(std::string, remove_edges, "",
          "graph update: source:target,... every edge source -> target is "
          "removed.");
ABSL_FLAG(std::string, set_weights, "",
          "graph update: source:target:weight,... every edge source -> "
          "target gets the weight.");
ABSL_FLAG(std::string, add_edges, "",
          "graph update: source:target:weight,... appended after the "
          "source's other edges.");
ABSL_FLAG(std::string, seed_nodes, "",
          "Spread: node1,node2,... seeds on other nodes are ignored (the "
          "answer counts them). Empty: every node.");
ABSL_FLAG(std::string, result_nodes, "",
          "Spread: node1,node2,... only these nodes are results (top_k "
          "chooses among them; the others' activation is 0). Empty: every "
          "node.");
ABSL_FLAG(uint64_t, min_version, 0,
          "collection search/describe, graph describe, spread --graph_name: "
          "answer from a replica that has at least this version of the "
          "collection or graph (a write's answer says its version); a "
          "replica behind waits for it, then answers UNAVAILABLE. 0: any.");
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
      {"tls_server_name", "NAME"},   {"quiet", ""}};
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
        {"min_version", "V"},
        {"num_nodes", "N"},
        {"seeds", "NODE:ACT,..."},
        {"max_hops", "H"},
        {"decay", "KIND:VALUE"},
        {"threshold", "T"},
        {"hop_thresholds", "T1,T2,..."},
        {"max_activation", "A"},
        {"top_k", "K"},
        {"placement", "auto|cpu|gpu"},
        {"seed_nodes", "N1,N2,..."},
        {"result_nodes", "N1,N2,..."}}},
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
       "describe|search|upsert|delete-rows (uploads stream a .npy file in "
       "chunks; upsert and delete-rows change rows by id).",
       {{"name", "NAME"},
        {"dimension", "D"},
        {"metadata", "KEY=VALUE,..."},
        {"file", "FILE.npy"},
        {"ids", "FILE.npy"},
        {"id_list", "ID,ID,..."},
        {"labels", "FILE.jsonl"},
        {"chunk_rows", "N"},
        {"idempotency_key", "KEY"},
        {"expected_version", "V"},
        {"min_version", "V"},
        {"queries", "FILE.npy"},
        {"random", "Q,D"},
        {"seed", "S"},
        {"top_k", "K"},
        {"min_score", "S"},
        {"placement", "auto|cpu|gpu"},
        {"filter", "JSON|@FILE"},
        {"progress", ""}}},
      {Subcommand::kGraph,
       "graph",
       "Resident graphs: graph put|delete|list|describe|update (put streams "
       "an edge list as CSR in chunks; update adds nodes and removes, "
       "re-weights and adds edges as one new version).",
       {{"name", "NAME"},
        {"graph", "FILE"},
        {"num_nodes", "N"},
        {"chunk_entries", "N"},
        {"min_version", "V"},
        {"edits", "FILE"},
        {"add_nodes", "N"},
        {"remove_edges", "S:T,..."},
        {"set_weights", "S:T:W,..."},
        {"add_edges", "S:T:W,..."},
        {"idempotency_key", "KEY"},
        {"expected_version", "V"},
        {"progress", ""}}},
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

const std::vector<absl::string_view>& ActionsOf(Subcommand subcommand) {
  static const auto* collection = new std::vector<absl::string_view>{
      "create",   "upload", "append", "delete",     "list",
      "describe", "search", "upsert", "delete-rows"};
  static const auto* graph = new std::vector<absl::string_view>{
      "put", "delete", "list", "describe", "update"};
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

absl::Status ValidateRequestId(absl::string_view id) {
  for (char c : id) {
    if (c < 0x20 || c > 0x7e) {
      return UsageError("--request_id must be printable ASCII");
    }
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
  // A switch (a bool flag) has no value hint: --quiet, or --quiet=false.
  absl::StrAppend(out, "  --", spec.name, spec.value_hint.empty() ? "" : "=",
                  spec.value_hint, "\n");
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
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string value;
    if (equals != absl::string_view::npos) {
      value = std::string(arg.substr(equals + 1));
    } else if (flag != nullptr && flag->IsOfType<bool>()) {
      value = "true";  // A switch alone turns on; --name=false turns off.
    } else if (i + 1 < args.size()) {
      // Every other flag takes a value, so the next argument is it even
      // when it starts with '-' (e.g. --min_score -0.5).
      value = args[++i];
    } else {
      return UsageError(absl::StrCat("--", name, " needs a value"));
    }
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
  common.quiet = absl::GetFlag(FLAGS_quiet);
  common.progress = absl::GetFlag(FLAGS_progress);
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
  spread.min_version = absl::GetFlag(FLAGS_min_version);
  spread.num_nodes = absl::GetFlag(FLAGS_num_nodes);
  spread.seeds = absl::GetFlag(FLAGS_seeds);
  spread.max_hops = absl::GetFlag(FLAGS_max_hops);
  spread.decay = absl::GetFlag(FLAGS_decay);
  spread.threshold = absl::GetFlag(FLAGS_threshold);
  spread.hop_thresholds = absl::GetFlag(FLAGS_hop_thresholds);
  spread.max_activation = absl::GetFlag(FLAGS_max_activation);
  spread.top_k = absl::GetFlag(FLAGS_top_k);
  spread.placement = absl::GetFlag(FLAGS_placement);
  spread.seed_nodes = absl::GetFlag(FLAGS_seed_nodes);
  spread.result_nodes = absl::GetFlag(FLAGS_result_nodes);

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
  collection.id_list = absl::GetFlag(FLAGS_id_list);
  collection.labels_file = absl::GetFlag(FLAGS_labels);
  collection.chunk_rows = absl::GetFlag(FLAGS_chunk_rows);
  collection.idempotency_key = absl::GetFlag(FLAGS_idempotency_key);
  collection.expected_version = absl::GetFlag(FLAGS_expected_version);
  collection.min_version = absl::GetFlag(FLAGS_min_version);
  collection.filter = absl::GetFlag(FLAGS_filter);

  GraphOptions& graph = invocation.graph;
  graph.action = action;
  graph.name = absl::GetFlag(FLAGS_name);
  graph.graph_path = absl::GetFlag(FLAGS_graph);
  graph.num_nodes = absl::GetFlag(FLAGS_num_nodes);
  graph.chunk_entries = absl::GetFlag(FLAGS_chunk_entries);
  graph.min_version = absl::GetFlag(FLAGS_min_version);
  graph.edits_path = absl::GetFlag(FLAGS_edits);
  graph.add_nodes = absl::GetFlag(FLAGS_add_nodes);
  graph.remove_edges = absl::GetFlag(FLAGS_remove_edges);
  graph.set_weights = absl::GetFlag(FLAGS_set_weights);
  graph.add_edges = absl::GetFlag(FLAGS_add_edges);
  graph.idempotency_key = absl::GetFlag(FLAGS_idempotency_key);
  graph.expected_version = absl::GetFlag(FLAGS_expected_version);
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
  if (*subcommand == Subcommand::kCollection) {
    absl::StrAppend(
        &out,
        "upload, append and upsert take --file (rows) and --ids (one id per "
        "row;\nrequired by upsert, which replaces the rows whose ids the "
        "collection holds\nand appends the others), and --labels: JSON lines, "
        "one RowLabels per row\n(tags: key with text or integer; attributes: "
        "name to number). delete-rows\ntakes --id_list and/or --ids. search "
        "--filter takes a RowFilter: allow_ids,\ndeny_ids and where, a "
        "Predicate (tag, range, all, any, not).\n");
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

}  // namespace engram::client::cli
