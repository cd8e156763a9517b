#include "server/admission.h"

#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/time_scale.h"

namespace engram::server {
namespace {

using ::engram::testing::Scaled;

std::unique_ptr<Admission> Make(int max_requests, uint64_t max_bytes) {
  Admission::Options options;
  options.max_requests = max_requests;
  options.max_bytes = max_bytes;
  options.min_retry_after = absl::Milliseconds(5);
  options.max_retry_after = absl::Seconds(1);
  auto admission = Admission::Create(options);
  EXPECT_TRUE(admission.ok()) << admission.status();
  return *std::move(admission);
}

TEST(AdmissionTest, RefusesBeyondTheRequestBoundWithARetryHint) {
  auto admission = Make(2, 1 << 30);
  const Admission::Ticket a = admission->Admit(10);
  const Admission::Ticket b = admission->Admit(10);
  const Admission::Ticket c = admission->Admit(10);
  EXPECT_EQ(a.verdict, Admission::Verdict::kAdmitted);
  EXPECT_EQ(b.verdict, Admission::Verdict::kAdmitted);
  EXPECT_EQ(c.verdict, Admission::Verdict::kOverloaded);
  EXPECT_GE(c.retry_after, absl::Milliseconds(5));
  EXPECT_LE(c.retry_after, absl::Seconds(1));
  EXPECT_EQ(admission->inflight_requests(), 2);
  admission->Release(a);
  EXPECT_EQ(admission->Admit(10).verdict, Admission::Verdict::kAdmitted);
}

TEST(AdmissionTest, RefusesBeyondTheByteBound) {
  auto admission = Make(100, 1000);
  const Admission::Ticket a = admission->Admit(600);
  EXPECT_EQ(a.verdict, Admission::Verdict::kAdmitted);
  EXPECT_EQ(admission->Admit(500).verdict, Admission::Verdict::kOverloaded);
  const Admission::Ticket b = admission->Admit(400);
  EXPECT_EQ(b.verdict, Admission::Verdict::kAdmitted);
  EXPECT_EQ(admission->inflight_bytes(), 1000u);
  admission->Release(a);
  admission->Release(b);
  EXPECT_EQ(admission->inflight_bytes(), 0u);
  EXPECT_EQ(admission->inflight_requests(), 0);
}

TEST(AdmissionTest, ACallAloneIsAdmittedWhateverItsCost) {
  auto admission = Make(4, 1000);
  const Admission::Ticket big = admission->Admit(1 << 20);
  EXPECT_EQ(big.verdict, Admission::Verdict::kAdmitted);
  EXPECT_EQ(admission->Admit(1).verdict, Admission::Verdict::kOverloaded);
  admission->Release(big);
  EXPECT_EQ(admission->Admit(1).verdict, Admission::Verdict::kAdmitted);
}

TEST(AdmissionTest, RetryHintFollowsHowLongCallsHoldTheirPlace) {
  auto admission = Make(1, 1 << 30);
  for (int i = 0; i < 3; ++i) {
    const Admission::Ticket t = admission->Admit(1);
    ASSERT_EQ(t.verdict, Admission::Verdict::kAdmitted);
    absl::SleepFor(absl::Milliseconds(40));
    admission->Release(t);
  }
  const Admission::Ticket held = admission->Admit(1);
  const Admission::Ticket refused = admission->Admit(1);
  ASSERT_EQ(refused.verdict, Admission::Verdict::kOverloaded);
  EXPECT_GE(refused.retry_after, absl::Milliseconds(40));
  EXPECT_LE(refused.retry_after, absl::Seconds(1));
  admission->Release(held);
}

// A call in flight as the drain sees it: records whether it was stopped.
class FakeCall final : public Admission::Call {
 public:
  void StopForDrain() override { ++stops; }
  int stops = 0;
};

TEST(AdmissionTest, DrainingRefusesNewArrivalsAndWaitsForArrivedCalls) {
  auto admission = Make(8, 1 << 30);
  FakeCall early;
  FakeCall late;
  ASSERT_TRUE(admission->Arrive(&early));
  admission->StartDraining();
  EXPECT_TRUE(admission->draining());
  EXPECT_FALSE(admission->Arrive(&late));
  EXPECT_EQ(admission->arrived_calls(), 1);
  // A call that arrived before the drain is still admitted: its request may
  // have been in transit when the drain began.
  const Admission::Ticket t = admission->Admit(1);
  EXPECT_EQ(t.verdict, Admission::Verdict::kAdmitted);
  admission->Release(t);
  EXPECT_FALSE(admission->WaitForDrain(absl::Now() + absl::Milliseconds(20)));
  std::thread leave([&] {
    absl::SleepFor(absl::Milliseconds(20));
    admission->Leave(&early);
  });
  EXPECT_TRUE(admission->WaitForDrain(absl::Now() + Scaled(absl::Seconds(10))));
  leave.join();
  EXPECT_EQ(early.stops, 0);
  EXPECT_FALSE(admission->stopping());
}

TEST(AdmissionTest, StopCallsStopsEveryCallStillInFlight) {
  auto admission = Make(8, 1 << 30);
  FakeCall done;
  FakeCall running;
  FakeCall waiting;
  ASSERT_TRUE(admission->Arrive(&done));
  ASSERT_TRUE(admission->Arrive(&running));
  ASSERT_TRUE(admission->Arrive(&waiting));
  admission->StartDraining();
  admission->Leave(&done);
  EXPECT_FALSE(admission->stopping());
  admission->StopCalls();
  EXPECT_TRUE(admission->stopping());
  EXPECT_EQ(done.stops, 0);
  EXPECT_EQ(running.stops, 1);
  EXPECT_EQ(waiting.stops, 1);
  admission->Leave(&running);
  admission->Leave(&waiting);
  EXPECT_TRUE(admission->WaitForDrain(absl::Now()));
}

TEST(AdmissionTest, OptionsAreValidated) {
  Admission::Options bad;
  bad.max_requests = 0;
  EXPECT_EQ(Admission::Create(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = Admission::Options{};
  bad.max_bytes = 0;
  EXPECT_EQ(Admission::Create(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = Admission::Options{};
  bad.min_retry_after = absl::Seconds(2);
  bad.max_retry_after = absl::Seconds(1);
  EXPECT_EQ(Admission::Create(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram::server
