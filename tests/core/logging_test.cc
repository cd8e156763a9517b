#include "core/logging.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace engram::core {
namespace {

constexpr char kTraceparent[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(LoggingTest, ParsesLevelNamesCaseInsensitively) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("WARNING"), LogLevel::kWarning);
  EXPECT_FALSE(ParseLogLevel("loud").ok());
}

TEST(LoggingTest, LevelFiltersLowerLevels) {
  SetLogLevel(LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
}

TEST(LoggingTest, EveryLineParsesWhateverItsFieldsHold) {
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kInfo, "quote\" backslash\\ newline\n control\x01",
      {{"name", "not utf-8: \xff\xfe end"}, {"tab", "a\tb"}});
  const std::vector<std::string> lines =
      Lines(::testing::internal::GetCapturedStderr());
  ASSERT_EQ(lines.size(), 1u);
  const auto parsed = nlohmann::ordered_json::parse(lines[0], nullptr,
                                                    /*allow_exceptions=*/false);
  ASSERT_FALSE(parsed.is_discarded()) << lines[0];
  EXPECT_EQ(parsed["event"], "quote\" backslash\\ newline\n control\x01");
  EXPECT_EQ(parsed["tab"], "a\tb");
  // Bytes that are not UTF-8 become U+FFFD rather than an unparsable line.
  EXPECT_EQ(parsed["name"], "not utf-8: \xef\xbf\xbd\xef\xbf\xbd end");
  std::vector<std::string> keys;
  for (const auto& item : parsed.items()) keys.push_back(item.key());
  EXPECT_THAT(keys,
              ::testing::ElementsAre("ts", "level", "event", "name", "tab"));
}

TEST(LoggingTest, WritesOneJsonObjectPerLine) {
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kWarning, "breaker \"open\"", {{"reason", "oom"}});
  const std::string line = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.substr(line.size() - 2), "}\n");
  EXPECT_NE(line.find("\"level\":\"warning\""), std::string::npos);
  EXPECT_NE(line.find("\"event\":\"breaker \\\"open\\\"\""), std::string::npos);
  EXPECT_NE(line.find("\"reason\":\"oom\""), std::string::npos);
}

TEST(LoggingTest, LinesCarryTheRequestContextOfTheirThread) {
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kInfo, "before");
  {
    const ScopedLogContext outer("req-1", kTraceparent);
    EXPECT_EQ(CurrentRequestId(), "req-1");
    Log(LogLevel::kInfo, "inside");
    {
      const ScopedLogContext inner("req-2", "");
      Log(LogLevel::kInfo, "nested");
    }
    // Another thread has a context of its own (none).
    std::thread([] { Log(LogLevel::kInfo, "other_thread"); }).join();
    Log(LogLevel::kInfo, "inside_again");
  }
  Log(LogLevel::kInfo, "after");
  EXPECT_EQ(CurrentRequestId(), "");
  const std::vector<std::string> lines =
      Lines(::testing::internal::GetCapturedStderr());
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_FALSE(Contains(lines[0], "request_id"));
  EXPECT_TRUE(Contains(lines[1], "\"request_id\":\"req-1\""));
  EXPECT_TRUE(Contains(
      lines[1], std::string("\"traceparent\":\"") + kTraceparent + "\""));
  EXPECT_TRUE(Contains(lines[2], "\"request_id\":\"req-2\""));
  EXPECT_FALSE(Contains(lines[2], "traceparent"));
  EXPECT_FALSE(Contains(lines[3], "request_id"));
  EXPECT_TRUE(Contains(lines[4], "\"request_id\":\"req-1\""));
  EXPECT_FALSE(Contains(lines[5], "request_id"));
}

TEST(LoggingTest, AcceptsOnlyWellFormedTraceparents) {
  EXPECT_TRUE(IsValidTraceparent(kTraceparent));
  // Upper case, a wrong version, all-zero ids, wrong lengths, separators.
  EXPECT_FALSE(IsValidTraceparent(
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(IsValidTraceparent(
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(IsValidTraceparent(
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  EXPECT_FALSE(IsValidTraceparent(
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
  EXPECT_FALSE(IsValidTraceparent(
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"));
  EXPECT_FALSE(IsValidTraceparent(
      "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"));
  EXPECT_FALSE(IsValidTraceparent(""));
}

TEST(LogRateLimiterTest, AllowsABurstThenTheRefillRate) {
  LogRateLimiter limiter({/*burst=*/3, /*per_second=*/2, /*max_keys=*/8});
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Admit("gpu_oom", t0), 0);
  EXPECT_EQ(limiter.Admit("gpu_oom", t0), -1);
  EXPECT_EQ(limiter.Admit("gpu_oom", t0 + absl::Milliseconds(100)), -1);
  // Half a second refills one token: the line passes and reports the two
  // lines dropped since the last one written.
  EXPECT_EQ(limiter.Admit("gpu_oom", t0 + absl::Milliseconds(500)), 2);
  EXPECT_EQ(limiter.Admit("gpu_oom", t0 + absl::Milliseconds(500)), -1);
  // Never more than the burst, however long the pause.
  const absl::Time later = t0 + absl::Hours(1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter.Admit("gpu_oom", later), i == 0 ? 1 : 0);
  }
  EXPECT_EQ(limiter.Admit("gpu_oom", later), -1);
}

TEST(LogRateLimiterTest, EventsHaveTheirOwnBuckets) {
  LogRateLimiter limiter({/*burst=*/1, /*per_second=*/0, /*max_keys=*/8});
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_EQ(limiter.Admit("gpu_fallback", t0), 0);
  EXPECT_EQ(limiter.Admit("gpu_fallback", t0), -1);
  // A storm of fallbacks does not silence the breaker.
  EXPECT_EQ(limiter.Admit("circuit_breaker", t0), 0);
}

TEST(LogRateLimiterTest, KeysBeyondTheBoundShareOneBucket) {
  LogRateLimiter limiter({/*burst=*/1, /*per_second=*/0, /*max_keys=*/3});
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_EQ(limiter.Admit("a", t0), 0);
  EXPECT_EQ(limiter.Admit("b", t0), 0);
  // The third slot is the shared one: "c" takes its token, "d" finds none.
  EXPECT_EQ(limiter.Admit("c", t0), 0);
  EXPECT_EQ(limiter.Admit("d", t0), -1);
}

TEST(LogRateLimiterTest, SetLogRateLimitRejectsBadOptions) {
  EXPECT_FALSE(SetLogRateLimit({/*burst=*/0, /*per_second=*/1}).ok());
  EXPECT_FALSE(SetLogRateLimit({/*burst=*/5, /*per_second=*/-1}).ok());
  EXPECT_TRUE(SetLogRateLimit(LogRateLimiter::Options{}).ok());
}

TEST(LogLimitedTest, DropsLinesBeyondTheBurstAndKeepsOthers) {
  ASSERT_TRUE(SetLogRateLimit({/*burst=*/2, /*per_second=*/0}).ok());
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) {
    LogLimited(LogLevel::kWarning, "storm", {{"i", std::to_string(i)}});
  }
  LogLimited(LogLevel::kWarning, "calm");
  // Below the level, nothing is written and no token is spent.
  LogLimited(LogLevel::kDebug, "quiet");
  const std::vector<std::string> lines =
      Lines(::testing::internal::GetCapturedStderr());
  ASSERT_TRUE(SetLogRateLimit(LogRateLimiter::Options{}).ok());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(Contains(lines[0], "\"i\":\"0\""));
  EXPECT_TRUE(Contains(lines[1], "\"i\":\"1\""));
  EXPECT_TRUE(Contains(lines[2], "\"event\":\"calm\""));
}

TEST(LogLimitedTest, TheLineAfterAPauseCountsWhatWasSuppressed) {
  // 100 lines per second: the storm outruns it, a 50 ms pause refills the
  // single token for sure.
  ASSERT_TRUE(SetLogRateLimit({/*burst=*/1, /*per_second=*/100}).ok());
  ::testing::internal::CaptureStderr();
  int written_or_counted = 0;
  for (int i = 0; i < 200; ++i) LogLimited(LogLevel::kWarning, "storm");
  absl::SleepFor(absl::Milliseconds(50));
  LogLimited(LogLevel::kWarning, "storm");
  const std::vector<std::string> lines =
      Lines(::testing::internal::GetCapturedStderr());
  ASSERT_TRUE(SetLogRateLimit(LogRateLimiter::Options{}).ok());
  // Every one of the 201 events is either a line or counted in the
  // "suppressed" field of a later line.
  for (const std::string& line : lines) {
    ++written_or_counted;
    const size_t at = line.find("\"suppressed\":\"");
    if (at != std::string::npos) {
      written_or_counted += std::stoi(line.substr(at + 14));
    }
  }
  EXPECT_EQ(written_or_counted, 201);
  EXPECT_LT(lines.size(), 201u);
}

}  // namespace
}  // namespace engram::core
