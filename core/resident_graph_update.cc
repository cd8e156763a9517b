#include "core/resident_graph_update.h"

#include "base/status_macros.h"
#include "core/validation.h"

namespace engram::core {

absl::StatusOr<collections::GraphUpdateResult> UpdateResidentGraph(
    collections::GraphStore& graphs, const std::string& name,
    const collections::GraphEdit& edit,
    const collections::GraphUpdateOptions& options) {
  ENGRAM_RETURN_IF_ERROR(ValidateRequiredName("name", name));
  ENGRAM_RETURN_IF_ERROR(
      ValidateIdempotencyKey("idempotency_key", options.idempotency_key));
  return graphs.Update(name, edit, options);
}

}  // namespace engram::core
