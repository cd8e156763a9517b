#include "client/cli/resident_commands.h"

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "client/cli/output.h"
#include "client/cli/request_builders.h"
#include "client/npy.h"
#include "client/requests.h"
#include "client/row_labels_file.h"

namespace engram::client::cli {
namespace {

namespace v1 = ::engram::similarity::v1;

// The collection flags that only some actions use: given to another action
// they are refused rather than ignored, since a search without the filter
// asked for, or a write without its version check, would still succeed.
absl::Status CheckActionFlags(const CollectionOptions& c) {
  struct Rule {
    absl::string_view flag;
    bool given;
    std::vector<absl::string_view> actions;
  };
  const Rule rules[] = {
      {"labels", !c.labels_file.empty(), {"upload", "append", "upsert"}},
      {"id_list", !c.id_list.empty(), {"delete-rows"}},
      {"expected_version", c.expected_version != 0, {"upsert", "delete-rows"}},
      {"filter", !c.filter.empty(), {"search"}},
  };
  for (const Rule& rule : rules) {
    if (rule.given && std::find(rule.actions.begin(), rule.actions.end(),
                                c.action) == rule.actions.end()) {
      return UsageError(absl::StrCat("--", rule.flag, " applies to collection ",
                                     absl::StrJoin(rule.actions, ", "),
                                     ", not ", c.action));
    }
  }
  return absl::OkStatus();
}

// Reads --file, --ids and --labels of upload, append and upsert into
// `input`, checking that the ids and labels are one per row.
absl::Status ReadRows(const CollectionOptions& c, ResidentInput* input) {
  if (c.file.empty()) {
    return UsageError(
        absl::StrCat("collection ", c.action, " needs --file (a .npy file)"));
  }
  ENGRAM_ASSIGN_OR_RETURN(input->rows, ReadNpyFile(c.file));
  if (!c.ids_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(input->ids, ReadNpyIdsFile(c.ids_file));
    if (input->ids.size() != input->rows.rows) {
      return UsageError(absl::StrCat("--ids holds ", input->ids.size(),
                                     " ids for the ", input->rows.rows,
                                     " rows of --file; give one id per row"));
    }
  }
  if (!c.labels_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(input->labels, ReadRowLabelsFile(c.labels_file));
    if (input->labels.size() != input->rows.rows) {
      return UsageError(absl::StrCat(
          "--labels ", c.labels_file, " holds ", input->labels.size(),
          " lines for the ", input->rows.rows,
          " rows of --file; give one line per row (a blank line: no "
          "labels)"));
    }
  }
  return absl::OkStatus();
}

ProgressLine::Options ProgressOptions(ProgressStyle style,
                                      absl::string_view unit) {
  ProgressLine::Options options;
  options.style = style;
  options.unit = std::string(unit);
  return options;
}

}  // namespace

absl::StatusOr<ResidentInput> BuildResidentInput(const Invocation& invocation) {
  ResidentInput input;
  if (*invocation.subcommand == Subcommand::kCollection) {
    const CollectionOptions& c = invocation.collection;
    if (c.action != "list" && c.name.empty()) {
      return UsageError(absl::StrCat("collection ", c.action, " needs --name"));
    }
    ENGRAM_RETURN_IF_ERROR(CheckActionFlags(c));
    ENGRAM_ASSIGN_OR_RETURN(const auto metadata, ParseMetadata(c.metadata));
    if (c.action == "create") {
      if (c.dimension == 0) {
        return UsageError("collection create needs --dimension (>= 1)");
      }
      input.create.set_name(c.name);
      input.create.set_dimension(c.dimension);
      input.create.mutable_metadata()->insert(metadata.begin(), metadata.end());
    } else if (c.action == "upload" || c.action == "append") {
      if (c.action == "append" && !metadata.empty()) {
        return UsageError("--metadata is set when the collection is created");
      }
      ENGRAM_RETURN_IF_ERROR(ReadRows(c, &input));
      input.upload.name = c.name;
      input.upload.create = c.action == "upload";
      input.upload.metadata = metadata;
      input.upload.chunk_rows = c.chunk_rows;
      input.upload.idempotency_key = c.idempotency_key;
    } else if (c.action == "search") {
      ENGRAM_ASSIGN_OR_RETURN(input.search,
                              BuildSearchRequest(c.name, invocation.cosine));
      input.search.set_min_version(c.min_version);
      if (!c.filter.empty()) {
        ENGRAM_ASSIGN_OR_RETURN(*input.search.mutable_filter(),
                                ParseRowFilter(c.filter));
      }
    } else if (c.action == "upsert") {
      if (c.ids_file.empty()) {
        return UsageError(
            "collection upsert needs --ids (a .npy file of one id per row): "
            "the ids say which rows are replaced and which added");
      }
      ENGRAM_RETURN_IF_ERROR(ReadRows(c, &input));
      absl::StatusOr<v1::UpsertRowsRequest> upsert =
          MakeUpsertRowsRequest(c.name, input.rows, input.ids, input.labels);
      if (!upsert.ok()) {
        return UsageError(
            absl::StrCat("--file ", c.file, ": ", upsert.status().message()));
      }
      input.upsert = *std::move(upsert);
      input.upsert.set_idempotency_key(c.idempotency_key);
      input.upsert.set_expected_version(c.expected_version);
    } else if (c.action == "delete-rows") {
      std::vector<uint64_t> ids;
      if (!c.id_list.empty()) {
        absl::StatusOr<std::vector<uint64_t>> listed = ParseIdList(c.id_list);
        if (!listed.ok()) {
          return UsageError(
              absl::StrCat("--id_list: ", listed.status().message()));
        }
        ids = *std::move(listed);
      }
      if (!c.ids_file.empty()) {
        ENGRAM_ASSIGN_OR_RETURN(const std::vector<uint64_t> read,
                                ReadNpyIdsFile(c.ids_file));
        ids.insert(ids.end(), read.begin(), read.end());
      }
      if (ids.empty()) {
        return UsageError(
            "collection delete-rows needs --id_list=ID,... or --ids (a .npy "
            "file of ids)");
      }
      input.delete_rows = MakeDeleteRowsRequest(c.name, ids);
      input.delete_rows.set_idempotency_key(c.idempotency_key);
      input.delete_rows.set_expected_version(c.expected_version);
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
                std::ostream& out, std::ostream& err, ProgressStyle progress) {
  if (*invocation.subcommand == Subcommand::kCollection) {
    const CollectionOptions& c = invocation.collection;
    if (c.action == "create") {
      return PrintResponse(client.CreateCollection(input.create, call), out,
                           err);
    }
    if (c.action == "upsert") {
      return PrintResponse(client.UpsertRows(input.upsert, call), out, err);
    }
    if (c.action == "delete-rows") {
      return PrintResponse(client.DeleteRows(input.delete_rows, call), out,
                           err);
    }
    if (c.action == "upload" || c.action == "append") {
      ProgressLine line(err, ProgressOptions(progress, "rows"));
      UploadOptions upload = input.upload;
      upload.progress = line.Callback();
      auto response = client.UploadCollection(upload, input.rows, input.ids,
                                              input.labels, call);
      line.Finish(response.ok());
      return PrintResponse(response, out, err);
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
    ProgressLine line(err, ProgressOptions(progress, "edges"));
    PutGraphOptions put;
    put.name = g.name;
    put.chunk_entries = g.chunk_entries;
    put.progress = line.Callback();
    auto response = client.PutGraph(put, input.graph, call);
    line.Finish(response.ok());
    return PrintResponse(response, out, err);
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
