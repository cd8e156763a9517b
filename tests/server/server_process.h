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

namespace engram::testing {

class ServerProcess {
 public:
  // Starts `binary` with --grpc_address=127.0.0.1:0,
  // --metrics_address=127.0.0.1:0, a ready file, and `extra_flags`; waits
  // until it serves (or `timeout`).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::vector<std::string>& extra_flags,
      absl::Duration timeout = absl::Seconds(30));
  ~ServerProcess();  // SIGKILLs the process if it is still running

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string grpc_target() const;
  pid_t pid() const { return pid_; }

  // Sends `signal` to the process.
  void Signal(int signal);
  // Waits for the process to exit; returns its exit code (128 + signal when
  // killed), or DEADLINE_EXCEEDED.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::string ready_file_;
};

// GETs http://127.0.0.1:<port><path> and returns the body (status 200 only).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_SERVER_SERVER_PROCESS_H_
