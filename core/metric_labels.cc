#include "core/metric_labels.h"

#include "absl/strings/str_cat.h"
#include "core/dispatch/executor_observer.h"

namespace engram::core {

const std::array<absl::string_view, kNumFallbackReasons> kFallbackReasons = {
    kFallbackReasonOom,
    kFallbackReasonDeviceError,
    kFallbackReasonBreakerOpen,
    kFallbackReasonUnavailable,
    kFallbackReasonMemoryPressure,
    kFallbackReasonMemoryBusy,
    kFallbackReasonOther};

absl::string_view FallbackMetricReason(absl::string_view executor_reason) {
  if (executor_reason == dispatch::kFallbackGpuOom) return kFallbackReasonOom;
  if (executor_reason == dispatch::kFallbackGpuError)
    return kFallbackReasonDeviceError;
  if (executor_reason == dispatch::kFallbackGpuMemoryBusy)
    return kFallbackReasonMemoryBusy;
  return kFallbackReasonOther;
}

int BreakerStateValue(dispatch::BreakerState state) {
  switch (state) {
    case dispatch::BreakerState::kClosed:
      return 0;
    case dispatch::BreakerState::kHalfOpen:
      return 1;
    case dispatch::BreakerState::kOpen:
      return 2;
    case dispatch::BreakerState::kForcedOpen:
      return 3;
  }
  return 0;
}

std::string SizeBucketLabel(int bucket) { return absl::StrCat("2^", bucket); }

}  // namespace engram::core
