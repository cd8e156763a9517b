// engram-server: the Engram Similarity Service.
//
// Serves gRPC (default 0.0.0.0:50051) and Prometheus metrics (default
// 0.0.0.0:9464). SIGTERM or SIGINT drains: health turns NOT_SERVING, new
// calls are refused, GOAWAY follows, every call whose headers had arrived
// finishes (or ends UNAVAILABLE near --drain_deadline), then the process
// exits 0 (docs/reliability.md, "The drain guarantee").
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "core/engine.h"
#include "core/logging.h"
#include "server/malloc_tuning.h"
#include "server/server.h"

ABSL_FLAG(std::string, grpc_address, "0.0.0.0:50051",
          "Address the gRPC service listens on (port 0: any free port).");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9464",
          "Address the Prometheus /metrics endpoint listens on.");
ABSL_FLAG(int, worker_threads, 0,
          "CPU worker threads for requests and kernels (0: one per core).");
ABSL_FLAG(int, max_message_bytes, 256 << 20,
          "Largest gRPC message accepted or sent, in bytes.");
ABSL_FLAG(uint64_t, max_input_elements, uint64_t{64} << 20,
          "Most query plus target values in one BatchCosine request.");
ABSL_FLAG(uint64_t, max_output_elements, uint64_t{64} << 20,
          "Most scores in one BatchCosine response.");
ABSL_FLAG(uint64_t, max_nodes, uint64_t{16} << 20,
          "Most graph nodes in one Spread request.");
ABSL_FLAG(uint64_t, max_edges, uint64_t{64} << 20,
          "Most graph edges in one Spread request.");
ABSL_FLAG(uint64_t, max_seeds, uint64_t{1} << 20,
          "Most seeds in one Spread request.");
ABSL_FLAG(absl::Duration, drain_deadline, absl::Seconds(20),
          "On SIGTERM, how long the calls in flight may take to finish; "
          "those still running 2 s before it end UNAVAILABLE.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");
ABSL_FLAG(double, log_rate_limit_burst, 20,
          "Warnings a repeated event (GPU fallback, OOM, breaker transition) "
          "may log at once before rate limiting starts (>= 1).");
ABSL_FLAG(double, log_rate_limit_per_second, 1,
          "Lines per second each such event may log after its burst; the "
          "next line after a pause says how many were suppressed (>= 0).");
ABSL_FLAG(bool, require_gpu, false,
          "The GPU is required: health turns NOT_SERVING whenever it is "
          "unusable (none found, or the breaker forced open by a sticky "
          "device error). Without it the server keeps serving on the CPU.");
ABSL_FLAG(std::string, hybrid_config, "",
          "Hybrid dispatch configuration file (key = value lines, optional "
          "[profile NAME] sections; see docs/configuration.md). SIGHUP "
          "reloads it. Empty: the documented defaults.");
ABSL_FLAG(bool, calibrate, false,
          "Before turning SERVING, time a short sweep of sizes on every "
          "backend to seed the dispatch performance model (engram-calibrate "
          "prints the same table).");
ABSL_FLAG(bool, simulated_gpu, false,
          "SIMULATION: serve a fault-injecting SIMULATED GPU that computes "
          "on the CPU, to exercise dispatch, breaker and fallbacks without a "
          "GPU. Never for production.");
ABSL_FLAG(uint64_t, simulated_gpu_memory_bytes, uint64_t{16} << 30,
          "SIMULATION: device memory of the simulated GPU; larger chunks "
          "fail with out-of-memory.");
ABSL_FLAG(double, simulated_gpu_error_rate, 0.0,
          "SIMULATION: probability that a simulated GPU call fails.");
ABSL_FLAG(double, simulated_gpu_burst_rate, 0.0,
          "SIMULATION: probability that a call starts a burst of failures.");
ABSL_FLAG(uint32_t, simulated_gpu_burst_length, 1,
          "SIMULATION: failing calls per burst.");
ABSL_FLAG(double, simulated_gpu_oom_rate, 0.0,
          "SIMULATION: probability that a simulated GPU call fails with "
          "out-of-memory whatever its size.");
ABSL_FLAG(double, simulated_gpu_spike_rate, 0.0,
          "SIMULATION: probability that a simulated GPU call stalls for "
          "--simulated_gpu_spike_latency.");
ABSL_FLAG(absl::Duration, simulated_gpu_spike_latency, absl::Milliseconds(50),
          "SIMULATION: extra time a stalled simulated GPU call takes.");
ABSL_FLAG(uint64_t, simulated_gpu_sticky_after_calls, 0,
          "SIMULATION: the call with this number (1-based) and every later "
          "one fail with a sticky device error; 0: never.");
ABSL_FLAG(absl::Duration, simulated_gpu_launch_overhead, absl::Microseconds(20),
          "SIMULATION: fixed time each simulated GPU call takes.");
ABSL_FLAG(double, simulated_gpu_seconds_per_unit, 1e-12,
          "SIMULATION: simulated GPU time per unit of work (Q*N*d, or edges "
          "x hops).");
ABSL_FLAG(uint64_t, simulated_gpu_oom_above_bytes, 0,
          "SIMULATION: simulated GPU calls whose footprint exceeds this many "
          "bytes fail with out-of-memory whatever the free memory "
          "(fragmentation); 0: no such limit.");
ABSL_FLAG(uint64_t, simulated_gpu_seed, 1,
          "SIMULATION: seed of the simulated GPU's random failures.");
ABSL_FLAG(int, max_inflight_requests, 256,
          "Admission: calls accepted and not yet answered (queued ones "
          "included); beyond it new calls get RESOURCE_EXHAUSTED at once, "
          "with a grpc-retry-pushback-ms hint.");
ABSL_FLAG(uint64_t, max_inflight_bytes, uint64_t{4} << 30,
          "Admission: bytes the calls in flight may hold together (their "
          "payloads plus their responses, estimated on arrival). A call "
          "alone is always admitted.");
ABSL_FLAG(uint64_t, malloc_trim_threshold, uint64_t{64} << 20,
          "Free memory glibc keeps in a heap before returning it to the "
          "system, in bytes, at most 2^31 - 1; with it, allocations up to "
          "32 MiB come from the heaps instead of mmap. 0 keeps glibc's "
          "defaults, under which every large request pays page faults "
          "(docs/configuration.md).");
ABSL_FLAG(bool, request_arena, true,
          "Parse requests and build responses on a per-call protobuf arena "
          "(false only to measure what it saves).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain for TLS on the gRPC port; with "
          "--tls_key_file. Empty: plaintext.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle: when set, mutual TLS; clients must present a "
          "certificate signed by it.");
ABSL_FLAG(absl::Duration, max_connection_age, absl::ZeroDuration(),
          "Close client connections older than this gracefully (GOAWAY), so "
          "long-lived clients re-resolve and reach replicas added since; "
          "0: never.");
ABSL_FLAG(std::string, resident_config, "",
          "Resident collections and graphs to load at start-up, before "
          "health turns SERVING ([collection NAME] / [graph NAME] sections "
          "with path = FILE; see docs/configuration.md). A missing or "
          "corrupt file is logged and counted, and the server starts "
          "without it.");
ABSL_FLAG(std::string, data_dir, "",
          "Folder where collections and graphs that clients create, upload, "
          "append to or delete are kept durably: each change is on disk "
          "before its RPC answers OK, and everything comes back at start-up "
          "before health turns SERVING. Empty: in memory only (lost at "
          "exit). See docs/configuration.md.");
ABSL_FLAG(bool, map_segments, true,
          "Map the data directory's segment files instead of reading them "
          "into memory, where the file allows it (written by this version, on "
          "a local file system): start-up loads check the rows in place and "
          "the page cache's pages become the collections'. The rows still "
          "count against --resident_memory_bytes. See docs/configuration.md.");
ABSL_FLAG(std::string, catalog, "",
          "Shared mode: etcd://HOST:PORT[,HOST:PORT...]/PREFIX. Every "
          "replica given the same catalog and the same --data_dir (a shared "
          "volume) serves the same collections and graphs: a write commits "
          "through etcd and every replica loads it. Empty: this process "
          "alone. See docs/deploy.md.");
ABSL_FLAG(absl::Duration, min_version_wait, absl::Seconds(2),
          "How long DescribeCollection and SearchCollection wait for the "
          "min_version they name before answering UNAVAILABLE with a "
          "grpc-retry-pushback-ms hint (another replica may have it).");
ABSL_FLAG(double, compact_dead_share, 0.2,
          "A collection whose replaced and deleted rows (tombstones) reach "
          "this share of its rows, and at least 1024 rows, is compacted in "
          "the background: its live rows are copied into one segment and "
          "committed as the next version. (0, 1].");
ABSL_FLAG(uint64_t, resident_memory_bytes, uint64_t{8} << 30,
          "Host memory resident collections and graphs may hold together; "
          "an upload or load beyond it is refused (RESOURCE_EXHAUSTED) "
          "before anything is allocated.");
ABSL_FLAG(bool, batching, true,
          "Coalesce concurrent SearchCollection calls on the same "
          "collection into one pass (false: every call is its own pass).");
ABSL_FLAG(uint32_t, batch_max_queries, 64,
          "Most queries in one batched search pass, [1, 65536].");
ABSL_FLAG(absl::Duration, batch_max_delay, absl::Microseconds(200),
          "How long the oldest call of a partial batch may wait for more "
          "while a pass slot is free, [0, 1s].");
ABSL_FLAG(uint32_t, batch_max_passes, 1,
          "Batched search passes running at once per collection, [1, 1024]; "
          "calls arriving while all run join the next batch.");
ABSL_FLAG(absl::Duration, batch_pass_linger, absl::Milliseconds(2),
          "When a batched pass ends, batches still forming wait up to this "
          "(and at most 1/64 of that pass's time) for the callers it "
          "answered to send their next calls, [0, 1s]; 0 turns it off.");
ABSL_FLAG(double, graph_merge_share, 0.05,
          "A resident graph's compact layout is rebuilt in the background "
          "once the edge lists UpdateGraph rewrote hold more than this "
          "share of it, (0, 1]; results are the same either way.");
ABSL_FLAG(uint64_t, graph_merge_max_updates, 4096,
          "... or once this many UpdateGraph calls changed it since the "
          "last rebuild (>= 1), which bounds its edit log and, in shared "
          "mode, its catalog entry.");
ABSL_FLAG(uint32_t, batch_max_pending, 1024,
          "SearchCollection calls waiting or in a pass, per collection; "
          "beyond it calls are refused at once with RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, ready_file, "",
          "When set, once started (ports bound, calibration done) write "
          "{\"grpc_port\":P,\"metrics_port\":M} to this file (written "
          "atomically; for tests and scripts). Health says whether it "
          "serves.");

namespace {

constexpr char kVersion[] = "0.1.0";

bool WriteReadyFile(const std::string& path, int grpc_port, int metrics_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"grpc_port\":" << grpc_port
        << ",\"metrics_port\":" << metrics_port << "}\n";
    if (!out.good()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

namespace {

// Takes the stop and reload signals (blocked in every thread) on a thread
// of its own from the start of main: until MarkStarted() a stop signal ends
// the process at once (start-up may wait for etcd for as long as it takes,
// and nothing is served or being written yet); afterwards Next() hands
// every signal to main. Destruction ends the thread (it is woken with a
// SIGHUP of its own) before the process exits, so no thread is still
// starting or waiting while exit runs.
class SignalThread {
 public:
  explicit SignalThread(const sigset_t& signals) : signals_(signals) {
    thread_ = std::thread([this] { Run(); });
  }
  ~SignalThread() {
    stopping_ = true;
    pthread_kill(thread_.native_handle(), SIGHUP);
    thread_.join();
  }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

  void MarkStarted() { started_ = true; }
  // The next signal, waiting for one.
  int Next() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::deque<int>* q) { return !q->empty(); }, &queue_));
    const int number = queue_.front();
    queue_.pop_front();
    return number;
  }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      int number = 0;
      if (sigwait(&signals_, &number) != 0) continue;
      if (stopping_) return;
      if (number != SIGHUP && !started_) {
        engram::core::Log(engram::core::LogLevel::kInfo,
                          "signal_during_start_up",
                          {{"signal", strsignal(number)}});
        std::_Exit(0);
      }
      absl::MutexLock lock(&mu_);
      queue_.push_back(number);
    }
  }

  const sigset_t signals_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  std::deque<int> queue_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "The Engram Similarity Service (gRPC: BatchCosine, Spread, GetStats, "
      "resident collections and graphs).");
  absl::ParseCommandLine(argc, argv);
  using engram::core::Log;
  using engram::core::LogLevel;

  auto level = engram::core::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) {
    std::fprintf(stderr, "--log_level: %s\n",
                 std::string(level.status().message()).c_str());
    return 2;
  }
  engram::core::SetLogLevel(*level);
  engram::core::LogRateLimiter::Options rate;
  rate.burst = absl::GetFlag(FLAGS_log_rate_limit_burst);
  rate.per_second = absl::GetFlag(FLAGS_log_rate_limit_per_second);
  if (absl::Status limited = engram::core::SetLogRateLimit(rate);
      !limited.ok()) {
    std::fprintf(stderr, "--log_rate_limit_*: %s\n",
                 std::string(limited.message()).c_str());
    return 2;
  }

  // Before any thread starts (server/malloc_tuning.h says why).
  if (const uint64_t trim = absl::GetFlag(FLAGS_malloc_trim_threshold);
      trim != 0) {
    if (trim > engram::server::kMaxMallocTrimThreshold) {
      std::fprintf(stderr,
                   "--malloc_trim_threshold: %llu is over the limit of "
                   "2147483647 bytes\n",
                   static_cast<unsigned long long>(trim));
      return 2;
    }
    // A sanitizer's allocator replaces glibc's and refuses mallopt: the
    // server then runs as it would with the flag at 0.
    if (!engram::server::RetainFreedMemory(static_cast<int>(trim))) {
      Log(LogLevel::kWarning, "malloc_trim_threshold_ignored",
          {{"reason", "mallopt refused it (not glibc's allocator?)"}});
    }
  }

  // Block the stop signals before any thread starts so that every thread
  // inherits the mask and only sigwait() below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  SignalThread signals(stop_signals);

  engram::server::SimilarityServer::Options options;
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.drain_deadline = absl::GetFlag(FLAGS_drain_deadline);
  options.engine.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.engine.limits.max_input_elements =
      absl::GetFlag(FLAGS_max_input_elements);
  options.engine.limits.max_output_elements =
      absl::GetFlag(FLAGS_max_output_elements);
  options.engine.limits.max_nodes = absl::GetFlag(FLAGS_max_nodes);
  options.engine.limits.max_edges = absl::GetFlag(FLAGS_max_edges);
  options.engine.limits.max_seeds = absl::GetFlag(FLAGS_max_seeds);
  options.version = kVersion;
  options.engine.hybrid_config_path = absl::GetFlag(FLAGS_hybrid_config);
  options.calibrate_on_start = absl::GetFlag(FLAGS_calibrate);
  options.require_gpu = absl::GetFlag(FLAGS_require_gpu);
  options.admission.max_requests = absl::GetFlag(FLAGS_max_inflight_requests);
  options.admission.max_bytes = absl::GetFlag(FLAGS_max_inflight_bytes);
  options.request_arena = absl::GetFlag(FLAGS_request_arena);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.max_connection_age = absl::GetFlag(FLAGS_max_connection_age);
  options.resident_config_path = absl::GetFlag(FLAGS_resident_config);
  options.engine.resident.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.engine.resident.map_segments = absl::GetFlag(FLAGS_map_segments);
  options.catalog_url = absl::GetFlag(FLAGS_catalog);
  options.engine.resident.min_version_wait =
      absl::GetFlag(FLAGS_min_version_wait);
  options.engine.resident.compact_dead_share =
      absl::GetFlag(FLAGS_compact_dead_share);
  options.engine.resident.memory_bytes =
      absl::GetFlag(FLAGS_resident_memory_bytes);
  options.engine.resident.batching = absl::GetFlag(FLAGS_batching);
  options.engine.resident.batch_max_queries =
      absl::GetFlag(FLAGS_batch_max_queries);
  options.engine.resident.batch_max_delay =
      absl::GetFlag(FLAGS_batch_max_delay);
  options.engine.resident.batch_max_pending =
      absl::GetFlag(FLAGS_batch_max_pending);
  options.engine.resident.batch_max_passes =
      absl::GetFlag(FLAGS_batch_max_passes);
  options.engine.resident.batch_pass_linger =
      absl::GetFlag(FLAGS_batch_pass_linger);
  options.engine.resident.graph_merge_share =
      absl::GetFlag(FLAGS_graph_merge_share);
  options.engine.resident.graph_merge_max_updates =
      absl::GetFlag(FLAGS_graph_merge_max_updates);
  // Set when the engine makes the simulated device (owned by the engine).
  engram::dispatch::testing::SimulatedGpuBackend* simulated_gpu = nullptr;
  if (absl::GetFlag(FLAGS_simulated_gpu)) {
    engram::dispatch::testing::SimulatedGpuBackend::Options sim;
    sim.memory_bytes = absl::GetFlag(FLAGS_simulated_gpu_memory_bytes);
    sim.error_probability = absl::GetFlag(FLAGS_simulated_gpu_error_rate);
    sim.burst_probability = absl::GetFlag(FLAGS_simulated_gpu_burst_rate);
    sim.burst_length = absl::GetFlag(FLAGS_simulated_gpu_burst_length);
    sim.oom_probability = absl::GetFlag(FLAGS_simulated_gpu_oom_rate);
    sim.spike_probability = absl::GetFlag(FLAGS_simulated_gpu_spike_rate);
    sim.spike_latency = absl::GetFlag(FLAGS_simulated_gpu_spike_latency);
    sim.sticky_after_calls =
        absl::GetFlag(FLAGS_simulated_gpu_sticky_after_calls);
    sim.launch_overhead = absl::GetFlag(FLAGS_simulated_gpu_launch_overhead);
    sim.seconds_per_unit = absl::GetFlag(FLAGS_simulated_gpu_seconds_per_unit);
    sim.seed = absl::GetFlag(FLAGS_simulated_gpu_seed);
    options.engine.gpu_backend =
        engram::dispatch::testing::SimulatedGpuFactory(sim, &simulated_gpu);
    Log(LogLevel::kWarning, "simulated_gpu",
        {{"note", "SIMULATION: the GPU backend is simulated on the CPU"}});
  }

  auto server = engram::server::SimilarityServer::Create(options);
  if (!server.ok()) {
    Log(LogLevel::kError, "invalid_configuration",
        {{"error", std::string(server.status().message())}});
    return 2;
  }
  if (simulated_gpu != nullptr) {
    simulated_gpu->SetOomAboveBytes(
        absl::GetFlag(FLAGS_simulated_gpu_oom_above_bytes));
  }
  if (absl::Status started = (*server)->Start(); !started.ok()) {
    Log(LogLevel::kError, "start_failed",
        {{"error", std::string(started.message())}});
    return 1;
  }
  Log(LogLevel::kInfo, "cpu_kernels",
      {{"simd_target", engram::core::Engine::Build().simd_target}});
  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty() && !WriteReadyFile(ready_file, (*server)->grpc_port(),
                                             (*server)->metrics_port())) {
    Log(LogLevel::kError, "ready_file_failed", {{"path", ready_file}});
    return 1;
  }

  signals.MarkStarted();
  while (true) {
    const int signal_number = signals.Next();
    Log(LogLevel::kInfo, "signal", {{"signal", strsignal(signal_number)}});
    if (signal_number != SIGHUP) break;
    auto restart_only = (*server)->engine().ReloadConfig();
    if (!restart_only.ok()) {
      Log(LogLevel::kError, "config_reload_failed",
          {{"error", std::string(restart_only.status().message())}});
      continue;
    }
    Log(LogLevel::kInfo, "config_reloaded",
        {{"restart_only_changes_ignored", absl::StrJoin(*restart_only, ",")}});
  }
  (*server)->Drain().IgnoreError();
  server->reset();
  return 0;
}
