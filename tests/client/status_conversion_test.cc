// FromGrpcStatus and CodeName: codes and messages survive the conversion, and
// every canonical code has its gRPC name.
#include "client/status_conversion.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

class StatusConversionTest : public ::testing::Test {};

TEST_F(StatusConversionTest, OkStaysOk) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST_F(StatusConversionTest, EveryErrorCodeKeepsCodeAndMessage) {
  for (int code = 1; code <= 16; ++code) {
    const grpc::Status status(static_cast<grpc::StatusCode>(code), "because");
    const absl::Status converted = FromGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(converted.code()), code);
    EXPECT_EQ(converted.message(), "because");
  }
}

TEST_F(StatusConversionTest, CodeOutsideCanonicalRangeBecomesUnknown) {
  // 20 is beyond the canonical codes yet a valid grpc::StatusCode value (the
  // enum's range covers 0-31), as a non-conforming server could send.
  const grpc::Status status(static_cast<grpc::StatusCode>(20), "odd");
  const absl::Status converted = FromGrpcStatus(status);
  EXPECT_EQ(converted.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(converted.message(), "odd");
}

TEST_F(StatusConversionTest, CodeNameIsTheCanonicalGrpcName) {
  const std::vector<std::pair<absl::StatusCode, const char*>> names = {
      {absl::StatusCode::kOk, "OK"},
      {absl::StatusCode::kCancelled, "CANCELLED"},
      {absl::StatusCode::kUnknown, "UNKNOWN"},
      {absl::StatusCode::kInvalidArgument, "INVALID_ARGUMENT"},
      {absl::StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED"},
      {absl::StatusCode::kNotFound, "NOT_FOUND"},
      {absl::StatusCode::kAlreadyExists, "ALREADY_EXISTS"},
      {absl::StatusCode::kPermissionDenied, "PERMISSION_DENIED"},
      {absl::StatusCode::kResourceExhausted, "RESOURCE_EXHAUSTED"},
      {absl::StatusCode::kFailedPrecondition, "FAILED_PRECONDITION"},
      {absl::StatusCode::kAborted, "ABORTED"},
      {absl::StatusCode::kOutOfRange, "OUT_OF_RANGE"},
      {absl::StatusCode::kUnimplemented, "UNIMPLEMENTED"},
      {absl::StatusCode::kInternal, "INTERNAL"},
      {absl::StatusCode::kUnavailable, "UNAVAILABLE"},
      {absl::StatusCode::kDataLoss, "DATA_LOSS"},
      {absl::StatusCode::kUnauthenticated, "UNAUTHENTICATED"},
  };
  for (const auto& [code, name] : names) EXPECT_EQ(CodeName(code), name);
  EXPECT_EQ(CodeName(static_cast<absl::StatusCode>(99)), "UNKNOWN");
}

}  // namespace
}  // namespace engram::client
