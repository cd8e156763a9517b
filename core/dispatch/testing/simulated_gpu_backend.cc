#include "core/dispatch/testing/simulated_gpu_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"

namespace engram::dispatch::testing {

absl::StatusOr<std::unique_ptr<SimulatedGpuBackend>>
SimulatedGpuBackend::Create(const Options& options) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("simulated GPU option ", what));
  };
  if (options.name.empty()) return bad("name must not be empty");
  if (options.launch_overhead < absl::ZeroDuration()) {
    return bad("launch_overhead must be >= 0");
  }
  if (!(options.seconds_per_unit >= 0.0 && options.seconds_per_unit <= 1.0)) {
    return bad("seconds_per_unit must be in [0, 1]");
  }
  if (!(options.seconds_per_target_byte >= 0.0 &&
        options.seconds_per_target_byte <= 1.0)) {
    return bad("seconds_per_target_byte must be in [0, 1]");
  }
  if (options.memory_bytes == 0) return bad("memory_bytes must be positive");
  if (options.reserved_bytes > options.memory_bytes) {
    return bad("reserved_bytes must be <= memory_bytes");
  }
  if (!(options.error_probability >= 0.0 && options.error_probability <= 1.0)) {
    return bad("error_probability must be in [0, 1]");
  }
  if (!(options.burst_probability >= 0.0 && options.burst_probability <= 1.0)) {
    return bad("burst_probability must be in [0, 1]");
  }
  if (options.burst_length < 1) return bad("burst_length must be >= 1");
  if (!(options.oom_probability >= 0.0 && options.oom_probability <= 1.0)) {
    return bad("oom_probability must be in [0, 1]");
  }
  if (!(options.spike_probability >= 0.0 && options.spike_probability <= 1.0)) {
    return bad("spike_probability must be in [0, 1]");
  }
  if (options.spike_latency < absl::ZeroDuration()) {
    return bad("spike_latency must be >= 0");
  }
  CpuBackend::Options cpu_options;
  cpu_options.pool = options.pool;
  absl::StatusOr<std::unique_ptr<CpuBackend>> cpu =
      CpuBackend::Create(cpu_options);
  if (!cpu.ok()) return cpu.status();
  return std::unique_ptr<SimulatedGpuBackend>(
      new SimulatedGpuBackend(options, *std::move(cpu)));
}

SimulatedGpuBackend::SimulatedGpuBackend(const Options& options,
                                         std::unique_ptr<CpuBackend> cpu)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      cpu_(std::move(cpu)) {
  absl::MutexLock lock(&mu_);
  rng_.seed(options_.seed);
  reserved_bytes_ = options_.reserved_bytes;
  error_probability_ = options_.error_probability;
}

BackendCapabilities SimulatedGpuBackend::Capabilities() const {
  BackendCapabilities c;
  c.name = options_.name;
  c.kind = BackendKind::kGpu;
  c.device_name = options_.device_name;
  c.has_memory_probe = true;
  c.memory_bytes = options_.memory_bytes;
  c.supports_residency = true;
  return c;
}

absl::Status SimulatedGpuBackend::Admit(Operation op, uint64_t items,
                                        uint64_t bytes, absl::Duration* spike) {
  *spike = absl::ZeroDuration();
  absl::MutexLock lock(&mu_);
  ++stats_.calls;
  absl::Status verdict;
  if (!sticky_ && options_.sticky_after_calls != 0 &&
      stats_.calls >= options_.sticky_after_calls) {
    sticky_ = true;
  }
  absl::Status forced;
  if (!forced_.empty()) {
    forced = std::move(forced_.front());
    forced_.pop_front();
  }
  if (sticky_) {
    verdict = StickyDeviceError(
        absl::StrCat(options_.name, ": illegal memory access (sticky)"));
  } else if (!forced.ok()) {
    verdict = std::move(forced);
  } else {
    const uint64_t free = FreeBytesLocked();
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    if (bytes > free || (oom_above_bytes_ != 0 && bytes > oom_above_bytes_) ||
        (options_.oom_probability > 0.0 &&
         uniform(rng_) < options_.oom_probability)) {
      verdict = DeviceOutOfMemoryError(
          absl::StrCat(options_.name, ": out of memory allocating ", bytes,
                       " bytes (", free, " free)"));
    } else if (burst_left_ > 0) {
      --burst_left_;
      verdict = absl::UnavailableError(
          absl::StrCat(options_.name, ": device error (burst)"));
    } else if (options_.burst_probability > 0.0 &&
               uniform(rng_) < options_.burst_probability) {
      burst_left_ = options_.burst_length - 1;
      verdict = absl::UnavailableError(
          absl::StrCat(options_.name, ": device error (burst)"));
    } else if (error_probability_ > 0.0 && uniform(rng_) < error_probability_) {
      verdict = absl::UnavailableError(
          absl::StrCat(options_.name, ": device error (random)"));
    }
  }
  if (verdict.ok()) {
    in_flight_bytes_ += bytes;
    if (options_.spike_probability > 0.0) {
      std::uniform_real_distribution<double> uniform(0.0, 1.0);
      if (uniform(rng_) < options_.spike_probability) {
        *spike = options_.spike_latency;
      }
    }
    return verdict;
  }
  switch (ClassifyBackendError(verdict)) {
    case BackendErrorClass::kOutOfMemory:
      ++stats_.ooms;
      break;
    case BackendErrorClass::kSticky:
    case BackendErrorClass::kDevice:
      ++stats_.device_errors;
      break;
    default:
      break;
  }
  RecordCallLocked(CallRecord{op, items, bytes, verdict.code()});
  return verdict;
}

void SimulatedGpuBackend::Finish(Operation op, uint64_t items, uint64_t bytes,
                                 bool resident, const absl::Status& outcome) {
  absl::MutexLock lock(&mu_);
  in_flight_bytes_ -= bytes;
  if (outcome.ok()) ++stats_.successes;
  if (outcome.ok() && resident) ++stats_.resident_hits;
  RecordCallLocked(CallRecord{op, items, bytes, outcome.code(), resident});
}

uint64_t SimulatedGpuBackend::FreeBytesLocked() const {
  const uint64_t used = reserved_bytes_ + in_flight_bytes_ + resident_bytes_;
  return used >= options_.memory_bytes ? 0 : options_.memory_bytes - used;
}

bool SimulatedGpuBackend::ReadsResident(const CosineJob& job) const {
  if (job.resident_targets == 0) return false;
  absl::MutexLock lock(&mu_);
  const auto it = resident_.find(job.resident_targets);
  return it != resident_.end() && it->second.rows == job.targets.rows &&
         it->second.cols == job.targets.cols;
}

void SimulatedGpuBackend::RecordCallLocked(const CallRecord& record) {
  history_.push_back(record);
  if (history_.size() > kHistory) history_.pop_front();
}

absl::Status SimulatedGpuBackend::Cosine(const CosineJob& job,
                                         CosineOutput* out) {
  // Whether a copy is used is decided once, at the start, as the CUDA
  // backend does; an eviction during the call does not affect it.
  const bool resident = ReadsResident(job);
  const uint64_t bytes = CosineFootprint(job, resident).TotalBytes();
  clock_->SleepFor(options_.launch_overhead);
  absl::Duration spike;
  absl::Status status =
      Admit(Operation::kCosine, job.queries.rows, bytes, &spike);
  if (!status.ok()) return status;
  clock_->SleepFor(spike);
  status = cpu_->Cosine(job, out);
  double seconds = options_.seconds_per_unit * static_cast<double>(job.work());
  if (!resident) {
    seconds += options_.seconds_per_target_byte *
               static_cast<double>(job.targets.rows * job.targets.cols *
                                   sizeof(float));
  }
  clock_->SleepFor(absl::Seconds(seconds));
  Finish(Operation::kCosine, job.queries.rows, bytes, resident, status);
  return status;
}

absl::Status SimulatedGpuBackend::Spread(const SpreadJob& job,
                                         SpreadOutput* out) {
  const uint64_t bytes = SpreadFootprint(job).TotalBytes();
  clock_->SleepFor(options_.launch_overhead);
  absl::Duration spike;
  absl::Status status = Admit(Operation::kSpread, 1, bytes, &spike);
  if (!status.ok()) return status;
  clock_->SleepFor(spike);
  status = cpu_->Spread(job, out);
  clock_->SleepFor(absl::Seconds(options_.seconds_per_unit *
                                 static_cast<double>(job.work())));
  Finish(Operation::kSpread, 1, bytes, false, status);
  return status;
}

absl::StatusOr<DeviceMemoryInfo> SimulatedGpuBackend::QueryMemory() {
  absl::MutexLock lock(&mu_);
  if (!probe_error_.ok()) return probe_error_;
  DeviceMemoryInfo info;
  info.total_bytes = options_.memory_bytes;
  info.free_bytes = FreeBytesLocked();
  return info;
}

absl::Status SimulatedGpuBackend::UploadResident(
    uint64_t key, const kernels::MatrixView& rows) {
  if (key == 0) {
    return absl::InvalidArgumentError("resident key must not be 0");
  }
  if (rows.rows == 0 || rows.cols == 0 || rows.data == nullptr) {
    return absl::InvalidArgumentError("resident rows must not be empty");
  }
  const uint64_t bytes = ResidentFootprintBytes(rows.rows, rows.cols);
  clock_->SleepFor(options_.launch_overhead);
  clock_->SleepFor(absl::Seconds(
      options_.seconds_per_target_byte *
      static_cast<double>(rows.rows * rows.cols * sizeof(float))));
  absl::MutexLock lock(&mu_);
  absl::Status forced;
  if (!forced_uploads_.empty()) {
    forced = std::move(forced_uploads_.front());
    forced_uploads_.pop_front();
  }
  absl::Status verdict;
  if (sticky_) {
    verdict = StickyDeviceError(
        absl::StrCat(options_.name, ": illegal memory access (sticky)"));
  } else if (!forced.ok()) {
    verdict = std::move(forced);
  } else if (resident_.contains(key)) {
    return absl::AlreadyExistsError(
        absl::StrCat(options_.name, ": resident key ", key, " is held"));
  } else if (bytes > FreeBytesLocked() ||
             (oom_above_bytes_ != 0 && bytes > oom_above_bytes_)) {
    verdict = DeviceOutOfMemoryError(
        absl::StrCat(options_.name, ": out of memory allocating ", bytes,
                     " resident bytes (", FreeBytesLocked(), " free)"));
  }
  if (!verdict.ok()) {
    ++stats_.resident_upload_failures;
    return verdict;
  }
  resident_[key] = ResidentCopy{rows.rows, rows.cols, bytes};
  resident_bytes_ += bytes;
  ++stats_.resident_uploads;
  return absl::OkStatus();
}

absl::Status SimulatedGpuBackend::EvictResident(uint64_t key) {
  absl::MutexLock lock(&mu_);
  const auto it = resident_.find(key);
  if (it == resident_.end()) {
    return absl::NotFoundError(
        absl::StrCat(options_.name, ": no resident key ", key));
  }
  resident_bytes_ -= it->second.bytes;
  resident_.erase(it);
  ++stats_.resident_evictions;
  return absl::OkStatus();
}

bool SimulatedGpuBackend::HoldsResident(uint64_t key) const {
  absl::MutexLock lock(&mu_);
  return resident_.contains(key);
}

uint64_t SimulatedGpuBackend::ResidentBytes() const {
  absl::MutexLock lock(&mu_);
  return resident_bytes_;
}

void SimulatedGpuBackend::FailNextUploads(uint32_t n, absl::Status error,
                                          uint32_t after) {
  absl::MutexLock lock(&mu_);
  for (uint32_t i = 0; i < after; ++i) {
    forced_uploads_.push_back(absl::OkStatus());
  }
  for (uint32_t i = 0; i < n; ++i) forced_uploads_.push_back(error);
}

void SimulatedGpuBackend::FailNextCalls(uint32_t n, absl::Status error,
                                        uint32_t after) {
  absl::MutexLock lock(&mu_);
  for (uint32_t i = 0; i < after; ++i) forced_.push_back(absl::OkStatus());
  for (uint32_t i = 0; i < n; ++i) forced_.push_back(error);
}

void SimulatedGpuBackend::SetOomAboveBytes(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  oom_above_bytes_ = bytes;
}

void SimulatedGpuBackend::SetReservedBytes(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  reserved_bytes_ = bytes;
}

void SimulatedGpuBackend::SetMemoryProbeError(absl::Status error) {
  absl::MutexLock lock(&mu_);
  probe_error_ = std::move(error);
}

void SimulatedGpuBackend::InjectStickyError() {
  absl::MutexLock lock(&mu_);
  sticky_ = true;
}

absl::Status SimulatedGpuBackend::SetErrorProbability(double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    return absl::InvalidArgumentError(
        "simulated GPU error probability must be in [0, 1]");
  }
  absl::MutexLock lock(&mu_);
  error_probability_ = p;
  return absl::OkStatus();
}

SimulatedGpuBackend::Stats SimulatedGpuBackend::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::vector<SimulatedGpuBackend::CallRecord> SimulatedGpuBackend::history()
    const {
  absl::MutexLock lock(&mu_);
  return std::vector<CallRecord>(history_.begin(), history_.end());
}

GpuBackendFactory SimulatedGpuFactory(SimulatedGpuBackend::Options options,
                                      SimulatedGpuBackend** created) {
  return [options, created](kernels::ThreadPool* pool)
             -> absl::StatusOr<std::unique_ptr<ComputeBackend>> {
    SimulatedGpuBackend::Options with_pool = options;
    with_pool.pool = pool;
    ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<SimulatedGpuBackend> backend,
                            SimulatedGpuBackend::Create(with_pool));
    if (created != nullptr) *created = backend.get();
    return std::unique_ptr<ComputeBackend>(std::move(backend));
  };
}

}  // namespace engram::dispatch::testing
