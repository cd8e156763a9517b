// engram-cli: the command-line client of the Engram Similarity Service. See
// client/cli/commands.h, or run `engram-cli --help`.
#include <unistd.h>

#include <iostream>

#include "client/cli/commands.h"

int main(int argc, char** argv) {
  return engram::client::cli::Main(argc, argv, std::cout, std::cerr,
                                   isatty(STDERR_FILENO) == 1);
}
