#include "client/cli/credentials.h"

#include <memory>

#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "client/file_io.h"
#include "grpcpp/security/credentials.h"

namespace engram::client::cli {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const CommonOptions& common) {
  if (common.tls_ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ENGRAM_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                          ReadFileToString(common.tls_ca_file));
  if (!common.tls_cert_file.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                            ReadFileToString(common.tls_cert_file));
    ENGRAM_ASSIGN_OR_RETURN(ssl.pem_private_key,
                            ReadFileToString(common.tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace engram::client::cli
