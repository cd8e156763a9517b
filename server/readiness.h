// Readiness: what the standard health service answers, kept truthful.
//
// NOT_SERVING while the server starts (while it loads the resident data
// declared with --resident_config, and, with --calibrate, while the
// calibration sweep seeds the performance model), SERVING once it is up,
// NOT_SERVING again from the start of a drain. The GPU counts too: once the
// GPU is unusable (none found at start-up, or the circuit breaker forced
// open by a sticky device error), a server configured with --require_gpu
// turns NOT_SERVING so that traffic moves to pods with a working device; one
// without it keeps SERVING on the CPU and says so (state(), the log, and
// GetStats' readiness). Both answers are the server's and the service
// name's.
//
// Thread-safety: all methods may be called concurrently; GpuLost() is
// called from a breaker listener on a request thread. One mutex orders the
// updates, so the health service never sees them out of order.
#ifndef ENGRAM_SERVER_READINESS_H_
#define ENGRAM_SERVER_READINESS_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace engram::server {

class Readiness {
 public:
  enum class Phase { kStarting, kLoading, kCalibrating, kServing, kDraining };
  static const char* PhaseName(Phase phase);  // "starting", ...

  struct Options {
    bool gpu_required = false;   // --require_gpu
    bool gpu_available = false;  // the engine has a GPU backend
    // Why it has none (Engine::gpu_unavailable_reason()).
    std::string gpu_unavailable_reason;
  };

  struct State {
    bool serving = false;
    Phase phase = Phase::kStarting;
    // Why not serving, or why serving on the CPU only; empty when serving
    // with everything configured.
    std::string reason;
    bool gpu_required = false;
    bool cpu_only = false;  // requests run on the CPU only
  };

  // Registers engram_ready in `registry`, which must outlive this.
  Readiness(const Options& options, prometheus::Registry& registry);

  // From now on every change is applied to `health` (borrowed; must stay
  // valid until Detach()), starting with the current state.
  void Attach(grpc::HealthCheckServiceInterface* health)
      ABSL_LOCKS_EXCLUDED(mu_);
  // No more health updates, e.g. once the gRPC server is gone.
  void Detach() ABSL_LOCKS_EXCLUDED(mu_);

  void SetPhase(Phase phase) ABSL_LOCKS_EXCLUDED(mu_);
  // The GPU is unusable for the rest of the process (sticky device error).
  void GpuLost(const std::string& reason) ABSL_LOCKS_EXCLUDED(mu_);

  State state() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  State ComputeLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Pushes the state to the health service and the gauge; logs a change
  // that happens after start-up.
  void ApplyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const bool gpu_required_;
  prometheus::Gauge* ready_ = nullptr;

  mutable absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kStarting;
  bool gpu_usable_ ABSL_GUARDED_BY(mu_);
  std::string gpu_unusable_reason_ ABSL_GUARDED_BY(mu_);
  grpc::HealthCheckServiceInterface* health_ ABSL_GUARDED_BY(mu_) = nullptr;
  State last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_READINESS_H_
