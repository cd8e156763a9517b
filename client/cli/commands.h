// engram-cli's entry point and dispatcher: Main() parses the command line and
// prints help or hands the invocation to Run(), which sends the request of
// `cosine`, `spread`, `stats` and `health` itself and leaves `bench` and the
// resident-data commands to their own files. main() only forwards to Main();
// everything here is testable.
//
// The parts of the CLI live in files named for what they hold; this header
// includes them all so that a test or tool needs only this one:
//   invocation.h        the parsed command line (subcommand and options)
//   flags.h             ParseArgs and the --help text
//   output.h            exit codes, JSON output and the error line
//   progress.h          the progress display of long transfers
//   credentials.h       the channel credentials of the TLS flags
//   request_builders.h  flag values and files into requests
//   load_generator.h    the `bench` command
//   resident_commands.h the `collection` and `graph` commands
#ifndef ENGRAM_CLIENT_CLI_COMMANDS_H_
#define ENGRAM_CLIENT_CLI_COMMANDS_H_

#include <ostream>

#include "client/cli/credentials.h"
#include "client/cli/flags.h"
#include "client/cli/invocation.h"
#include "client/cli/load_generator.h"
#include "client/cli/output.h"
#include "client/cli/progress.h"
#include "client/cli/request_builders.h"
#include "client/cli/resident_commands.h"

namespace engram::client::cli {

// Runs a parsed, non-help invocation: builds the request, calls the server
// and prints the result to `out` or the error to `err`. Returns the exit code.
// `err_is_terminal` says whether `err` is a terminal, which decides with
// --quiet and --progress whether long transfers show progress on `err`.
int Run(const Invocation& invocation, std::ostream& out, std::ostream& err,
        bool err_is_terminal = false);

// The whole program: ParseArgs, help or Run. Returns the exit code.
int Main(int argc, char** argv, std::ostream& out, std::ostream& err,
         bool err_is_terminal = false);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_COMMANDS_H_
