// UpdateGraph's step below the server: the request's checks the graph
// store does not make (the name is given, the idempotency key's form), then
// GraphStore::Update, which checks and applies the edit as one version
// (docs/api.md, "Changing a graph").
//
// Thread-safety: reentrant; the store is thread-safe.
#ifndef ENGRAM_CORE_RESIDENT_GRAPH_UPDATE_H_
#define ENGRAM_CORE_RESIDENT_GRAPH_UPDATE_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/collections/graph_changes.h"
#include "core/collections/graph_store.h"

namespace engram::core {

// INVALID_ARGUMENT naming `name` or `idempotency_key`; otherwise the
// store's answer (GraphStore::Update).
absl::StatusOr<collections::GraphUpdateResult> UpdateResidentGraph(
    collections::GraphStore& graphs, const std::string& name,
    const collections::GraphEdit& edit,
    const collections::GraphUpdateOptions& options);

}  // namespace engram::core

#endif  // ENGRAM_CORE_RESIDENT_GRAPH_UPDATE_H_
