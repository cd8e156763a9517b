#include "core/process_sample.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace engram::core {

absl::StatusOr<ProcessSample> ReadProcessSample() {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) {
    return absl::UnavailableError("cannot read /proc/self/stat");
  }
  // The command name is in parentheses and may hold spaces: fields are
  // counted from the last ')'. After it come field 3 (state) onwards.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return absl::UnavailableError("malformed /proc/self/stat");
  }
  const std::vector<std::string> f =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  // f[0] is field 3; field n is f[n - 3].
  auto field = [&f](size_t n) -> double {
    double v = 0;
    if (n - 3 < f.size() && absl::SimpleAtod(f[n - 3], &v)) return v;
    return 0;
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  ProcessSample p;
  p.cpu_seconds = (field(14) + field(15)) / ticks;
  p.virtual_memory_bytes = field(23);
  p.resident_memory_bytes = field(24) * page;

  double boot_time = 0;
  std::ifstream proc_stat("/proc/stat");
  for (std::string line; std::getline(proc_stat, line);) {
    if (absl::StartsWith(line, "btime ")) {
      (void)absl::SimpleAtod(line.substr(6), &boot_time);
      break;
    }
  }
  p.start_time_seconds = boot_time + field(22) / ticks;

  if (DIR* dir = opendir("/proc/self/fd"); dir != nullptr) {
    int count = 0;
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    p.open_fds = count - 1;  // not the one opendir() holds
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    p.max_fds = limit.rlim_cur == RLIM_INFINITY
                    ? std::numeric_limits<double>::infinity()
                    : static_cast<double>(limit.rlim_cur);
  }
  return p;
}

}  // namespace engram::core
