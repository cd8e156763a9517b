// The channel credentials of engram-cli's TLS flags, shared by the commands
// that go through SimilarityClient and the load generator, which opens its
// own channel.
#ifndef ENGRAM_CLIENT_CLI_CREDENTIALS_H_
#define ENGRAM_CLIENT_CLI_CREDENTIALS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "client/cli/invocation.h"
#include "grpcpp/security/credentials.h"

namespace engram::client::cli {

// The channel credentials `common` asks for: TLS (with a client certificate
// for mutual TLS) when a CA file is given, else plaintext. An error names an
// unreadable file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const CommonOptions& common);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_CREDENTIALS_H_
