// Fuzzes whole UploadCollection streams below gRPC: an input is a series of
// streams (fuzz_streams.proto) run in order through CollectionUploadStream,
// the class the reactor forwards to, each fed message by message until one
// is refused and then committed (the client closed its side) or aborted (a
// refused message, or a cancelled call). Resident data has 1 MiB, so a
// header that declares more is refused before anything is allocated.
//
// After every stream the store must show exactly what the stream answered:
// a committed one added its declared rows, with the uploaded values and
// ids, to its collection and changed nothing else (a replay changed
// nothing); any other left every collection and the budget as they were.
// Errors must be the client's (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
// RESOURCE_EXHAUSTED). Each input deletes what it made, after which the
// budget must be back where it started.
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
#include "core/collections/collection_store.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "server/upload_streams.h"
#include "tests/fuzz/fuzz_engine.h"
#include "tests/fuzz/fuzz_streams.pb.h"

namespace {

namespace collections = ::engram::collections;
namespace v1 = ::engram::similarity::v1;

void Require(bool holds, const char* invariant) {
  if (!holds) {
    std::fprintf(stderr, "upload_collection invariant broken: %s\n", invariant);
    std::abort();
  }
}

// What a reader can see of a collection.
using Visible = std::tuple<uint32_t, uint64_t, uint64_t, uint64_t, uint64_t,
                           uint64_t, bool, std::string>;

std::map<std::string, Visible> Snapshot(collections::CollectionStore& store) {
  std::map<std::string, Visible> out;
  for (const collections::CollectionInfo& info : store.List()) {
    out[info.name] =
        Visible(info.dimension, info.rows, info.bytes, info.uid, info.version,
                info.segments, info.has_ids, info.load_state);
  }
  return out;
}

bool ClientError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

// The committed rows [first, first + count) of `c` hold the stream's chunks
// in order, and their ids are the uploaded ones (or the row numbers).
void CheckRows(const collections::Collection& c, uint64_t first,
               const engram::fuzz::UploadCollectionStream& stream,
               bool with_ids) {
  std::vector<float> values;
  std::vector<uint64_t> ids;
  for (const v1::UploadCollectionRequest& message : stream.messages()) {
    if (!message.has_chunk()) continue;
    values.insert(values.end(), message.chunk().vectors().begin(),
                  message.chunk().vectors().end());
    ids.insert(ids.end(), message.chunk().ids().begin(),
               message.chunk().ids().end());
  }
  const uint64_t d = c.dimension();
  Require(values.size() == (c.rows() - first) * d, "values of the rows");
  for (const auto& segment : c.segments()) {
    for (uint64_t i = 0; i < segment->rows(); ++i) {
      const uint64_t row = segment->first_row() + i;
      if (row < first) continue;
      const uint64_t n = row - first;
      // Bit for bit: the rows are copied, not normalised.
      Require(std::memcmp(segment->vectors().row(i), &values[n * d],
                          d * sizeof(float)) == 0,
              "a stored row is the uploaded one");
      Require(segment->IdOf(i) == (with_ids ? ids[n] : row),
              "a stored id is the uploaded one");
    }
  }
}

void RunStream(engram::core::Engine& engine,
               const engram::fuzz::UploadCollectionStream& input) {
  collections::CollectionStore& store = engine.resident().collections();
  const std::map<std::string, Visible> before = Snapshot(store);
  const uint64_t reserved_before = engine.resident().budget().reserved_bytes();

  v1::UploadCollectionResponse response;
  absl::Status status;
  bool committed = false;
  {
    engram::server::CollectionUploadStream stream(&engine);
    for (const v1::UploadCollectionRequest& message : input.messages()) {
      status = stream.Process(message);
      if (!status.ok()) break;
    }
    if (status.ok() && input.end() == engram::fuzz::STREAM_END_CLOSE) {
      status = stream.Commit(&response);
      committed = status.ok();
    }
    if (!status.ok()) Require(ClientError(status), "a client's error");
    // What the reactor does when the call ends any other way.
    if (!committed) stream.Abort();
  }

  const std::map<std::string, Visible> after = Snapshot(store);
  const uint64_t reserved_after = engine.resident().budget().reserved_bytes();
  if (!committed || response.replayed()) {
    Require(after == before, "an uncommitted or replayed stream changes none");
    Require(reserved_after == reserved_before,
            "an uncommitted or replayed stream holds no budget");
  }
  if (!committed) return;

  Require(input.messages_size() > 0 && input.messages(0).has_header(),
          "a committed stream began with a header");
  const v1::UploadHeader& header = input.messages(0).header();
  Require(response.rows_uploaded() == header.total_rows(),
          "a committed stream answers its declared rows");
  Require(response.collection().name() == header.name(),
          "the response names the collection");
  if (response.replayed()) return;

  auto was = before.find(header.name());
  auto now = after.find(header.name());
  Require(now != after.end(), "a committed collection is visible");
  Require(header.create() == (was == before.end()),
          "a create makes a new name, an append extends one");
  const uint64_t rows_before =
      was == before.end() ? 0 : std::get<1>(was->second);
  Require(std::get<1>(now->second) == rows_before + header.total_rows(),
          "a committed stream adds exactly its declared rows");
  Require(response.collection().count() == std::get<1>(now->second),
          "the response has the committed rows");
  Require(reserved_after > reserved_before, "committed rows hold budget");
  for (const auto& [name, visible] : before) {
    if (name != header.name()) {
      Require(after.count(name) == 1 && after.at(name) == visible,
              "a stream changes only its own collection");
    }
  }
  Require(after.size() == before.size() + (was == before.end() ? 1 : 0),
          "a stream makes at most its own collection");
  auto c = store.Get(header.name());
  Require(c.ok(), "a committed collection can be read");
  CheckRows(**c, rows_before, input, header.with_ids());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engram::fuzz::UploadCollectionInput input;
  if (!input.ParseFromArray(data, static_cast<int>(size))) return 0;
  engram::core::Engine& engine = engram::fuzz::FuzzEngine();
  const uint64_t reserved_start = engine.resident().budget().reserved_bytes();
  for (const engram::fuzz::UploadCollectionStream& stream : input.streams()) {
    RunStream(engine, stream);
  }
  // The next input starts from an empty store.
  for (const collections::CollectionInfo& info :
       engine.resident().collections().List()) {
    Require(engine.resident().DeleteCollection(info.name).ok(),
            "a collection can be deleted");
  }
  Require(engine.resident().collections().List().empty(), "all deleted");
  Require(engine.resident().budget().reserved_bytes() == reserved_start,
          "deleting every collection gives the budget back");
  return 0;
}
