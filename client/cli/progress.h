// engram-cli's progress display for long streamed writes (`collection
// upload`/`append`, `graph put`): a line on stderr with the bytes sent, the
// rate in rows or edges per second, the percentage and the time left at the
// rate so far. On a terminal the line is redrawn in place (carriage return);
// elsewhere, when asked for with --progress, plain lines are printed. The
// client library only reports counts (client::TransferProgress); everything
// about terminals lives here.
#ifndef ENGRAM_CLIENT_CLI_PROGRESS_H_
#define ENGRAM_CLIENT_CLI_PROGRESS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/similarity_client.h"

namespace engram::client::cli {

// How progress is shown.
enum class ProgressStyle {
  kOff,
  // One line redrawn in place with a carriage return: for a terminal.
  kInPlace,
  // One plain line per update, fewer of them: for logs and pipes.
  kLines,
};

// --quiet turns progress off; otherwise a terminal gets it in place, and
// anything else gets plain lines with --progress and nothing without.
ProgressStyle ChooseProgressStyle(bool quiet, bool forced,
                                  bool err_is_terminal);

// "512 B", "4.0 KiB", "12.3 MiB", "1.6 GiB" (binary units, one decimal).
std::string FormatBytes(uint64_t bytes);
// "0:42", "12:05", "1:02:03".
std::string FormatClock(absl::Duration duration);
// The progress text, without line ending: "12.3 MiB / 1.6 GiB  41,204
// rows/s  37%  0:42 left", `unit` naming the items ("rows", "edges"). The
// percentage and time left come from bytes when the total bytes are known,
// else from items; parts whose inputs are unknown (a total, or a rate before
// any time has passed) are left out.
std::string FormatProgress(const TransferProgress& progress,
                           absl::Duration elapsed, absl::string_view unit);
// The final text: "done: 1.6 GiB, 1,000,000 rows in 0:42, 23,809 rows/s".
std::string FormatDone(const TransferProgress& progress, absl::Duration elapsed,
                       absl::string_view unit);

// Shows the progress of one transfer on a stream (stderr). Update() is the
// client's ProgressCallback; it prints at most one line per min_interval
// (the first update always shows). Finish() prints the final line. Not
// thread-safe: one transfer, one thread, as the client calls it.
class ProgressLine {
 public:
  struct Options {
    ProgressStyle style = ProgressStyle::kInPlace;
    // The items counted: "rows" or "edges".
    std::string unit = "rows";
    // Least time between two lines shown; zero: 250ms in place (four
    // redraws a second), 1s for plain lines.
    absl::Duration min_interval = absl::ZeroDuration();
    // The time source; tests pass a fake one.
    std::function<absl::Time()> clock = [] { return absl::Now(); };
  };

  // Starts the clock. `out` must outlive this object; with kOff nothing is
  // ever written to it.
  ProgressLine(std::ostream& out, Options options);

  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Records `progress` and shows it unless a line was shown less than
  // min_interval ago.
  void Update(const TransferProgress& progress);

  // Ends the display: after a successful transfer, the final line (for
  // kInPlace over the line in place); after a failed one only ends a line
  // drawn in place, so that an error message starts on its own line.
  // Later calls do nothing.
  void Finish(bool succeeded);

  // Update as a client::ProgressCallback bound to this object, which must
  // outlive the transfer. Empty with kOff, so that the client skips the work.
  ProgressCallback Callback();

 private:
  void Show(const std::string& text, bool final);

  std::ostream& out_;
  const Options options_;
  const absl::Duration min_interval_;
  const absl::Time start_;
  TransferProgress last_;
  bool shown_any_ = false;
  absl::Time last_shown_;
  std::size_t drawn_width_ = 0;  // kInPlace: the length of the line drawn
  bool finished_ = false;
};

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_PROGRESS_H_
