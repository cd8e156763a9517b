// What an engram-cli command line means once parsed: the subcommand and the
// options of every subcommand, as plain structs. Parsing fills them (see
// flags.h); the request builders, the load generator and the commands read
// them, and tests build them by hand, so they carry the defaults themselves.
#ifndef ENGRAM_CLIENT_CLI_INVOCATION_H_
#define ENGRAM_CLIENT_CLI_INVOCATION_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace engram::client::cli {

enum class Subcommand {
  kCosine,
  kSpread,
  kStats,
  kHealth,
  kBench,
  kCollection,
  kGraph
};

// Flags every subcommand accepts.
struct CommonOptions {
  std::string server = "127.0.0.1:50051";
  absl::Duration timeout = absl::Seconds(30);
  std::string request_id;  // empty: no x-request-id is sent
  // TLS: a CA bundle to trust turns TLS on; a certificate and key add the
  // client's identity (mutual TLS); the server name overrides the host the
  // server's certificate must name. All PEM files.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
  // Progress of long transfers on stderr (client/cli/progress.h): quiet
  // turns it off; progress (collection and graph only) prints it as plain
  // lines when stderr is not a terminal, where it shows anyway.
  bool quiet = false;
  bool progress = false;
};

struct CosineOptions {
  std::string queries_path;  // .npy, with targets_path; or random
  std::string targets_path;
  std::string random;  // "Q,N,D"
  uint64_t seed = 1;
  uint32_t top_k = 0;
  std::optional<float> min_score;
  std::string placement = "auto";
};

struct SpreadOptions {
  std::string graph_path;    // edge list, see client/edge_list.h
  std::string graph_name;    // a resident graph instead of graph_path
  uint64_t min_version = 0;  // of graph_name
  std::optional<uint32_t> num_nodes;
  std::string seeds;  // "node:activation,..."
  std::optional<uint32_t> max_hops;
  std::string decay;  // "kind:value"; empty leaves the server default
  std::optional<float> threshold;
  std::string hop_thresholds;  // "t1,t2,..."; empty sends none
  std::optional<float> max_activation;
  uint32_t top_k = 0;
  std::string placement = "auto";
  // Node allow-lists "n1,n2,..."; empty sends none (every node admitted).
  std::string seed_nodes;
  std::string result_nodes;
};

// `engram-cli collection ACTION`: create, upload (creates), append, delete,
// list, describe, search, upsert (rows by id), delete-rows. Search takes the
// cosine flags for its queries (--queries FILE.npy, or --random=Q,D),
// --top_k, --min_score, --placement.
struct CollectionOptions {
  std::string action;
  std::string name;
  uint32_t dimension = 0;  // create
  std::string metadata;    // "key=value,..." (create, upload)
  std::string file;        // .npy rows (upload, append, upsert)
  // .npy ids, one per row (upload, append, upsert), or the ids to delete
  // (delete-rows).
  std::string ids_file;
  std::string id_list;  // "id,id,..." (delete-rows)
  // JSON lines, one RowLabels per row (upload, append, upsert).
  std::string labels_file;
  uint64_t chunk_rows = 0;  // rows per upload message; 0: about 4 MiB each
  // upload, append, upsert, delete-rows: applied at most once.
  std::string idempotency_key;
  uint64_t expected_version = 0;  // upsert, delete-rows: 0 for any version
  uint64_t min_version = 0;       // search, describe: the oldest version read
  // search: a RowFilter in protobuf JSON, or "@FILE" holding one; empty:
  // none.
  std::string filter;
};

// `engram-cli graph ACTION`: put (from an edge list), delete, list,
// describe, update.
struct GraphOptions {
  std::string action;
  std::string name;
  std::string graph_path;  // edge list (put)
  std::optional<uint32_t> num_nodes;
  uint64_t chunk_entries = uint64_t{1} << 20;
  uint64_t min_version = 0;  // describe
  // update: the changes, from a file (client/edge_list.h's update format)
  // and from the flags, together.
  std::string edits_path;
  uint32_t add_nodes = 0;
  std::string remove_edges;  // "source:target,..."
  std::string set_weights;   // "source:target:weight,..."
  std::string add_edges;     // "source:target:weight,..."
  std::string idempotency_key;
  uint64_t expected_version = 0;
};

struct HealthOptions {
  std::string service;
};

// `engram-cli bench`: a load generator. The request is the one `cosine` or
// `spread` would send (their flags apply), built and serialised once, then
// sent over one channel, either closed loop (`concurrency` calls always in
// flight) or open loop (`rate` calls per second on a fixed schedule, at most
// `concurrency` in flight; latency counts from the scheduled start, so a
// server that falls behind shows it instead of slowing the schedule down).
struct BenchOptions {
  // "cosine", "spread" or "SearchCollection" (against `collection`, with
  // queries from --random=Q,D or --queries).
  std::string rpc = "cosine";
  std::string collection;
  // The full method to call, e.g. "/engram.bench.v1.Echo/BatchCosine" for
  // bench/echo_server; empty: the Similarity service's method for `rpc`.
  std::string method;
  uint32_t concurrency = 1;
  double rate = 0.0;  // requests per second; 0: closed loop
  absl::Duration duration = absl::Seconds(10);
  // Calls started before the end of the warm-up are not counted.
  absl::Duration warmup = absl::Seconds(1);
  std::string format = "text";  // "text" or "json"
  // Spread only, instead of --graph: "NODES,DEGREE", every node with DEGREE
  // out-edges to uniformly random nodes, weights uniform on (0, 1], from the
  // cosine --seed.
  std::string random_graph;
};

// A parsed command line. With `help`, `subcommand` says whose help was asked
// for (none: the overview) and the option structs are meaningless.
struct Invocation {
  bool help = false;
  std::optional<Subcommand> subcommand;
  CommonOptions common;
  CosineOptions cosine;
  SpreadOptions spread;
  HealthOptions health;
  BenchOptions bench;
  CollectionOptions collection;
  GraphOptions graph;
};

// Whether `subcommand` names an action before its flags (`collection create`,
// `graph put`, ...): the resident-data subcommands.
inline bool TakesAction(Subcommand subcommand) {
  return subcommand == Subcommand::kCollection ||
         subcommand == Subcommand::kGraph;
}

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_INVOCATION_H_
