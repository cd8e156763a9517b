// Status propagation macros shared by every layer (Abseil 20220623 has none).
//
// ENGRAM_RETURN_IF_ERROR(expr): returns the absl::Status of `expr` when it is
// not OK. ENGRAM_ASSIGN_OR_RETURN(lhs, expr): evaluates an absl::StatusOr,
// returns its status on error, otherwise assigns (or declares) `lhs`.
#ifndef ENGRAM_BASE_STATUS_MACROS_H_
#define ENGRAM_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ENGRAM_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status engram_status_ = (expr);          \
    if (!engram_status_.ok()) return engram_status_; \
  } while (false)

#define ENGRAM_STATUS_CONCAT_INNER_(a, b) a##b
#define ENGRAM_STATUS_CONCAT_(a, b) ENGRAM_STATUS_CONCAT_INNER_(a, b)

#define ENGRAM_ASSIGN_OR_RETURN(lhs, expr) \
  ENGRAM_ASSIGN_OR_RETURN_IMPL_(           \
      ENGRAM_STATUS_CONCAT_(engram_statusor_, __LINE__), lhs, expr)

#define ENGRAM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // ENGRAM_BASE_STATUS_MACROS_H_
