#include "server/server.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "prometheus/gauge.h"
#include "server/catalog/etcd_catalog.h"
#include "server/readiness.h"

namespace engram::server {
namespace {

// DATA_DIR/calibration.<device>, the device's name with anything but
// letters, digits, '-' and '.' as '_' ("cpu" without a GPU).
std::string CalibrationPath(const std::string& data_dir,
                            const std::string& device) {
  std::string name = device.empty() ? "cpu" : device;
  for (char& c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '.') {
      c = '_';
    }
  }
  return absl::StrCat(data_dir, "/calibration.", name);
}

// A drain refuses new calls itself (UNAVAILABLE, with a retry hint) before
// gRPC's shutdown sends GOAWAY: gRPC cancels (CANCELLED, which clients do
// not retry) every call whose headers it reads after its shutdown began,
// before the client has seen the GOAWAY. Those are calls clients still
// pick this replica for, and the next call of a client whose call was just
// answered. So the GOAWAY waits until calls have stopped arriving and
// ending for kQuiet (clients that watch health, the service config's
// healthCheckConfig, stop picking a NOT_SERVING replica within a round
// trip), at least kMinGoawayDelay and at most kMaxGoawayDelay (a tenth of
// the drain deadline when that is shorter): a client that keeps calling
// this replica alone gets GOAWAY, and reconnects elsewhere, by then.
constexpr absl::Duration kQuiet = absl::Milliseconds(100);
constexpr absl::Duration kMinGoawayDelay = absl::Milliseconds(100);
constexpr absl::Duration kMaxGoawayDelay = absl::Seconds(1);

// How long before the drain deadline the calls still in flight are stopped
// (a quarter of the deadline when that is shorter): time for a computing
// call to reach its next chunk or hop, and for a read that waits for
// min_version (--min_version_wait, 2 s by default) to end, so that every
// call is answered by the deadline rather than cancelled at it.
constexpr absl::Duration kDrainStopMargin = absl::Seconds(2);

// How long start-up waits for the GPU copies of declared collections.
constexpr absl::Duration kResidencyUploadWait = absl::Minutes(2);

// The whole of a PEM file; NOT_FOUND naming the file when it cannot be read,
// INVALID_ARGUMENT when it holds no PEM block.
absl::StatusOr<std::string> ReadPem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read TLS file ", path));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  std::string pem = contents.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS file ", path, " holds no PEM block"));
  }
  return pem;
}

int ClampedMilliseconds(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d),
                                            std::numeric_limits<int>::max()));
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> SimilarityServer::Credentials() const {
  if (tls_cert_.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      tls_client_ca_.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = tls_client_ca_;
  ssl.pem_key_cert_pairs.push_back({tls_key_, tls_cert_});
  return grpc::SslServerCredentials(ssl);
}

const char* SimilarityServer::TransportSecurity() const {
  if (tls_cert_.empty()) return "plaintext";
  return tls_client_ca_.empty() ? "tls" : "mutual_tls";
}

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
  if (options.max_connection_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_connection_age must be >= 0");
  }
  const Options::Tls& tls = options.tls;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate file and a key file");
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client CA (mutual TLS) needs the server's certificate and key");
  }
  auto server =
      std::unique_ptr<SimilarityServer>(new SimilarityServer(options));
  if (!tls.cert_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(server->tls_cert_, ReadPem(tls.cert_file));
    ENGRAM_ASSIGN_OR_RETURN(server->tls_key_, ReadPem(tls.key_file));
  }
  if (!tls.client_ca_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(server->tls_client_ca_,
                            ReadPem(tls.client_ca_file));
  }
  core::Engine::Options engine = options.engine;
  if (!options.catalog_url.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(catalog::CatalogUrl url,
                            catalog::ParseCatalogUrl(options.catalog_url));
    catalog::EtcdCatalog::Options etcd;
    etcd.endpoints = url.endpoints;
    etcd.prefix = url.prefix;
    ENGRAM_ASSIGN_OR_RETURN(engine.resident.catalog,
                            catalog::EtcdCatalog::Create(etcd));
  }
  server->registry_ = std::make_shared<prometheus::Registry>();
  ENGRAM_ASSIGN_OR_RETURN(server->engine_,
                          core::Engine::Create(engine, server->registry_));
  server->rpc_metrics_ = std::make_unique<RpcMetrics>(*server->registry_);
  const core::Engine::BuildInfo build = core::Engine::Build();
  prometheus::BuildGauge()
      .Name("engram_build_info")
      .Help(
          "Always 1; the labels say what this process is: version, "
          "whether the CUDA backend is built, the CPU SIMD target, and the "
          "GPU backend in use (simulated-gpu for the simulation).")
      .Register(*server->registry_)
      .Add({{"version", options.version},
            {"cuda", build.cuda_built ? "built" : "not_built"},
            {"simd", build.simd_target},
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
      [ready](const dispatch::BreakerTransition& t) {
        if (t.to == dispatch::BreakerState::kForcedOpen)
          ready->GpuLost(t.reason);
      });
  SimilarityService::Options service;
  service.admission = options.admission;
  service.request_arena = options.request_arena;
  service.version = options.version;
  ENGRAM_ASSIGN_OR_RETURN(server->service_, SimilarityService::Create(
                                                service, server->engine_.get(),
                                                server->rpc_metrics_.get(),
                                                server->readiness_.get()));
  return server;
}

SimilarityServer::SimilarityServer(const Options& options)
    : options_(options) {}

SimilarityServer::~SimilarityServer() {
  Drain().IgnoreError();
  // Join the workers while the service they report to is still alive: a
  // task may still be between answering its call and releasing its admission.
  engine_.reset();
}

absl::Status SimilarityServer::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.grpc_address, Credentials(), &grpc_port_);
  if (options_.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        ClampedMilliseconds(options_.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ClampedMilliseconds(options_.drain_deadline));
  }
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

  core::ResidentData& resident = engine_->resident();
  if (resident.data_dir() != nullptr ||
      !options_.resident_config_path.empty()) {
    // Replicas serve their stored and declared data from the moment they
    // say SERVING; a bad file or entry is logged and counted per entry
    // (ResidentData), held as lost when it is stored data, and never stops
    // the server.
    readiness_->SetPhase(Readiness::Phase::kLoading);
    const absl::Time start = absl::Now();
    size_t loaded = 0;
    size_t failed = 0;
    for (const auto& outcome : resident.LoadDataDir()) {
      ++(outcome.status.ok() ? loaded : failed);
    }
    absl::Status config = absl::OkStatus();
    if (!options_.resident_config_path.empty()) {
      auto outcomes =
          resident.LoadDeclarationsFile(options_.resident_config_path);
      config = outcomes.status();
      if (outcomes.ok()) {
        for (const auto& outcome : *outcomes) {
          ++(outcome.status.ok() ? loaded : failed);
        }
      }
    }
    // The GPU copies of what was loaded are uploaded ahead of the first
    // query; SERVING waits for them (bounded: a slow device only delays the
    // copies, never correctness, since the host copy serves meanwhile).
    const bool uploaded = engine_->WaitForResidency(kResidencyUploadWait);
    core::Log(config.ok() && failed == 0 ? core::LogLevel::kInfo
                                         : core::LogLevel::kWarning,
              "resident_loading_done",
              {{"path", options_.resident_config_path},
               {"data_dir", resident.data_dir() == nullptr
                                ? std::string()
                                : resident.data_dir()->path()},
               {"loaded", absl::StrCat(loaded)},
               {"failed", absl::StrCat(failed)},
               {"config_ok", config.ok() ? "true" : "false"},
               {"gpu_copies_done", uploaded ? "true" : "false"},
               {"seconds",
                absl::StrCat(absl::ToDoubleSeconds(absl::Now() - start))}});
  }
  // A calibration is kept in the data directory, one file per GPU model,
  // so that a restart (or another replica on the same hardware) starts from
  // it rather than from guesses.
  const std::string calibration_path =
      resident.data_dir() == nullptr
          ? std::string()
          : CalibrationPath(resident.data_dir()->path(),
                            engine_->executor().gpu_device());
  if (options_.calibrate_on_start) {
    // Readiness waits for the sweep: until the model is seeded, AUTO
    // decisions would rest on no measurement at all.
    readiness_->SetPhase(Readiness::Phase::kCalibrating);
    core::Log(core::LogLevel::kInfo, "calibrating", {});
    const absl::Time start = absl::Now();
    auto table = engine_->executor().Calibrate(dispatch::CalibrationOptions{});
    if (!table.ok()) {
      core::Log(core::LogLevel::kWarning, "calibration_failed",
                {{"error", std::string(table.status().message())}});
    } else {
      core::Log(core::LogLevel::kInfo, "calibrated",
                {{"seconds",
                  absl::StrCat(absl::ToDoubleSeconds(absl::Now() - start))},
                 {"table", dispatch::FormatCrossoverTable(*table)}});
      StoreCalibration(calibration_path);
    }
  } else {
    LoadCalibration(calibration_path);
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
             {"transport_security", TransportSecurity()},
             {"cpu_only", ready.cpu_only ? "true" : "false"},
             {"reason", ready.reason}});
  return absl::OkStatus();
}

absl::Status SimilarityServer::Drain() {
  if (drained_ || grpc_server_ == nullptr) return absl::OkStatus();
  drained_ = true;
  const absl::Time deadline = absl::Now() + options_.drain_deadline;
  const absl::Time stop_at =
      deadline - std::min(kDrainStopMargin, options_.drain_deadline / 4);
  readiness_->SetPhase(Readiness::Phase::kDraining);
  // Calls whose headers arrived before this run on; later ones are refused
  // with UNAVAILABLE and a retry hint.
  service_->StartDraining();
  core::Log(core::LogLevel::kInfo, "draining",
            {{"deadline_seconds",
              absl::StrCat(absl::ToDoubleSeconds(options_.drain_deadline))}});
  bool stopped = false;
  std::thread stopper([this, stop_at, &stopped] {
    if (!service_->WaitForDrain(stop_at)) {
      stopped = true;
      service_->StopCalls();
    }
  });
  // GOAWAY to every connection and the listener closed: clients move their
  // new calls to other replicas while the calls in flight here finish.
  // Shutdown returns once they are all done; at the deadline it would
  // cancel what is left, which the stop above answered before.
  const absl::Time draining_since = absl::Now();
  const absl::Duration most =
      std::min(kMaxGoawayDelay, options_.drain_deadline / 10);
  absl::SleepFor(std::min(kMinGoawayDelay, most));
  service_->WaitForQuiet(kQuiet, draining_since + most);
  grpc_server_->Shutdown(
      absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Seconds(1))));
  grpc_server_->Wait();
  stopper.join();
  readiness_->Detach();
  exposer_.reset();
  core::Log(stopped ? core::LogLevel::kWarning : core::LogLevel::kInfo,
            "stopped", {{"drained", stopped ? "false" : "true"}});
  return stopped ? absl::DeadlineExceededError(
                       "calls still running near the drain deadline were "
                       "ended with UNAVAILABLE")
                 : absl::OkStatus();
}

void SimilarityServer::StoreCalibration(const std::string& path) {
  const std::optional<dispatch::StoredCalibration> calibration =
      engine_->executor().calibration();
  if (path.empty() || !calibration.has_value()) return;
  const std::string text = dispatch::FormatStoredCalibration(*calibration);
  const absl::Status written = collections::WriteFileAtomically(
      path, [&](collections::FileSink& sink) { return sink.Write(text); });
  if (written.ok()) {
    core::Log(core::LogLevel::kInfo, "calibration_stored", {{"path", path}});
  } else {
    core::Log(core::LogLevel::kWarning, "calibration_not_stored",
              {{"path", path}, {"error", std::string(written.message())}});
  }
}

void SimilarityServer::LoadCalibration(const std::string& path) {
  if (path.empty()) return;
  std::ifstream in(path);
  if (!in) return;  // none stored yet
  std::ostringstream text;
  text << in.rdbuf();
  absl::StatusOr<dispatch::StoredCalibration> stored =
      dispatch::ParseStoredCalibration(text.str());
  absl::Status used = stored.status();
  if (used.ok()) used = engine_->executor().UseCalibration(*stored);
  if (used.ok()) {
    const std::shared_ptr<const dispatch::HybridConfig> config =
        engine_->config();
    core::Log(
        core::LogLevel::kInfo, "calibration_loaded",
        {{"path", path},
         {"min_gpu_work_cosine", absl::StrCat(config->min_gpu_work_cosine)},
         {"min_gpu_work_spread", absl::StrCat(config->min_gpu_work_spread)}});
  } else {
    core::Log(core::LogLevel::kWarning, "calibration_ignored",
              {{"path", path}, {"error", std::string(used.message())}});
  }
}

}  // namespace engram::server
