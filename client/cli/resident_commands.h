// engram-cli's resident-data commands, `collection ACTION` and
// `graph ACTION`: reading and checking their input before any connection is
// made, then making the one call, or the one stream, the action stands for.
#ifndef ENGRAM_CLIENT_CLI_RESIDENT_COMMANDS_H_
#define ENGRAM_CLIENT_CLI_RESIDENT_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/invocation.h"
#include "client/cli/progress.h"
#include "client/similarity_client.h"
#include "client/types.h"
#include "engram/similarity/v1/similarity.pb.h"

namespace engram::client::cli {

// What `collection ACTION` and `graph ACTION` send, read before connecting
// so that bad input exits with kExitUsage.
struct ResidentInput {
  engram::similarity::v1::CreateCollectionRequest create;
  UploadOptions upload;
  FloatMatrix rows;
  std::vector<uint64_t> ids;                              // empty: none sent
  std::vector<engram::similarity::v1::RowLabels> labels;  // empty: none sent
  engram::similarity::v1::SearchCollectionRequest search;
  engram::similarity::v1::UpsertRowsRequest upsert;
  engram::similarity::v1::DeleteRowsRequest delete_rows;
  engram::similarity::v1::Graph graph;
  engram::similarity::v1::UpdateGraphRequest update;
};

// The input of a `collection` or `graph` invocation: reads the .npy, labels
// or edge list files the action needs. INVALID_ARGUMENT for missing or
// inconsistent flags (among them a flag the action does not use, where
// ignoring it would change what the user meant, and a file whose row count
// differs from --file's, naming it), file errors as the readers report them.
absl::StatusOr<ResidentInput> BuildResidentInput(const Invocation& invocation);

// Runs the action of a `collection` or `graph` invocation through `client`,
// with `input` from BuildResidentInput, and prints the response to `out` or
// the error to `err`. The streamed writes (collection upload and append,
// graph put) show their progress on `err` in `progress` style. Returns
// kExitOk or kExitRpcError.
int RunResident(const Invocation& invocation, const ResidentInput& input,
                const SimilarityClient& client, const CallOptions& call,
                std::ostream& out, std::ostream& err,
                ProgressStyle progress = ProgressStyle::kOff);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_RESIDENT_COMMANDS_H_
