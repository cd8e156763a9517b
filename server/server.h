// SimilarityServer wires the pieces of a running service together: the
// engine, the gRPC server (Similarity service, standard health service,
// reflection), and the Prometheus exposer.
//
// Lifecycle: Create() validates options (and reads the TLS files); Start()
// binds and serves (health turns SERVING once everything is up: the
// declared resident data loaded, calibration done); Drain() turns
// health NOT_SERVING, refuses new calls, sends GOAWAY to every connection
// and closes the listener, lets every call whose headers had arrived finish
// within the drain deadline (ending the ones still running near it with
// UNAVAILABLE and a retry hint) and stops the server. The destructor drains if
// Drain() was not called. Readiness (server/readiness.h) keeps the health
// answers truthful in between, e.g. when a required GPU is lost.
//
// /metrics serves the engine's EngineCollector: the one registry (engine
// and per-RPC families) with the state-derived gauges refreshed per scrape.
//
// Thread-safety: Start() and Drain() are called from one controlling thread
// (main); the accessors may be called from any thread after Start().
#ifndef ENGRAM_SERVER_SERVER_H_
#define ENGRAM_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/readiness.h"
#include "server/rpc_metrics.h"
#include "server/similarity_service.h"

namespace engram::server {

// The fully qualified service name health checks ask about.
inline constexpr char kServiceName[] = "engram.similarity.v1.Similarity";

class SimilarityServer {
 public:
  struct Options {
    std::string grpc_address = "0.0.0.0:50051";  // port 0: pick a free one
    std::string metrics_address = "0.0.0.0:9464";
    int max_message_bytes = 256 << 20;
    absl::Duration drain_deadline = absl::Seconds(20);
    core::Engine::Options engine;
    // Run the calibration sweep (core/dispatch/calibration.h) on every
    // backend before turning SERVING, to seed the performance model.
    bool calibrate_on_start = false;
    // Start-up declarations of resident collections and graphs
    // (core/collections/declarations.h), loaded in Start() before readiness
    // turns SERVING. A missing or malformed file, or an entry that fails, is
    // logged and counted (engram_resident_load_failures_total) and the
    // server starts without it. Empty: none.
    std::string resident_config_path;
    // The GPU is required: health says NOT_SERVING whenever it is unusable
    // (none found, or the breaker forced open by a sticky device error).
    // Otherwise the server keeps serving on the CPU.
    bool require_gpu = false;
    std::string version;
    // Bound on the calls and bytes in flight (admission.h).
    Admission::Options admission;
    // Per-call protobuf arenas for requests and responses.
    bool request_arena = true;
    // TLS for the gRPC port (PEM files). No certificate: plaintext. With a
    // client CA: mutual TLS, and a client must present a certificate that
    // CA signed. The metrics port stays plain HTTP on metrics_address.
    struct Tls {
      std::string cert_file;
      std::string key_file;
      std::string client_ca_file;
    };
    Tls tls;
    // Connections older than this are closed gracefully (GOAWAY; calls in
    // flight get drain_deadline to finish), so long-lived clients
    // re-resolve and spread over replicas added since. Zero: never.
    absl::Duration max_connection_age = absl::ZeroDuration();
    // Shared mode: etcd://HOST:PORT[,HOST:PORT...]/PREFIX, the catalog every
    // replica on the same engine.resident.data_dir commits through
    // (server/catalog/etcd_catalog.h). Empty: this process alone.
    std::string catalog_url;
  };

  static absl::StatusOr<std::unique_ptr<SimilarityServer>> Create(
      const Options& options);
  ~SimilarityServer();

  // Binds both ports and starts serving. FAILED_PRECONDITION / UNAVAILABLE
  // when a port cannot be bound.
  absl::Status Start();

  // Graceful stop (see the file comment). Returns OK when every call
  // finished on its own, DEADLINE_EXCEEDED when some had to be stopped near
  // the deadline. Idempotent.
  absl::Status Drain();

  core::Engine& engine() { return *engine_; }
  Readiness::State readiness() const { return readiness_->state(); }
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  explicit SimilarityServer(const Options& options);
  // Plaintext, TLS or mutual TLS, by Options::tls.
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;
  // "plaintext", "tls" or "mutual_tls", for the start-up log.
  const char* TransportSecurity() const;
  // Writes the executor's calibration to `path` (nothing when empty);
  // loads one from it and puts it in force when the file is there. Both
  // log what they did and never fail the start-up.
  void StoreCalibration(const std::string& path);
  void LoadCalibration(const std::string& path);

  const Options options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<core::Engine> engine_;
  std::unique_ptr<RpcMetrics> rpc_metrics_;
  // Outlives the engine: a breaker listener reports into it.
  std::unique_ptr<Readiness> readiness_;
  std::unique_ptr<SimilarityService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  // PEM contents of Options::tls, read at Create().
  std::string tls_cert_;
  std::string tls_key_;
  std::string tls_client_ca_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  bool drained_ = false;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_SERVER_H_
