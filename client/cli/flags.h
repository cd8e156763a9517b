// engram-cli's command line: the absl flags, parsing
// `engram-cli <subcommand> [--flags]` into an Invocation, and the --help
// text. One table of subcommands and the flags each takes drives both the
// parser and the help, so the two cannot disagree.
#ifndef ENGRAM_CLIENT_CLI_FLAGS_H_
#define ENGRAM_CLIENT_CLI_FLAGS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/invocation.h"

namespace engram::client::cli {

// Parses the arguments after the program name: the subcommand first, then
// flags as `--name=value` or `--name value` (one leading dash also works);
// a switch (bool flag) alone, `--quiet`, means true.
// `help`, `--help` or `-h` anywhere asks for help. Flags are the absl flags
// defined in flags.cc; a flag the subcommand does not take is an error.
// Returns INVALID_ARGUMENT describing the problem. Not thread-safe: it resets
// those flags to their defaults, then sets them from `args`, so the result
// depends on `args` alone.
absl::StatusOr<Invocation> ParseArgs(const std::vector<std::string>& args);

// The --help text: the overview with exit codes, or one subcommand's flags.
std::string UsageText(std::optional<Subcommand> subcommand);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_FLAGS_H_
