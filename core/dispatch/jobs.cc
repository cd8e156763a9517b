#include "core/dispatch/jobs.h"

namespace engram::dispatch {

const char* OperationName(Operation op) {
  switch (op) {
    case Operation::kCosine:
      return "cosine";
    case Operation::kSpread:
      return "spread";
  }
  return "unknown";
}

const char* BackendName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kCpu:
      return "cpu";
    case BackendKind::kGpu:
      return "gpu";
    case BackendKind::kMixed:
      return "mixed";
    case BackendKind::kUnspecified:
      break;
  }
  return "unspecified";
}

}  // namespace engram::dispatch
