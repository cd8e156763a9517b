#include "core/collections/declarations.h"

#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/key_value_text.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/names.h"
#include "core/collections/npy_loader.h"
#include "core/collections/snapshot.h"

namespace engram::collections {
namespace {

absl::StatusOr<FileFormat> ParseFormat(absl::string_view value) {
  if (value == "auto") return FileFormat::kAuto;
  if (value == "npy") return FileFormat::kNpy;
  if (value == "snapshot") return FileFormat::kSnapshot;
  return absl::InvalidArgumentError(absl::StrCat(
      "format must be auto, npy or snapshot, got \"", value, "\""));
}

// The format a file's first bytes announce.
absl::StatusOr<FileFormat> Sniff(const std::string& path, ResidentKind kind) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader file, FileReader::Open(path));
  std::string magic(static_cast<size_t>(std::min<uint64_t>(file.size(), 8)),
                    '\0');
  ENGRAM_RETURN_IF_ERROR(file.Read(magic.data(), magic.size()));
  if (absl::StartsWith(magic, "\x93NUMPY")) return FileFormat::kNpy;
  const absl::string_view snapshot_magic = kind == ResidentKind::kCollection
                                               ? kCollectionSnapshotMagic
                                               : kGraphSnapshotMagic;
  if (magic == snapshot_magic) return FileFormat::kSnapshot;
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": neither a .npy file nor an engram ",
                   ResidentKindName(kind), " snapshot (unknown magic)"));
}

void LoadOne(const Declaration& d, CollectionStore* collections,
             GraphStore* graphs, LoadOutcome* out) {
  absl::StatusOr<FileFormat> format =
      d.format == FileFormat::kAuto ? Sniff(d.path, d.kind)
                                    : absl::StatusOr<FileFormat>(d.format);
  if (!format.ok()) {
    out->status = format.status();
    return;
  }
  out->format = *format;
  if (d.kind == ResidentKind::kGraph) {
    if (graphs == nullptr) {
      out->status = absl::FailedPreconditionError(
          absl::StrCat("graph \"", d.name,
                       "\" is declared but no graph store "
                       "was given"));
      return;
    }
    if (*format != FileFormat::kSnapshot) {
      out->status = absl::InvalidArgumentError(absl::StrCat(
          d.path, ": graphs load only from graph snapshots, not .npy"));
      return;
    }
    absl::StatusOr<std::shared_ptr<const Graph>> graph =
        LoadGraphSnapshot(d.path, d.name, graphs);
    out->status = graph.status();
    if (graph.ok()) {
      out->verified_by = "crc32c";
      out->rows = (*graph)->num_nodes();
      out->bytes = (*graph)->bytes();
    }
    return;
  }
  if (*format == FileFormat::kSnapshot) {
    absl::StatusOr<std::shared_ptr<const Collection>> c =
        LoadCollectionSnapshot(d.path, d.name, collections);
    out->status = c.status();
    if (c.ok()) {
      out->verified_by = "crc32c";
      out->rows = (*c)->rows();
      out->bytes = (*c)->bytes();
    }
    return;
  }
  absl::StatusOr<NpyLoadResult> loaded =
      LoadNpyCollection(d.path, d.name, collections);
  out->status = loaded.status();
  if (loaded.ok()) {
    out->verified_by = loaded->sha256_verified ? "sha256" : "none";
    out->rows = loaded->collection->rows();
    out->bytes = loaded->collection->bytes();
  }
}

}  // namespace

const char* ResidentKindName(ResidentKind kind) {
  return kind == ResidentKind::kCollection ? "collection" : "graph";
}

const char* FileFormatName(FileFormat format) {
  switch (format) {
    case FileFormat::kAuto:
      return "auto";
    case FileFormat::kNpy:
      return "npy";
    case FileFormat::kSnapshot:
      return "snapshot";
  }
  return "auto";
}

absl::StatusOr<std::vector<Declaration>> ParseDeclarations(
    absl::string_view text) {
  constexpr absl::string_view kWhat = "declarations";
  ENGRAM_ASSIGN_OR_RETURN(std::vector<base::KeyValueLine> lines,
                          base::LexKeyValueText(text, kWhat));
  std::vector<Declaration> out;
  std::set<std::pair<ResidentKind, std::string>> names;
  std::set<std::string> keys;  // of the current section
  for (const base::KeyValueLine& line : lines) {
    auto error = [&](absl::string_view what) {
      return base::KeyValueLineError(kWhat, line.number, what);
    };
    if (line.is_section) {
      if (!out.empty() && out.back().path.empty()) {
        return error(absl::StrCat("the section of line ", out.back().line,
                                  " has no path"));
      }
      Declaration d;
      d.line = line.number;
      if (line.section == "collection") {
        d.kind = ResidentKind::kCollection;
      } else if (line.section == "graph") {
        d.kind = ResidentKind::kGraph;
      } else {
        return error("sections are written [collection NAME] or [graph NAME]");
      }
      d.name = line.args;
      absl::Status name_ok = ValidateName("NAME", d.name);
      if (!name_ok.ok()) return error(name_ok.message());
      if (!names.insert({d.kind, d.name}).second) {
        return error(absl::StrCat(ResidentKindName(d.kind), " \"", d.name,
                                  "\" is declared twice"));
      }
      out.push_back(std::move(d));
      keys.clear();
      continue;
    }
    if (out.empty()) {
      return error(absl::StrCat(
          line.key, " is outside a [collection NAME] or [graph NAME] section"));
    }
    if (line.key != "path" && line.key != "format") {
      return error(absl::StrCat("unknown key \"", line.key, "\""));
    }
    if (!keys.insert(line.key).second) {
      return error(absl::StrCat(line.key, " is set twice in one section"));
    }
    if (line.key == "path") {
      out.back().path = line.value;
    } else {
      absl::StatusOr<FileFormat> format = ParseFormat(line.value);
      if (!format.ok()) return error(format.status().message());
      out.back().format = *format;
    }
  }
  if (!out.empty() && out.back().path.empty()) {
    return base::KeyValueLineError(kWhat, out.back().line,
                                   "the section has no path");
  }
  return out;
}

absl::StatusOr<std::vector<Declaration>> LoadDeclarationsFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open declarations file ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<std::vector<Declaration>> parsed =
      ParseDeclarations(buffer.str());
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(path, ": ", parsed.status().message()));
  }
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "" : path.substr(0, slash + 1);
  for (Declaration& d : *parsed) {
    if (!absl::StartsWith(d.path, "/")) d.path = absl::StrCat(dir, d.path);
  }
  return parsed;
}

std::vector<LoadOutcome> LoadDeclared(
    const std::vector<Declaration>& declarations, CollectionStore* collections,
    GraphStore* graphs) {
  std::vector<LoadOutcome> outcomes;
  outcomes.reserve(declarations.size());
  for (const Declaration& d : declarations) {
    LoadOutcome outcome;
    outcome.declaration = d;
    outcome.format = d.format;
    const absl::Time start = absl::Now();
    LoadOne(d, collections, graphs, &outcome);
    outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    outcomes.push_back(std::move(outcome));
  }
  return outcomes;
}

}  // namespace engram::collections
