#include "client/similarity_client.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "client/status_conversion.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "kernels/status_macros.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;

absl::Status ValidateTimeout(absl::Duration timeout, absl::string_view what) {
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be positive, got ", absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view request_id) {
  for (char c : request_id) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "request id must be printable ASCII (0x20-0x7E) to travel as gRPC "
          "metadata");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimilarityClient>> SimilarityClient::Create(
    const Options& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("target must not be empty");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateTimeout(options.timeout, "timeout"));
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes must be positive, got ", options.max_message_bytes));
  }
  // Only the policies that need no further service config are accepted, so a
  // typo fails here instead of silently falling back to pick_first.
  const std::string& policy = options.load_balancing_policy;
  if (!policy.empty() && policy != "pick_first" && policy != "round_robin") {
    return absl::InvalidArgumentError(
        absl::StrCat("load_balancing_policy must be empty, \"pick_first\" or "
                     "\"round_robin\", got \"",
                     policy, "\""));
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (!options.service_config_json.empty()) {
    args.SetServiceConfigJSON(options.service_config_json);
  }
  if (!policy.empty()) args.SetLoadBalancingPolicyName(policy);
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials
                                     : grpc::InsecureChannelCredentials();
  return absl::WrapUnique(new SimilarityClient(
      grpc::CreateCustomChannel(options.target, credentials, args),
      options.timeout));
}

absl::StatusOr<std::unique_ptr<SimilarityClient>>
SimilarityClient::CreateFromChannel(std::shared_ptr<grpc::Channel> channel,
                                    absl::Duration timeout) {
  if (channel == nullptr) {
    return absl::InvalidArgumentError("channel must not be null");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateTimeout(timeout, "timeout"));
  return absl::WrapUnique(new SimilarityClient(std::move(channel), timeout));
}

SimilarityClient::SimilarityClient(std::shared_ptr<grpc::Channel> channel,
                                   absl::Duration timeout)
    : channel_(std::move(channel)),
      timeout_(timeout),
      stub_(v1::Similarity::NewStub(channel_)),
      health_stub_(health::Health::NewStub(channel_)) {}

absl::Status SimilarityClient::PrepareContext(
    const CallOptions& call, grpc::ClientContext* context) const {
  const absl::Duration timeout = call.timeout.value_or(timeout_);
  ENGRAM_RETURN_IF_ERROR(ValidateTimeout(timeout, "call timeout"));
  ENGRAM_RETURN_IF_ERROR(ValidateRequestId(call.request_id));
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  if (!call.request_id.empty()) {
    context->AddMetadata(kRequestIdMetadataKey, call.request_id);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::BatchCosineResponse> SimilarityClient::BatchCosine(
    const v1::BatchCosineRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::BatchCosineResponse response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->BatchCosine(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::SpreadResponse> SimilarityClient::Spread(
    const v1::SpreadRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::SpreadResponse response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->Spread(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::GetStatsResponse> SimilarityClient::GetStats(
    const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::GetStatsResponse response;
  ENGRAM_RETURN_IF_ERROR(FromGrpcStatus(
      stub_->GetStats(&context, v1::GetStatsRequest(), &response)));
  return response;
}

absl::StatusOr<health::HealthCheckResponse::ServingStatus>
SimilarityClient::Health(const std::string& service,
                         const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus(health_stub_->Check(&context, request, &response)));
  return response.status();
}

}  // namespace engram::client
