// Starts the real engram-server binary as a child process on free loopback
// ports, for end-to-end tests, and stops it again.
#ifndef ENGRAM_TESTS_SERVER_SERVER_PROCESS_H_
#define ENGRAM_TESTS_SERVER_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/server/child_process.h"
#include "tests/testing/time_scale.h"

namespace engram::testing {

class ServerProcess {
 public:
  struct Options {
    // Only ends a hung start-up, which a sanitized build makes slower.
    absl::Duration timeout = Scaled(absl::Seconds(30));
    // When set, the server's stderr (its JSON log) goes to this file.
    std::string stderr_path;
    // False: return as soon as the process runs; WaitUntilReady() later.
    bool wait_until_ready = true;
  };

  // Starts `binary` with --grpc_address=127.0.0.1:0,
  // --metrics_address=127.0.0.1:0, a ready file, and `extra_flags` (a flag
  // given again there wins); waits until it serves (or `timeout`).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::vector<std::string>& extra_flags,
      absl::Duration timeout = Scaled(absl::Seconds(30)));
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::vector<std::string>& extra_flags,
      const Options& options);

  // Waits for the ready file (ports bound, start-up done) and reads the
  // ports from it; INTERNAL if the process exited, DEADLINE_EXCEEDED.
  absl::Status WaitUntilReady(absl::Duration timeout);
  ~ServerProcess();  // SIGKILLs the process if it is still running

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string grpc_target() const;
  pid_t pid() const { return child_->pid(); }

  // Sends `signal` to the process.
  void Signal(int signal);
  // Waits for the process to exit; returns its exit code (128 + signal when
  // killed), or DEADLINE_EXCEEDED.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);

 private:
  std::unique_ptr<ChildProcess> child_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string ready_file_;
};

// GETs http://127.0.0.1:<port><path> and returns the body (status 200 only).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// A loopback TCP port that was free a moment ago (bound to port 0, then
// released), for a child process that cannot report the port it bound.
absl::StatusOr<int> PickFreePort();

// Runs `command` through /bin/sh; returns its exit status and output
// (stdout and stderr together).
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
absl::StatusOr<CommandResult> RunCommand(const std::string& command);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_SERVER_SERVER_PROCESS_H_
