// An in-process gRPC server for client tests: a scriptable Similarity service
// and health service on a loopback port, recording what the client sent
// (requests, upload streams, x-request-id, deadline) so tests can check the
// client's wire behaviour without the real engine. Methods it does not
// override answer UNIMPLEMENTED.
#ifndef ENGRAM_TESTS_CLIENT_FAKE_SIMILARITY_SERVER_H_
#define ENGRAM_TESTS_CLIENT_FAKE_SIMILARITY_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/server.h"
#include "grpcpp/server_context.h"

namespace engram::client::testing {

// What the fake saw of the most recent call.
struct RecordedCall {
  std::string method;                     // "BatchCosine", "Check", ...
  std::optional<std::string> request_id;  // x-request-id, when sent
  // Time left until the call's deadline when the server saw it;
  // absl::InfiniteDuration() when the call had no deadline.
  absl::Duration deadline_left = absl::InfiniteDuration();
};

// The Similarity service: answers every call with the configured status (and,
// on OK, the configured response). Thread-safe.
class FakeSimilarityService final
    : public engram::similarity::v1::Similarity::Service {
 public:
  grpc::Status BatchCosine(
      grpc::ServerContext* context,
      const engram::similarity::v1::BatchCosineRequest* request,
      engram::similarity::v1::BatchCosineResponse* response) override;
  grpc::Status Spread(
      grpc::ServerContext* context,
      const engram::similarity::v1::SpreadRequest* request,
      engram::similarity::v1::SpreadResponse* response) override;
  grpc::Status GetStats(
      grpc::ServerContext* context,
      const engram::similarity::v1::GetStatsRequest* request,
      engram::similarity::v1::GetStatsResponse* response) override;
  // Reads the whole stream, then answers.
  grpc::Status UploadCollection(
      grpc::ServerContext* context,
      grpc::ServerReader<engram::similarity::v1::UploadCollectionRequest>*
          reader,
      engram::similarity::v1::UploadCollectionResponse* response) override;
  // Reads the whole stream, then answers.
  grpc::Status PutGraph(
      grpc::ServerContext* context,
      grpc::ServerReader<engram::similarity::v1::PutGraphRequest>* reader,
      engram::similarity::v1::GraphInfo* response) override;
  grpc::Status SearchCollection(
      grpc::ServerContext* context,
      const engram::similarity::v1::SearchCollectionRequest* request,
      engram::similarity::v1::SearchCollectionResponse* response) override;
  grpc::Status UpsertRows(
      grpc::ServerContext* context,
      const engram::similarity::v1::UpsertRowsRequest* request,
      engram::similarity::v1::UpsertRowsResponse* response) override;
  grpc::Status DeleteRows(
      grpc::ServerContext* context,
      const engram::similarity::v1::DeleteRowsRequest* request,
      engram::similarity::v1::DeleteRowsResponse* response) override;

  // Every call returns `status` from now on (OK by default).
  void SetStatus(const grpc::Status& status);
  // Calls block until the client cancels them or their deadline passes,
  // then return CANCELLED, as a stuck server would.
  void SetHangUntilCancelled(bool hang);
  void SetCosineResponse(engram::similarity::v1::BatchCosineResponse response);
  void SetSpreadResponse(engram::similarity::v1::SpreadResponse response);
  void SetStatsResponse(engram::similarity::v1::GetStatsResponse response);
  void SetUploadResponse(
      engram::similarity::v1::UploadCollectionResponse response);
  void SetPutGraphResponse(engram::similarity::v1::GraphInfo response);
  void SetSearchResponse(
      engram::similarity::v1::SearchCollectionResponse response);
  void SetUpsertResponse(engram::similarity::v1::UpsertRowsResponse response);
  void SetDeleteRowsResponse(
      engram::similarity::v1::DeleteRowsResponse response);

  int calls() const;
  RecordedCall last_call() const;
  engram::similarity::v1::BatchCosineRequest last_cosine_request() const;
  engram::similarity::v1::SpreadRequest last_spread_request() const;
  // Every message of the last upload stream, the header first.
  std::vector<engram::similarity::v1::UploadCollectionRequest>
  last_upload_messages() const;
  // Every message of the last graph put stream, the header first.
  std::vector<engram::similarity::v1::PutGraphRequest> last_put_graph_messages()
      const;
  engram::similarity::v1::SearchCollectionRequest last_search_request() const;
  engram::similarity::v1::UpsertRowsRequest last_upsert_request() const;
  engram::similarity::v1::DeleteRowsRequest last_delete_rows_request() const;

 private:
  // Records the call and returns the status it should end with.
  grpc::Status Begin(absl::string_view method, grpc::ServerContext* context);

  mutable absl::Mutex mu_;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  RecordedCall last_call_ ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::BatchCosineRequest last_cosine_ ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::SpreadRequest last_spread_ ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::BatchCosineResponse cosine_response_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::SpreadResponse spread_response_ ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::GetStatsResponse stats_response_ ABSL_GUARDED_BY(mu_);
  std::vector<engram::similarity::v1::UploadCollectionRequest> last_upload_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::UploadCollectionResponse upload_response_
      ABSL_GUARDED_BY(mu_);
  std::vector<engram::similarity::v1::PutGraphRequest> last_put_graph_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::GraphInfo put_graph_response_ ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::SearchCollectionRequest last_search_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::SearchCollectionResponse search_response_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::UpsertRowsRequest last_upsert_ ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::UpsertRowsResponse upsert_response_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::DeleteRowsRequest last_delete_rows_
      ABSL_GUARDED_BY(mu_);
  engram::similarity::v1::DeleteRowsResponse delete_rows_response_
      ABSL_GUARDED_BY(mu_);
};

// grpc.health.v1.Health/Check answering from a table; a service not in the
// table gets NOT_FOUND, as the health protocol specifies. Thread-safe.
class FakeHealthService final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;

  void SetStatus(const std::string& service,
                 grpc::health::v1::HealthCheckResponse::ServingStatus status);
  RecordedCall last_call() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, grpc::health::v1::HealthCheckResponse::ServingStatus>
      statuses_ ABSL_GUARDED_BY(mu_);
  RecordedCall last_call_ ABSL_GUARDED_BY(mu_);
};

// Both services on 127.0.0.1 at a port the kernel picks. Shuts down on
// destruction, cancelling calls still hanging.
class FakeSimilarityServer {
 public:
  // Null when the server cannot start.
  static std::unique_ptr<FakeSimilarityServer> Start();
  ~FakeSimilarityServer();

  // "127.0.0.1:<port>".
  const std::string& target() const { return target_; }
  FakeSimilarityService& similarity() { return similarity_; }
  FakeHealthService& health() { return health_; }

 private:
  FakeSimilarityServer() = default;

  FakeSimilarityService similarity_;
  FakeHealthService health_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

}  // namespace engram::client::testing

#endif  // ENGRAM_TESTS_CLIENT_FAKE_SIMILARITY_SERVER_H_
