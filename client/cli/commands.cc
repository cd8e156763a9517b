#include "client/cli/commands.h"

#include <algorithm>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli/credentials.h"
#include "client/cli/flags.h"
#include "client/cli/invocation.h"
#include "client/cli/load_generator.h"
#include "client/cli/output.h"
#include "client/cli/progress.h"
#include "client/cli/request_builders.h"
#include "client/cli/resident_commands.h"
#include "client/similarity_client.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/security/credentials.h"

namespace engram::client::cli {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;

int Run(const Invocation& invocation, std::ostream& out, std::ostream& err,
        bool err_is_terminal) {
  if (!invocation.subcommand.has_value()) {
    err << FormatError(UsageError("missing subcommand")) << "\n";
    return kExitUsage;
  }
  const Subcommand subcommand = *invocation.subcommand;

  if (subcommand == Subcommand::kBench) {
    return RunBenchCommand(invocation, out, err);
  }

  // Requests are built before connecting so that bad input never reaches
  // the network and always exits with kExitUsage.
  v1::BatchCosineRequest cosine_request;
  v1::SpreadRequest spread_request;
  if (subcommand == Subcommand::kCosine || subcommand == Subcommand::kSpread) {
    absl::Status built;
    if (subcommand == Subcommand::kCosine) {
      absl::StatusOr<v1::BatchCosineRequest> request =
          BuildCosineRequest(invocation.cosine);
      built = request.status();
      if (request.ok()) cosine_request = *std::move(request);
    } else {
      absl::StatusOr<v1::SpreadRequest> request =
          BuildSpreadRequest(invocation.spread);
      built = request.status();
      if (request.ok()) spread_request = *std::move(request);
    }
    if (!built.ok()) {
      err << FormatError(built) << "\n";
      return kExitUsage;
    }
  }

  ResidentInput resident;
  if (TakesAction(subcommand)) {
    absl::StatusOr<ResidentInput> built = BuildResidentInput(invocation);
    if (!built.ok()) {
      err << FormatError(built.status()) << "\n";
      return kExitUsage;
    }
    resident = *std::move(built);
  }

  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFor(invocation.common);
  if (!credentials.ok()) {
    err << FormatError(credentials.status()) << "\n";
    return kExitUsage;
  }
  SimilarityClient::Options options;
  options.target = invocation.common.server;
  options.timeout = invocation.common.timeout;
  options.credentials = *credentials;
  options.tls_server_name = invocation.common.tls_server_name;
  absl::StatusOr<std::unique_ptr<SimilarityClient>> client =
      SimilarityClient::Create(options);
  if (!client.ok()) {
    err << FormatError(client.status()) << "\n";
    return kExitUsage;
  }
  CallOptions call;
  call.request_id = invocation.common.request_id;

  switch (subcommand) {
    case Subcommand::kCosine:
      return PrintResponse((*client)->BatchCosine(cosine_request, call), out,
                           err);
    case Subcommand::kSpread:
      return PrintResponse((*client)->Spread(spread_request, call), out, err);
    case Subcommand::kStats:
      return PrintResponse((*client)->GetStats(call), out, err);
    case Subcommand::kBench:
      break;  // Handled above.
    case Subcommand::kCollection:
    case Subcommand::kGraph:
      return RunResident(
          invocation, resident, **client, call, out, err,
          ChooseProgressStyle(invocation.common.quiet,
                              invocation.common.progress, err_is_terminal));
    case Subcommand::kHealth: {
      absl::StatusOr<health::HealthCheckResponse::ServingStatus> status =
          (*client)->Health(invocation.health.service, call);
      absl::StatusOr<health::HealthCheckResponse> response;
      if (status.ok()) {
        health::HealthCheckResponse message;
        message.set_status(*status);
        response = std::move(message);
      } else {
        response = status.status();
      }
      const int code = PrintResponse(response, out, err);
      if (code != kExitOk) return code;
      return *status == health::HealthCheckResponse::SERVING ? kExitOk
                                                             : kExitRpcError;
    }
  }
  return kExitUsage;  // Unreachable: the switch covers every subcommand.
}

int Main(int argc, char** argv, std::ostream& out, std::ostream& err,
         bool err_is_terminal) {
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  absl::StatusOr<Invocation> invocation = ParseArgs(args);
  if (!invocation.ok()) {
    err << FormatError(invocation.status()) << "\n"
        << "run 'engram-cli --help' for usage\n";
    return kExitUsage;
  }
  if (invocation->help) {
    out << UsageText(invocation->subcommand);
    return kExitOk;
  }
  return Run(*invocation, out, err, err_is_terminal);
}

}  // namespace engram::client::cli
