// DeviceMemoryLedger: the device bytes that requests have planned to use and
// not yet given back, so that concurrent requests share one memory budget
// instead of each planning against the whole of it.
//
// A request reserves the bytes of its GPU chunk before its first launch and
// holds them until its GPU part ends; the Reservation gives them back when
// it is destroyed, so every return path and every exception releases them.
//
// The budget rule. A memory reading (free bytes of the device) already
// counts the memory of the calls that were running on the device while it
// was taken, and those calls' reservations are still in the ledger.
// Subtracting both would count those bytes twice, so the ledger records, with
// each reading, the bytes of reservations that were on the device for the
// whole of the probe (marked by Launch() around each GPU call) and adds them
// back to the free bytes:
//
//   estimate  = (free + on_device_during_the_reading) * safety_margin
//   capacity  = min(estimate, the estimate of the last quiet reading)
//   available = capacity - reserved   (0 when reserved >= capacity)
//
// A reservation made, or launched, after the reading is not in `free`, and
// is subtracted once; one that was on the device then is in `free` and in
// `reserved`, and the two cancel; one released since then frees its bytes.
//
// The add-back trusts that a call's device memory is allocated for the whole
// Launch() span, which is not quite so: the device allocates a little after
// the call starts and frees a little before it returns (a failed call never
// allocates), and a reading taken in such a gap over-states the estimate by
// that call's bytes. With many requests in that gap at once (a busy host
// preempts them there) the error grows without bound, so the estimate is
// capped by the last quiet reading's: one taken with nothing of the ledger's
// on the device from the probe's start to its end, which is exact. The cap
// only lowers the capacity: memory other tenants take shows in the next
// estimate at once, memory they give back only at the next quiet reading.
// Before the first quiet reading the estimate stands alone. Memory taken by
// anything outside the ledger (resident copies, other processes) shows in
// `free` as used.
//
// Reserve(min, want) grants the most of `want` that is available, but never
// less than `min`: a cosine request then plans smaller chunks rather than
// waiting. When not even `min` is available it waits up to max_wait (in real
// time: it waits on other threads) for releases or a new reading, then
// answers RESOURCE_EXHAUSTED naming the bytes needed and available. A request
// whose `min` exceeds the whole capacity is refused at once: no release can
// make room for it. Before the first reading there is no capacity to hold
// requests to: reservations are granted in full and counted.
//
// Thread-safety: all methods may be called concurrently, from any number of
// threads; one mutex guards the state, and Reserve waits on it with a
// condition. A Reservation belongs to one request and is not itself
// thread-safe; it must not outlive its ledger.
#ifndef ENGRAM_CORE_DISPATCH_MEMORY_LEDGER_H_
#define ENGRAM_CORE_DISPATCH_MEMORY_LEDGER_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/option_check.h"

namespace engram::dispatch {

class DeviceMemoryLedger {
 public:
  struct Options {
    // false: requests plan against the whole budget, each on its own, and
    // concurrent ones can run each other out of memory (OOM halving then
    // finds sizes that fit).
    bool enabled = true;
    // [0, 1 s]: how long a request that does not fit waits for releases
    // before it goes to the CPU (or fails, when it may not). Long enough
    // for a chunk or two to finish, short next to a request's latency.
    absl::Duration max_wait = absl::Milliseconds(10);
    // (0, 1]: of the free bytes of a reading (and of the reserved bytes it
    // counted as used); the executor sets it from the
    // memory monitor's, so the ledger and the monitor's budget agree.
    double safety_margin = 0.8;
  };

  // The ledger at one instant. Counters are totals since creation.
  struct Stats {
    uint64_t reserved_bytes = 0;  // held by reservations now
    uint64_t reservations = 0;    // in force now
    // The rule above at the last reading; 0 before the first reading.
    uint64_t capacity_bytes = 0;
    bool has_reading = false;
    // The estimate of the last quiet reading; 0 before the first.
    uint64_t quiet_capacity_bytes = 0;
    uint64_t peak_reserved_bytes = 0;
    uint64_t granted = 0;   // reservations made
    uint64_t shrunk = 0;    // ... of which got less than they wanted
    uint64_t waits = 0;     // Reserve calls that had to wait
    uint64_t refusals = 0;  // Reserve calls that got nothing
  };

  // Bytes held for one request; released by Release() or the destructor.
  // Movable, not copyable.
  class Reservation {
   public:
    Reservation() = default;
    ~Reservation() { Release(); }
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;

    bool held() const { return ledger_ != nullptr; }
    uint64_t bytes() const { return bytes_; }
    // Gives back all but `bytes` (no-op when bytes >= this->bytes()), waking
    // requests that wait: after an OOM the request goes on smaller.
    void ShrinkTo(uint64_t bytes);
    void Release();

    // Marks `bytes` (at most bytes()) as on the device while it lives: a GPU
    // call's span. Movable, not copyable; no-op for an empty reservation.
    class OnDevice {
     public:
      OnDevice(OnDevice&& other) noexcept
          : ledger_(other.ledger_), id_(other.id_) {
        other.ledger_ = nullptr;
      }
      OnDevice& operator=(OnDevice&&) = delete;
      OnDevice(const OnDevice&) = delete;
      OnDevice& operator=(const OnDevice&) = delete;
      ~OnDevice() { Reservation::Land(ledger_, id_); }

     private:
      friend class Reservation;
      OnDevice(DeviceMemoryLedger* ledger, uint64_t id)
          : ledger_(ledger), id_(id) {}
      DeviceMemoryLedger* ledger_;
      uint64_t id_;
    };
    OnDevice Launch(uint64_t bytes) const;

   private:
    friend class DeviceMemoryLedger;
    Reservation(DeviceMemoryLedger* ledger, uint64_t id, uint64_t bytes)
        : ledger_(ledger), id_(id), bytes_(bytes) {}
    static void Land(DeviceMemoryLedger* ledger, uint64_t id);

    DeviceMemoryLedger* ledger_ = nullptr;
    uint64_t id_ = 0;
    uint64_t bytes_ = 0;
  };

  // OK, or INVALID_ARGUMENT naming the first option outside its range; the
  // hybrid config calls it for the Options it embeds, naming them by its
  // keys.
  static absl::Status Validate(const Options& options);
  static absl::Status Validate(const Options& options, OptionNamer name);

  // INVALID_ARGUMENT for an option outside its range (Validate).
  static absl::StatusOr<std::unique_ptr<DeviceMemoryLedger>> Create(
      const Options& options);

  DeviceMemoryLedger(const DeviceMemoryLedger&) = delete;
  DeviceMemoryLedger& operator=(const DeviceMemoryLedger&) = delete;
  // Every Reservation must be gone by then.
  ~DeviceMemoryLedger() = default;

  // Runs `probe` and, when it gives a plausible reading, makes that reading
  // the ledger's capacity (the rule above); returns what the probe gave.
  // Meant to wrap the memory monitor's probe, so the monitor and the ledger
  // see the same readings.
  absl::StatusOr<DeviceMemoryInfo> Observe(
      const MemoryPressureMonitor::Probe& probe) ABSL_LOCKS_EXCLUDED(mu_);

  // Reserves between min_bytes and want_bytes (want_bytes is raised to
  // min_bytes), as described above. RESOURCE_EXHAUSTED naming the bytes
  // needed and available when min_bytes is not available within max_wait,
  // or can never be.
  absl::StatusOr<Reservation> Reserve(uint64_t min_bytes, uint64_t want_bytes)
      ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const Options& options() const { return options_; }

 private:
  struct Entry {
    uint64_t bytes = 0;
    uint64_t on_device_bytes = 0;  // 0: not in a GPU call
    uint64_t launch_epoch = 0;     // when that call began
  };

  explicit DeviceMemoryLedger(const Options& options) : options_(options) {}

  uint64_t AvailableLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Sets the entry's bytes (to 0: removes it).
  void Resize(uint64_t id, uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void Launch(uint64_t id, uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void Land(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;  // advanced by every launch
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  bool has_reading_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t capacity_ ABSL_GUARDED_BY(mu_) = 0;
  bool has_quiet_reading_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t quiet_capacity_ ABSL_GUARDED_BY(mu_) = 0;
  Stats counts_ ABSL_GUARDED_BY(mu_);  // its counters only
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_MEMORY_LEDGER_H_
