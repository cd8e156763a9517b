#include "server/call_scope.h"

#include "absl/strings/str_cat.h"

namespace engram::server {

CallScope::CallScope(grpc::CallbackServerContext* context, Method method,
                     Admission* admission, RpcMetrics* metrics)
    : context_(context),
      admission_(admission),
      metrics_(metrics),
      call_(StartRpcCall(context, method)),
      interrupt_(context, admission) {}

CallScope::~CallScope() { Release(); }

absl::Status CallScope::Admit(uint64_t cost) {
  ticket_ = admission_->Admit(cost);
  if (ticket_.verdict != Admission::Verdict::kAdmitted) {
    return AdmissionRefusal(*admission_, ticket_, context_, *metrics_);
  }
  admitted_ = true;
  metrics_->CallStarted();
  return absl::OkStatus();
}

absl::Status CallScope::Enter(uint64_t cost) {
  if (absl::Status refused = Admit(cost); !refused.ok()) return refused;
  return BeforeWork();
}

void CallScope::AddRetryPushback(absl::Duration after) {
  context_->AddTrailingMetadata(kRetryPushbackKey,
                                absl::StrCat(absl::ToInt64Milliseconds(after)));
}

void CallScope::MarkOverloaded() {
  server::MarkOverloaded(context_, *metrics_, admission_->RetryAfter());
}

void CallScope::Queued() { metrics_->Queued(); }

void CallScope::Dequeued() { metrics_->Dequeued(); }

absl::Status CallScope::BeforeWork() const {
  const absl::Status stop = interrupt_.Check();
  if (stop.ok() || absl::IsUnavailable(stop)) return stop;
  metrics_->RecordRejection(RejectReason::kAbandoned);
  return absl::Status(stop.code(),
                      absl::StrCat(stop.message(), " before its work started"));
}

absl::Status CallScope::AfterWork(absl::Status status) const {
  if (status.code() == absl::StatusCode::kCancelled ||
      status.code() == absl::StatusCode::kDeadlineExceeded) {
    metrics_->RecordInterruption(status.code());
    return status;
  }
  if (absl::Status late = interrupt_.Check(); !late.ok()) return late;
  return status;
}

grpc::Status CallScope::End(const absl::Status& status,
                            google::protobuf::Message* response) {
  if (!status.ok() && response != nullptr) response->Clear();
  if (absl::IsUnavailable(status) && admission_->stopping()) {
    AddDrainRetryPushback(context_);
  }
  if (admitted_) metrics_->CallEnded();
  return EndRpcCall(*metrics_, call_, status);
}

void CallScope::Release() {
  if (!admitted_ || released_) return;
  released_ = true;
  admission_->Release(ticket_);
}

void CallScope::Finish(UnaryCall* call, const absl::Status& status,
                       google::protobuf::Message* response) {
  call->Answer(End(status, response));
  Release();
}

}  // namespace engram::server
