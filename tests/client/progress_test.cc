// engram-cli's progress display (client/cli/progress.h) with a fake clock:
// the formatting of sizes, rates, percentages and time left, unknown
// totals, the throttling of updates in both styles, the final line, and the
// choice of style from --quiet, --progress and the terminal.
#include "client/cli/progress.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

TransferProgress At(uint64_t bytes, uint64_t items,
                    std::optional<uint64_t> total_bytes = std::nullopt,
                    std::optional<uint64_t> total_items = std::nullopt) {
  TransferProgress p;
  p.bytes_sent = bytes;
  p.items_sent = items;
  p.total_bytes = total_bytes;
  p.total_items = total_items;
  return p;
}

// A clock the test moves by hand.
class FakeClock {
 public:
  void Advance(absl::Duration d) { now_ += d; }
  std::function<absl::Time()> AsFunction() {
    return [this] { return now_; };
  }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
};

class ProgressLineTest : public ::testing::Test {
 protected:
  ProgressLine::Options Options(ProgressStyle style) {
    ProgressLine::Options options;
    options.style = style;
    options.unit = "rows";
    options.clock = clock_.AsFunction();
    return options;
  }

  FakeClock clock_;
  std::ostringstream out_;
};

TEST(ProgressFormatTest, FormatsBytesInBinaryUnits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(12 * kMiB + 3 * kMiB / 10), "12.3 MiB");
  EXPECT_EQ(FormatBytes(kGiB * 16 / 10), "1.6 GiB");
  EXPECT_EQ(FormatBytes(kMiB - 1), "1.0 MiB");  // never "1024.0 KiB"
}

TEST(ProgressFormatTest, FormatsDurationsAsAClock) {
  EXPECT_EQ(FormatClock(absl::ZeroDuration()), "0:00");
  EXPECT_EQ(FormatClock(absl::Seconds(42)), "0:42");
  EXPECT_EQ(FormatClock(absl::Seconds(725)), "12:05");
  EXPECT_EQ(FormatClock(absl::Seconds(3723)), "1:02:03");
  EXPECT_EQ(FormatClock(absl::Seconds(-5)), "0:00");
}

TEST(ProgressFormatTest, ShowsRatePercentageAndTimeLeft) {
  // 400 MiB of 1000 MiB in 10 s: 40 MiB/s, 600 MiB left = 15 s.
  EXPECT_EQ(FormatProgress(At(400 * kMiB, 412'040, 1000 * kMiB, 1'030'100),
                           absl::Seconds(10), "rows"),
            "400.0 MiB / 1000.0 MiB  41,204 rows/s  40%  0:15 left");
  // Percentages round down: 99.9% is not yet 100%.
  EXPECT_THAT(FormatProgress(At(999, 1, 1000, 1), absl::Seconds(1), "rows"),
              HasSubstr("  99%  0:01 left"));
  EXPECT_THAT(FormatProgress(At(1000, 1, 1000, 1), absl::Seconds(1), "rows"),
              HasSubstr("  100%  0:00 left"));
}

TEST(ProgressFormatTest, TakesPercentageFromBytesWhenTheirTotalIsKnown) {
  // A graph's row offsets: bytes but no edges yet.
  EXPECT_EQ(FormatProgress(At(512, 0, 2048, 100), absl::Seconds(2), "edges"),
            "512 B / 2.0 KiB  0 edges/s  25%  0:06 left");
  // Items alone when bytes have no total.
  EXPECT_EQ(
      FormatProgress(At(512, 30, std::nullopt, 120), absl::Seconds(3), "rows"),
      "512 B  10 rows/s  25%  0:09 left");
}

TEST(ProgressFormatTest, LeavesOutWhatIsUnknown) {
  // No totals: neither percentage nor time left.
  EXPECT_EQ(FormatProgress(At(3 * kMiB, 3000), absl::Seconds(2), "rows"),
            "3.0 MiB  1,500 rows/s");
  // No time yet: no rate and no time left.
  EXPECT_EQ(FormatProgress(At(1024, 1, 2048, 2), absl::ZeroDuration(), "rows"),
            "1.0 KiB / 2.0 KiB  50%");
}

TEST(ProgressFormatTest, FinalLineSaysSizeCountTimeAndRate) {
  EXPECT_EQ(FormatDone(At(kGiB * 16 / 10, 1'000'000, kGiB * 16 / 10, 1'000'000),
                       absl::Seconds(42), "rows"),
            "done: 1.6 GiB, 1,000,000 rows in 0:42, 23,810 rows/s");
  EXPECT_EQ(FormatDone(At(80, 5), absl::ZeroDuration(), "edges"),
            "done: 80 B, 5 edges in 0:00");
}

TEST(ProgressFormatTest, ChoosesTheStyle) {
  EXPECT_EQ(ChooseProgressStyle(false, false, true), ProgressStyle::kInPlace);
  EXPECT_EQ(ChooseProgressStyle(false, true, true), ProgressStyle::kInPlace);
  EXPECT_EQ(ChooseProgressStyle(false, false, false), ProgressStyle::kOff);
  EXPECT_EQ(ChooseProgressStyle(false, true, false), ProgressStyle::kLines);
  // --quiet wins.
  EXPECT_EQ(ChooseProgressStyle(true, true, true), ProgressStyle::kOff);
  EXPECT_EQ(ChooseProgressStyle(true, true, false), ProgressStyle::kOff);
}

TEST_F(ProgressLineTest, InPlaceRedrawsOneLineAtMostFourTimesASecond) {
  ProgressLine line(out_, Options(ProgressStyle::kInPlace));
  // 100 updates over 2 seconds, one every 20 ms.
  for (int i = 1; i <= 100; ++i) {
    clock_.Advance(absl::Milliseconds(20));
    line.Update(At(i * 10, i, 1000, 100));
  }
  const std::string shown = out_.str();
  const auto redraws = std::count(shown.begin(), shown.end(), '\r');
  // The first at 20 ms, then one each 250 ms: 20, 280, 540, ... 1840.
  EXPECT_EQ(redraws, 8);
  EXPECT_EQ(shown.find('\n'), std::string::npos);
  EXPECT_THAT(shown, HasSubstr("\r10 B / 1000 B  50 rows/s  1%  0:02 left"));

  clock_.Advance(absl::Milliseconds(500));
  line.Finish(true);
  const std::string done = out_.str().substr(shown.size());
  EXPECT_EQ(done.front(), '\r');
  EXPECT_EQ(done.back(), '\n');
  EXPECT_THAT(done, HasSubstr("done: 1000 B, 100 rows in 0:02, 40 rows/s"));
}

TEST_F(ProgressLineTest, InPlaceBlanksWhatALongerLineLeft) {
  ProgressLine line(out_, Options(ProgressStyle::kInPlace));
  clock_.Advance(absl::Seconds(1));
  line.Update(At(kMiB, 1'000'000));
  EXPECT_EQ(out_.str(), "\r1.0 MiB  1,000,000 rows/s");
  // The rate falls, and the line gets shorter: spaces cover the rest.
  clock_.Advance(absl::Seconds(99));
  line.Update(At(2 * kMiB, 1'000'000));
  EXPECT_EQ(out_.str(),
            "\r1.0 MiB  1,000,000 rows/s\r2.0 MiB  10,000 rows/s   ");
}

TEST_F(ProgressLineTest, LinesStyleWritesPlainLinesAtMostOnceASecond) {
  ProgressLine line(out_, Options(ProgressStyle::kLines));
  for (int i = 1; i <= 30; ++i) {
    clock_.Advance(absl::Milliseconds(100));
    line.Update(At(i, i, 30, 30));
  }
  line.Finish(true);
  const std::string shown = out_.str();
  EXPECT_EQ(shown.find('\r'), std::string::npos);
  std::vector<std::string> lines =
      absl::StrSplit(shown, '\n', absl::SkipEmpty());
  // At 0.1 s, 1.1 s and 2.1 s, then the final line.
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "1 B / 30 B  10 rows/s  3%  0:03 left");
  EXPECT_EQ(lines[1], "11 B / 30 B  10 rows/s  36%  0:02 left");
  EXPECT_EQ(lines[3], "done: 30 B, 30 rows in 0:03, 10 rows/s");
}

TEST_F(ProgressLineTest, HonoursAGivenInterval) {
  ProgressLine::Options options = Options(ProgressStyle::kLines);
  options.min_interval = absl::Seconds(5);
  ProgressLine line(out_, options);
  for (int i = 1; i <= 10; ++i) {
    clock_.Advance(absl::Seconds(1));
    line.Update(At(i, i));
  }
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, ElementsAre("1 B  1 rows/s", "6 B  1 rows/s"));
}

TEST_F(ProgressLineTest, FailureEndsAnInPlaceLineWithoutTheFinalText) {
  ProgressLine line(out_, Options(ProgressStyle::kInPlace));
  clock_.Advance(absl::Seconds(1));
  line.Update(At(10, 1, 100, 10));
  line.Finish(false);
  EXPECT_EQ(out_.str().back(), '\n');
  EXPECT_THAT(out_.str(), Not(HasSubstr("done")));
  line.Finish(true);  // already finished: nothing more
  EXPECT_THAT(out_.str(), Not(HasSubstr("done")));

  std::ostringstream lines_out;
  ProgressLine plain(lines_out, Options(ProgressStyle::kLines));
  plain.Finish(false);
  EXPECT_EQ(lines_out.str(), "");
}

TEST_F(ProgressLineTest, OffWritesNothingAndGivesNoCallback) {
  ProgressLine line(out_, Options(ProgressStyle::kOff));
  EXPECT_FALSE(static_cast<bool>(line.Callback()));
  line.Update(At(1, 1, 1, 1));
  line.Finish(true);
  EXPECT_EQ(out_.str(), "");
}

TEST_F(ProgressLineTest, CallbackFeedsUpdate) {
  ProgressLine line(out_, Options(ProgressStyle::kLines));
  ProgressCallback callback = line.Callback();
  ASSERT_TRUE(static_cast<bool>(callback));
  clock_.Advance(absl::Seconds(2));
  callback(At(4, 4, 8, 8));
  EXPECT_EQ(out_.str(), "4 B / 8 B  2 rows/s  50%  0:02 left\n");
}

}  // namespace
}  // namespace engram::client::cli
