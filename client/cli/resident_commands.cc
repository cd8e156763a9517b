#include "client/cli/resident_commands.h"

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "client/cli/output.h"
#include "client/cli/request_builders.h"
#include "client/npy.h"

namespace engram::client::cli {

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
      input.upload.idempotency_key = c.idempotency_key;
    } else if (c.action == "search") {
      ENGRAM_ASSIGN_OR_RETURN(input.search,
                              BuildSearchRequest(c.name, invocation.cosine));
      input.search.set_min_version(c.min_version);
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
    ENGRAM_ASSIGN_OR_RETURN(input.graph,
                            ReadGraphFile(g.graph_path, g.num_nodes));
  } else if (g.action == "update") {
    ENGRAM_ASSIGN_OR_RETURN(input.update, BuildUpdateGraphRequest(g));
  }
  return input;
}

int RunResident(const Invocation& invocation, const ResidentInput& input,
                const SimilarityClient& client, const CallOptions& call,
                std::ostream& out, std::ostream& err) {
  if (*invocation.subcommand == Subcommand::kCollection) {
    const CollectionOptions& c = invocation.collection;
    if (c.action == "create") {
      return PrintResponse(client.CreateCollection(input.create, call), out,
                           err);
    }
    if (c.action == "upload" || c.action == "append") {
      return PrintResponse(
          client.UploadCollection(input.upload, input.rows, input.ids, call),
          out, err);
    }
    if (c.action == "delete") {
      return PrintStatus(client.DeleteCollection(c.name, call), out, err);
    }
    if (c.action == "list")
      return PrintResponse(client.ListCollections(call), out, err);
    if (c.action == "describe") {
      return PrintResponse(
          client.DescribeCollection(c.name, c.min_version, call), out, err);
    }
    return PrintResponse(client.SearchCollection(input.search, call), out, err);
  }
  const GraphOptions& g = invocation.graph;
  if (g.action == "put") {
    return PrintResponse(
        client.PutGraph(g.name, input.graph, g.chunk_entries, call), out, err);
  }
  if (g.action == "delete") {
    return PrintStatus(client.DeleteGraph(g.name, call), out, err);
  }
  if (g.action == "list")
    return PrintResponse(client.ListGraphs(call), out, err);
  if (g.action == "update") {
    return PrintResponse(client.UpdateGraph(input.update, call), out, err);
  }
  return PrintResponse(client.DescribeGraph(g.name, g.min_version, call), out,
                       err);
}

}  // namespace engram::client::cli
