// Fuzzes whole PutGraph streams below gRPC: an input is a series of streams
// (fuzz_streams.proto) run in order through GraphUploadStream, the class the
// reactor forwards to, each fed message by message until one is refused and
// then committed (the client closed its side) or aborted (a refused message,
// or a cancelled call). Resident data has 1 MiB and the tiny request limits
// apply to stored graphs, so nothing allocates much.
//
// After every stream the store must show exactly what the stream answered:
// a committed one made its graph visible, holding the header's counts and
// the chunks' arrays, and changed nothing else; any other left every graph
// and the budget as they were. Errors must be the client's: INVALID_ARGUMENT,
// ALREADY_EXISTS, RESOURCE_EXHAUSTED, or FAILED_PRECONDITION for a stream
// that ended with data missing. Each input deletes what it made, after
// which the budget must be back where it started.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "core/collections/graph_store.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "server/upload_streams.h"
#include "tests/fuzz/fuzz_engine.h"
#include "tests/fuzz/fuzz_streams.pb.h"

namespace {

namespace collections = ::engram::collections;
namespace v1 = ::engram::similarity::v1;

void Require(bool holds, const char* invariant) {
  if (!holds) {
    std::fprintf(stderr, "put_graph invariant broken: %s\n", invariant);
    std::abort();
  }
}

// What a reader can see of a graph.
using Visible =
    std::tuple<uint32_t, uint64_t, uint64_t, uint64_t, uint64_t, std::string>;

std::map<std::string, Visible> Snapshot(collections::GraphStore& store) {
  std::map<std::string, Visible> out;
  for (const collections::GraphInfo& info : store.List()) {
    out[info.name] = Visible(info.num_nodes, info.num_edges, info.bytes,
                             info.uid, info.version, info.load_state);
  }
  return out;
}

bool ClientError(const absl::Status& status, bool at_commit) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kResourceExhausted:
      return true;
    case absl::StatusCode::kFailedPrecondition:
      return at_commit;
    default:
      return false;
  }
}

// The committed graph holds the stream's chunks, in order.
void CheckArrays(const collections::Graph& graph,
                 const engram::fuzz::PutGraphStream& stream) {
  std::vector<uint32_t> offsets, targets;
  std::vector<float> weights;
  for (const v1::PutGraphRequest& message : stream.messages()) {
    if (!message.has_chunk()) continue;
    const v1::PutGraphChunk& chunk = message.chunk();
    offsets.insert(offsets.end(), chunk.row_offsets().begin(),
                   chunk.row_offsets().end());
    targets.insert(targets.end(), chunk.targets().begin(),
                   chunk.targets().end());
    weights.insert(weights.end(), chunk.weights().begin(),
                   chunk.weights().end());
  }
  const auto& view = graph.base();
  Require(std::vector<uint32_t>(view.row_offsets.begin(),
                                view.row_offsets.end()) == offsets,
          "the stored row offsets are the uploaded ones");
  Require(std::vector<uint32_t>(view.targets.begin(), view.targets.end()) ==
              targets,
          "the stored targets are the uploaded ones");
  // Bit for bit: the weights are copied, whatever their values.
  Require(
      view.weights.size() == weights.size() &&
          (weights.empty() || std::memcmp(view.weights.data(), weights.data(),
                                          weights.size() * sizeof(float)) == 0),
      "the stored weights are the uploaded ones");
}

void RunStream(engram::core::Engine& engine,
               const engram::fuzz::PutGraphStream& input) {
  collections::GraphStore& store = engine.resident().graphs();
  const std::map<std::string, Visible> before = Snapshot(store);
  const uint64_t reserved_before = engine.resident().budget().reserved_bytes();

  v1::GraphInfo response;
  absl::Status status;
  bool committed = false;
  {
    engram::server::GraphUploadStream stream(&engine);
    for (const v1::PutGraphRequest& message : input.messages()) {
      status = stream.Process(message);
      if (!status.ok()) break;
    }
    if (!status.ok()) {
      Require(ClientError(status, false), "a client's error");
    } else if (input.end() == engram::fuzz::STREAM_END_CLOSE) {
      status = stream.Commit(&response);
      committed = status.ok();
      if (!committed) Require(ClientError(status, true), "a client's error");
    }
    // What the reactor does when the call ends any other way.
    if (!committed) stream.Abort();
  }

  const std::map<std::string, Visible> after = Snapshot(store);
  const uint64_t reserved_after = engine.resident().budget().reserved_bytes();
  if (!committed) {
    Require(after == before, "an uncommitted stream changes no graph");
    Require(reserved_after == reserved_before,
            "an uncommitted stream holds no budget");
    return;
  }

  Require(input.messages_size() > 0 && input.messages(0).has_header(),
          "a committed stream began with a header");
  const v1::PutGraphHeader& header = input.messages(0).header();
  Require(before.count(header.name()) == 0, "a put makes a new name");
  auto now = after.find(header.name());
  Require(now != after.end(), "a committed graph is visible");
  Require(std::get<0>(now->second) == header.num_nodes() &&
              std::get<1>(now->second) == header.num_edges(),
          "a committed graph has the declared counts");
  Require(response.name() == header.name() &&
              response.num_nodes() == header.num_nodes() &&
              response.num_edges() == header.num_edges(),
          "the response describes the committed graph");
  Require(reserved_after > reserved_before, "a committed graph holds budget");
  for (const auto& [name, visible] : before) {
    Require(after.count(name) == 1 && after.at(name) == visible,
            "a put changes no other graph");
  }
  Require(after.size() == before.size() + 1, "a put makes one graph");
  auto graph = store.Get(header.name());
  Require(graph.ok(), "a committed graph can be read");
  CheckArrays(**graph, input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::PutGraphInput input;
  if (!input.ParseFromArray(data, static_cast<int>(size))) return 0;
  engram::core::Engine& engine = engram::fuzz::FuzzEngine();
  const uint64_t reserved_start = engine.resident().budget().reserved_bytes();
  for (const engram::fuzz::PutGraphStream& stream : input.streams()) {
    RunStream(engine, stream);
  }
  // The next input starts from an empty store.
  for (const collections::GraphInfo& info : engine.resident().graphs().List()) {
    Require(engine.resident().graphs().Delete(info.name).ok(),
            "a graph can be deleted");
  }
  Require(engine.resident().graphs().List().empty(), "all deleted");
  Require(engine.resident().budget().reserved_bytes() == reserved_start,
          "deleting every graph gives the budget back");
  return 0;
}
