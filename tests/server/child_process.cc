#include "tests/server/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "absl/time/clock.h"

namespace engram::testing {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& args, const Options& options) {
  if (args.empty()) return absl::InvalidArgumentError("no program to start");
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Opened before fork(): the child of a threaded process may only make
  // async-signal-safe calls until it execs.
  const int out = options.stderr_path.empty()
                      ? -1
                      : open(options.stderr_path.c_str(),
                             O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const pid_t pid = fork();
  if (pid < 0) {
    if (out >= 0) close(out);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    if (out >= 0) {
      dup2(out, STDERR_FILENO);
      if (options.stdout_too) dup2(out, STDOUT_FILENO);
    }
    execv(argv[0], argv.data());
    std::perror("execv");
    _exit(127);
  }
  if (out >= 0) close(out);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

ChildProcess::~ChildProcess() {
  if (!exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool ChildProcess::Exited() {
  if (exited_) return true;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
  exited_ = true;
  if (WIFEXITED(status)) {
    exit_code_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_code_ = 128 + WTERMSIG(status);
  }
  return true;
}

void ChildProcess::Signal(int signal) {
  if (!Exited()) kill(pid_, signal);
}

absl::StatusOr<int> ChildProcess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Exited()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("the process did not exit in time");
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return exit_code_;
}

void ChildProcess::Stop(absl::Duration grace) {
  Signal(SIGTERM);
  if (!WaitForExit(grace).ok()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    exited_ = true;
  }
}

}  // namespace engram::testing
