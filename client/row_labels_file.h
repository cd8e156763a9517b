// Reading per-row labels (RowLabels of proto/engram/similarity/v1/
// similarity.proto) from JSON lines, the labels input of
// `engram-cli collection upload|append|upsert --labels`.
//
// One line per row, in row order: a RowLabels in protobuf JSON, e.g.
//   {"tags":[{"key":"kind","text":"episode"},{"key":"user","integer":"42"}],
//    "attributes":{"t":1.5}}
// (on one line). A blank line is a row without labels. CRLF line ends are
// accepted; a final line end does not start another row, and an empty file
// holds none. Only the layout
// is checked here; the limits on tags, names and values are the server's to
// judge. All functions are thread-safe.
#ifndef ENGRAM_CLIENT_ROW_LABELS_FILE_H_
#define ENGRAM_CLIENT_ROW_LABELS_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engram/similarity/v1/similarity.pb.h"

namespace engram::client {

// One RowLabels per line of `text`. Returns INVALID_ARGUMENT for the first
// line that is not a RowLabels, as "line N: <reason>" (N counts from 1), the
// reason naming the field where protobuf's parser names one (an unknown
// field, a value of the wrong type, two values for one tag).
absl::StatusOr<std::vector<engram::similarity::v1::RowLabels>>
ParseRowLabelsJsonLines(absl::string_view text);

// ParseRowLabelsJsonLines of the file at `path`; errors are prefixed with the
// path ("labels.jsonl: line 3: ..."). A missing file gives NOT_FOUND.
absl::StatusOr<std::vector<engram::similarity::v1::RowLabels>>
ReadRowLabelsFile(const std::string& path);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_ROW_LABELS_FILE_H_
