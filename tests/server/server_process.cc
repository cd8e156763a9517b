#include "tests/server/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"

namespace engram::testing {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::vector<std::string>& extra_flags,
    absl::Duration timeout) {
  Options options;
  options.timeout = timeout;
  return Start(binary, extra_flags, options);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::vector<std::string>& extra_flags,
    const Options& options) {
  static std::atomic<int> counter{0};
  auto process = std::unique_ptr<ServerProcess>(new ServerProcess());
  const char* tmp = std::getenv("TMPDIR");
  process->ready_file_ =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-ready-", getpid(),
                   "-", counter.fetch_add(1));
  std::remove(process->ready_file_.c_str());

  std::vector<std::string> args = {binary, "--grpc_address=127.0.0.1:0",
                                   "--metrics_address=127.0.0.1:0",
                                   "--ready_file=" + process->ready_file_};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  ChildProcess::Options child;
  child.stderr_path = options.stderr_path;
  ENGRAM_ASSIGN_OR_RETURN(process->child_, ChildProcess::Start(args, child));
  if (!options.wait_until_ready) return process;
  absl::Status ready = process->WaitUntilReady(options.timeout);
  if (!ready.ok()) return ready;
  return process;
}

absl::Status ServerProcess::WaitUntilReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream in(ready_file_);
    if (in.good()) {
      std::stringstream ss;
      ss << in.rdbuf();
      std::smatch m;
      const std::string text = ss.str();
      if (std::regex_search(
              text, m,
              std::regex(R"re("grpc_port":(\d+),"metrics_port":(\d+))re"))) {
        grpc_port_ = std::stoi(m[1]);
        metrics_port_ = std::stoi(m[2]);
        return absl::OkStatus();
      }
    }
    if (child_->Exited()) {
      return absl::InternalError(
          absl::StrCat("server exited during start-up, code ",
                       *child_->WaitForExit(absl::ZeroDuration())));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("server did not become ready in time");
}

ServerProcess::~ServerProcess() {
  child_.reset();  // kills the server if it still runs
  if (!ready_file_.empty()) std::remove(ready_file_.c_str());
}

std::string ServerProcess::grpc_target() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

void ServerProcess::Signal(int signal) { child_->Signal(signal); }

absl::StatusOr<int> ServerProcess::WaitForExit(absl::Duration timeout) {
  return child_->WaitForExit(timeout);
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", port));
  }
  const std::string request =
      absl::StrCat("GET ", path,
                   " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("write failed");
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || body == std::string::npos) {
    return absl::InternalError("malformed HTTP response");
  }
  if (response.find(" 200 ") == std::string::npos ||
      response.find(" 200 ") > response.find("\r\n")) {
    return absl::InternalError(absl::StrCat(
        "HTTP status line: ", response.substr(0, response.find("\r\n"))));
  }
  return response.substr(body + 4);
}

absl::StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError("cannot bind a loopback port");
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

absl::StatusOr<CommandResult> RunCommand(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed");
  CommandResult result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0)
    result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace engram::testing
