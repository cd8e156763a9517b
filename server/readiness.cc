#include "server/readiness.h"

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "server/server.h"

namespace engram::server {

const char* Readiness::PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kStarting:
      return "starting";
    case Phase::kLoading:
      return "loading";
    case Phase::kCalibrating:
      return "calibrating";
    case Phase::kServing:
      return "serving";
    case Phase::kDraining:
      return "draining";
  }
  return "starting";
}

Readiness::Readiness(const Options& options, prometheus::Registry& registry)
    : gpu_required_(options.gpu_required),
      gpu_usable_(options.gpu_available),
      gpu_unusable_reason_(
          options.gpu_available
              ? std::string()
              : absl::StrCat("no GPU: ", options.gpu_unavailable_reason)) {
  ready_ = &prometheus::BuildGauge()
                .Name("engram_ready")
                .Help(
                    "1 while the health service answers SERVING, else 0 "
                    "(starting, calibrating, draining, or a required GPU "
                    "unusable).")
                .Register(registry)
                .Add({});
  absl::MutexLock lock(&mu_);
  last_ = ComputeLocked();
}

void Readiness::Attach(grpc::HealthCheckServiceInterface* health) {
  absl::MutexLock lock(&mu_);
  health_ = health;
  ApplyLocked();
}

void Readiness::Detach() {
  absl::MutexLock lock(&mu_);
  health_ = nullptr;
}

void Readiness::SetPhase(Phase phase) {
  absl::MutexLock lock(&mu_);
  // Draining is final: a late SetPhase(kServing) must not undo it.
  if (phase_ == Phase::kDraining) return;
  phase_ = phase;
  ApplyLocked();
}

void Readiness::GpuLost(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (!gpu_usable_) return;
  gpu_usable_ = false;
  gpu_unusable_reason_ = absl::StrCat("GPU lost: ", reason);
  ApplyLocked();
}

Readiness::State Readiness::state() const {
  absl::MutexLock lock(&mu_);
  return ComputeLocked();
}

Readiness::State Readiness::ComputeLocked() const {
  State s;
  s.phase = phase_;
  s.gpu_required = gpu_required_;
  s.cpu_only = !gpu_usable_;
  switch (phase_) {
    case Phase::kStarting:
      s.reason = "starting";
      return s;
    case Phase::kLoading:
      s.reason = "loading resident collections and graphs";
      return s;
    case Phase::kCalibrating:
      s.reason = "calibrating the dispatch performance model";
      return s;
    case Phase::kDraining:
      s.reason = "draining";
      return s;
    case Phase::kServing:
      break;
  }
  if (gpu_usable_) {
    s.serving = true;
  } else if (gpu_required_) {
    s.reason = absl::StrCat("the GPU is required (--require_gpu) but ",
                            gpu_unusable_reason_);
  } else {
    s.serving = true;
    s.reason = absl::StrCat("serving on the CPU only; ", gpu_unusable_reason_);
  }
  return s;
}

void Readiness::ApplyLocked() {
  const State s = ComputeLocked();
  if (health_ != nullptr) {
    health_->SetServingStatus("", s.serving);
    health_->SetServingStatus(kServiceName, s.serving);
  }
  ready_->Set(s.serving ? 1 : 0);
  // Start-up and drain are logged by the server itself; what deserves a
  // line here is a change of answer while serving: the GPU lost.
  if (s.phase == Phase::kServing && last_.phase == Phase::kServing &&
      (s.serving != last_.serving || s.cpu_only != last_.cpu_only)) {
    core::Log(s.serving ? core::LogLevel::kWarning : core::LogLevel::kError,
              "readiness",
              {{"serving", s.serving ? "true" : "false"},
               {"cpu_only", s.cpu_only ? "true" : "false"},
               {"reason", s.reason}});
  }
  last_ = s;
}

}  // namespace engram::server
