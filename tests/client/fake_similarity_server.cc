#include "tests/client/fake_similarity_server.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace engram::client::testing {
namespace {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;

// A hanging call gives up after this long even if never cancelled, so a
// broken client fails its test instead of hanging the suite.
constexpr absl::Duration kMaxHang = absl::Seconds(10);

RecordedCall Record(absl::string_view method, grpc::ServerContext* context) {
  RecordedCall call;
  call.method = std::string(method);
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("x-request-id");
  if (it != metadata.end()) {
    call.request_id = std::string(it->second.data(), it->second.size());
  }
  // Without a deadline gRPC reports the far future; a year stands for that.
  const absl::Duration left =
      absl::FromChrono(context->deadline() - std::chrono::system_clock::now());
  call.deadline_left =
      left > absl::Hours(24 * 365) ? absl::InfiniteDuration() : left;
  return call;
}

}  // namespace

grpc::Status FakeSimilarityService::Begin(absl::string_view method,
                                          grpc::ServerContext* context) {
  bool hang;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    ++calls_;
    last_call_ = Record(method, context);
    hang = hang_;
    status = status_;
  }
  if (!hang) return status;
  const absl::Time give_up = absl::Now() + kMaxHang;
  while (!context->IsCancelled() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while hanging");
}

grpc::Status FakeSimilarityService::BatchCosine(
    grpc::ServerContext* context, const v1::BatchCosineRequest* request,
    v1::BatchCosineResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_cosine_ = *request;
    *response = cosine_response_;
  }
  return Begin("BatchCosine", context);
}

grpc::Status FakeSimilarityService::Spread(grpc::ServerContext* context,
                                           const v1::SpreadRequest* request,
                                           v1::SpreadResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_spread_ = *request;
    *response = spread_response_;
  }
  return Begin("Spread", context);
}

grpc::Status FakeSimilarityService::GetStats(grpc::ServerContext* context,
                                             const v1::GetStatsRequest* request,
                                             v1::GetStatsResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    *response = stats_response_;
  }
  return Begin("GetStats", context);
}

grpc::Status FakeSimilarityService::UploadCollection(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::UploadCollectionRequest>* reader,
    v1::UploadCollectionResponse* response) {
  std::vector<v1::UploadCollectionRequest> messages;
  v1::UploadCollectionRequest message;
  while (reader->Read(&message)) messages.push_back(message);
  {
    absl::MutexLock lock(&mu_);
    last_upload_ = std::move(messages);
    *response = upload_response_;
  }
  return Begin("UploadCollection", context);
}

grpc::Status FakeSimilarityService::PutGraph(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::PutGraphRequest>* reader, v1::GraphInfo* response) {
  std::vector<v1::PutGraphRequest> messages;
  v1::PutGraphRequest message;
  while (reader->Read(&message)) messages.push_back(message);
  {
    absl::MutexLock lock(&mu_);
    last_put_graph_ = std::move(messages);
    *response = put_graph_response_;
  }
  return Begin("PutGraph", context);
}

grpc::Status FakeSimilarityService::SearchCollection(
    grpc::ServerContext* context, const v1::SearchCollectionRequest* request,
    v1::SearchCollectionResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_search_ = *request;
    *response = search_response_;
  }
  return Begin("SearchCollection", context);
}

grpc::Status FakeSimilarityService::UpsertRows(
    grpc::ServerContext* context, const v1::UpsertRowsRequest* request,
    v1::UpsertRowsResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_upsert_ = *request;
    *response = upsert_response_;
  }
  return Begin("UpsertRows", context);
}

grpc::Status FakeSimilarityService::DeleteRows(
    grpc::ServerContext* context, const v1::DeleteRowsRequest* request,
    v1::DeleteRowsResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    last_delete_rows_ = *request;
    *response = delete_rows_response_;
  }
  return Begin("DeleteRows", context);
}

void FakeSimilarityService::SetStatus(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  status_ = status;
}

void FakeSimilarityService::SetHangUntilCancelled(bool hang) {
  absl::MutexLock lock(&mu_);
  hang_ = hang;
}

void FakeSimilarityService::SetCosineResponse(
    v1::BatchCosineResponse response) {
  absl::MutexLock lock(&mu_);
  cosine_response_ = std::move(response);
}

void FakeSimilarityService::SetSpreadResponse(v1::SpreadResponse response) {
  absl::MutexLock lock(&mu_);
  spread_response_ = std::move(response);
}

void FakeSimilarityService::SetStatsResponse(v1::GetStatsResponse response) {
  absl::MutexLock lock(&mu_);
  stats_response_ = std::move(response);
}

void FakeSimilarityService::SetUploadResponse(
    v1::UploadCollectionResponse response) {
  absl::MutexLock lock(&mu_);
  upload_response_ = std::move(response);
}

void FakeSimilarityService::SetPutGraphResponse(v1::GraphInfo response) {
  absl::MutexLock lock(&mu_);
  put_graph_response_ = std::move(response);
}

void FakeSimilarityService::SetSearchResponse(
    v1::SearchCollectionResponse response) {
  absl::MutexLock lock(&mu_);
  search_response_ = std::move(response);
}

void FakeSimilarityService::SetUpsertResponse(v1::UpsertRowsResponse response) {
  absl::MutexLock lock(&mu_);
  upsert_response_ = std::move(response);
}

void FakeSimilarityService::SetDeleteRowsResponse(
    v1::DeleteRowsResponse response) {
  absl::MutexLock lock(&mu_);
  delete_rows_response_ = std::move(response);
}

int FakeSimilarityService::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

RecordedCall FakeSimilarityService::last_call() const {
  absl::MutexLock lock(&mu_);
  return last_call_;
}

v1::BatchCosineRequest FakeSimilarityService::last_cosine_request() const {
  absl::MutexLock lock(&mu_);
  return last_cosine_;
}

v1::SpreadRequest FakeSimilarityService::last_spread_request() const {
  absl::MutexLock lock(&mu_);
  return last_spread_;
}

std::vector<v1::UploadCollectionRequest>
FakeSimilarityService::last_upload_messages() const {
  absl::MutexLock lock(&mu_);
  return last_upload_;
}

std::vector<v1::PutGraphRequest>
FakeSimilarityService::last_put_graph_messages() const {
  absl::MutexLock lock(&mu_);
  return last_put_graph_;
}

v1::SearchCollectionRequest FakeSimilarityService::last_search_request() const {
  absl::MutexLock lock(&mu_);
  return last_search_;
}

v1::UpsertRowsRequest FakeSimilarityService::last_upsert_request() const {
  absl::MutexLock lock(&mu_);
  return last_upsert_;
}

v1::DeleteRowsRequest FakeSimilarityService::last_delete_rows_request() const {
  absl::MutexLock lock(&mu_);
  return last_delete_rows_;
}

grpc::Status FakeHealthService::Check(grpc::ServerContext* context,
                                      const health::HealthCheckRequest* request,
                                      health::HealthCheckResponse* response) {
  absl::MutexLock lock(&mu_);
  last_call_ = Record("Check", context);
  auto it = statuses_.find(request->service());
  if (it == statuses_.end()) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("unknown service '", request->service(), "'"));
  }
  response->set_status(it->second);
  return grpc::Status::OK;
}

void FakeHealthService::SetStatus(
    const std::string& service,
    health::HealthCheckResponse::ServingStatus status) {
  absl::MutexLock lock(&mu_);
  statuses_[service] = status;
}

RecordedCall FakeHealthService::last_call() const {
  absl::MutexLock lock(&mu_);
  return last_call_;
}

std::unique_ptr<FakeSimilarityServer> FakeSimilarityServer::Start() {
  std::unique_ptr<FakeSimilarityServer> fake(new FakeSimilarityServer());
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&fake->similarity_);
  builder.RegisterService(&fake->health_);
  fake->server_ = builder.BuildAndStart();
  if (fake->server_ == nullptr || port == 0) return nullptr;
  fake->target_ = absl::StrCat("127.0.0.1:", port);
  return fake;
}

FakeSimilarityServer::~FakeSimilarityServer() {
  if (server_ == nullptr) return;
  // An immediate deadline cancels calls still in flight, e.g. hanging ones.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
}

}  // namespace engram::client::testing
