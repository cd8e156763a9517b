// A child process for end-to-end tests (the server binary, a Prometheus
// server): started with fork and exec, its output optionally sent to a file,
// signalled, waited for with a bound, and killed if a test leaves it running.
//
// Thread-safety: one test thread owns a ChildProcess.
#ifndef ENGRAM_TESTS_SERVER_CHILD_PROCESS_H_
#define ENGRAM_TESTS_SERVER_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace engram::testing {

class ChildProcess {
 public:
  struct Options {
    // When set, the child's stderr goes to this file (replaced).
    std::string stderr_path;
    // With stderr_path: stdout goes there too.
    bool stdout_too = false;
  };

  // Starts args[0] with the rest of `args` as its arguments.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& args, const Options& options);
  ~ChildProcess();  // SIGKILLs and reaps the process if it is still running

  pid_t pid() const { return pid_; }
  // Whether it has exited, reaping it if so (its code for WaitForExit).
  bool Exited();
  // Sends `signal` unless the process has exited.
  void Signal(int signal);
  // Waits for the process to exit; returns its exit code (128 + signal when
  // killed), or DEADLINE_EXCEEDED.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);
  // SIGTERM, then SIGKILL if it has not exited within `grace`.
  void Stop(absl::Duration grace);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}

  pid_t pid_;
  bool exited_ = false;
  int exit_code_ = -1;
};

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_SERVER_CHILD_PROCESS_H_
