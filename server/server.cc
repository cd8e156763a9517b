#include "server/server.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "kernels/cpu/cosine.h"
#include "kernels/gpu_device.h"
#include "kernels/status_macros.h"
#include "prometheus/gauge.h"
#include "server/readiness.h"

namespace engram::server {
namespace {

// How long no call may arrive before the gRPC server is stopped; long enough
// for a message in transit on a busy link to land and be refused.
constexpr absl::Duration kQuietPeriod = absl::Milliseconds(250);

}  // namespace

absl::StatusOr<std::unique_ptr<SimilarityServer>> SimilarityServer::Create(
    const Options& options) {
  if (options.grpc_address.empty()) {
    return absl::InvalidArgumentError("grpc_address must not be empty");
  }
  if (options.metrics_address.empty()) {
    return absl::InvalidArgumentError("metrics_address must not be empty");
  }
  if (options.max_message_bytes < (1 << 10)) {
    return absl::InvalidArgumentError("max_message_bytes must be >= 1024");
  }
  if (options.drain_deadline < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("drain_deadline must be >= 0");
  }
  auto server =
      std::unique_ptr<SimilarityServer>(new SimilarityServer(options));
  server->registry_ = std::make_shared<prometheus::Registry>();
  ENGRAM_ASSIGN_OR_RETURN(
      server->engine_, core::Engine::Create(options.engine, server->registry_));
  server->rpc_metrics_ = std::make_unique<RpcMetrics>(*server->registry_);
  prometheus::BuildGauge()
      .Name("engram_build_info")
      .Help(
          "Always 1; the labels say what this process is: version, "
          "whether the CUDA backend is built, the CPU SIMD target, and the "
          "GPU backend in use (simulated-gpu for the simulation).")
      .Register(*server->registry_)
      .Add({{"version", options.version},
            {"cuda", kernels::BuiltWithCuda() ? "built" : "not_built"},
            {"simd", kernels::CosineSimdTarget()},
            {"gpu", server->engine_->gpu_available()
                        ? server->engine_->gpu_name()
                        : "none"}})
      .Set(1);
  Readiness::Options readiness;
  readiness.gpu_required = options.require_gpu;
  readiness.gpu_available = server->engine_->gpu_available();
  readiness.gpu_unavailable_reason = server->engine_->gpu_unavailable_reason();
  server->readiness_ =
      std::make_unique<Readiness>(readiness, *server->registry_);
  // A sticky device error forces the breaker open for good: from then on the
  // GPU is gone, which readiness must reflect. Runs on the request thread
  // that hit the error; the engine (and its breaker) dies before readiness_.
  Readiness* ready = server->readiness_.get();
  server->engine_->executor().breaker().AddListener(
      [ready](const core::BreakerTransition& t) {
        if (t.to == core::BreakerState::kForcedOpen) ready->GpuLost(t.reason);
      });
  server->service_ = std::make_unique<SimilarityService>(
      server->engine_.get(), server->rpc_metrics_.get(),
      server->readiness_.get(), options.version);
  return server;
}

SimilarityServer::SimilarityServer(const Options& options)
    : options_(options) {}

SimilarityServer::~SimilarityServer() {
  Drain().IgnoreError();
  // Join the workers while the service they report to is still alive: a
  // task may still be between answering its call and leaving EndCall().
  engine_.reset();
}

absl::Status SimilarityServer::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.grpc_address,
                           grpc::InsecureServerCredentials(), &grpc_port_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  builder.RegisterService(service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", options_.grpc_address));
  }
  // Not ready until the metrics endpoint is up and calibration is done. The
  // default health service answers SERVING for "" until told otherwise;
  // this is the first thing done after the port opens.
  readiness_->Attach(grpc_server_->GetHealthCheckService());

  try {
    exposer_ = std::make_unique<prometheus::Exposer>(options_.metrics_address);
  } catch (const std::exception& e) {
    readiness_->Detach();
    grpc_server_->Shutdown();
    grpc_server_->Wait();
    grpc_server_.reset();
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", options_.metrics_address, ": ", e.what()));
  }
  // The engine's collector, not the bare registry: it refreshes the gauges
  // derived from component state before every scrape.
  exposer_->RegisterCollectable(engine_->collectable());
  const std::vector<int> ports = exposer_->GetListeningPorts();
  metrics_port_ = ports.empty() ? 0 : ports.front();

  if (options_.calibrate_on_start) {
    // Readiness waits for the sweep: until the model is seeded, AUTO
    // decisions would rest on no measurement at all.
    readiness_->SetPhase(Readiness::Phase::kCalibrating);
    core::Log(core::LogLevel::kInfo, "calibrating", {});
    const absl::Time start = absl::Now();
    auto table = engine_->executor().Calibrate(core::CalibrationOptions{});
    if (!table.ok()) {
      core::Log(core::LogLevel::kWarning, "calibration_failed",
                {{"error", std::string(table.status().message())}});
    } else {
      core::Log(core::LogLevel::kInfo, "calibrated",
                {{"seconds",
                  absl::StrCat(absl::ToDoubleSeconds(absl::Now() - start))},
                 {"table", core::FormatCrossoverTable(*table)}});
    }
  }
  readiness_->SetPhase(Readiness::Phase::kServing);
  const Readiness::State ready = readiness_->state();
  core::Log(ready.serving ? core::LogLevel::kInfo : core::LogLevel::kError,
            ready.serving ? "serving" : "not_ready",
            {{"grpc_port", absl::StrCat(grpc_port_)},
             {"metrics_port", absl::StrCat(metrics_port_)},
             {"version", options_.version},
             {"gpu", engine_->gpu_available()
                         ? engine_->gpu_name()
                         : "none: " + engine_->gpu_unavailable_reason()},
             {"gpu_required", options_.require_gpu ? "true" : "false"},
             {"cpu_only", ready.cpu_only ? "true" : "false"},
             {"reason", ready.reason}});
  return absl::OkStatus();
}

absl::Status SimilarityServer::Drain() {
  if (drained_ || grpc_server_ == nullptr) return absl::OkStatus();
  drained_ = true;
  const absl::Time deadline = absl::Now() + options_.drain_deadline;
  readiness_->SetPhase(Readiness::Phase::kDraining);
  service_->StartDraining();
  core::Log(core::LogLevel::kInfo, "draining",
            {{"deadline_seconds",
              absl::StrCat(absl::ToDoubleSeconds(options_.drain_deadline))}});
  const bool drained = service_->WaitForDrain(deadline);
  service_->WaitForQuiet(kQuietPeriod, deadline);
  // Whatever is still running past the deadline is cancelled here.
  grpc_server_->Shutdown(
      absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Seconds(1))));
  grpc_server_->Wait();
  readiness_->Detach();
  exposer_.reset();
  core::Log(drained ? core::LogLevel::kInfo : core::LogLevel::kWarning,
            "stopped", {{"drained", drained ? "true" : "false"}});
  return drained ? absl::OkStatus()
                 : absl::DeadlineExceededError(
                       "calls still running at the drain deadline were "
                       "cancelled");
}

}  // namespace engram::server
