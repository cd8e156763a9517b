// SIGTERM while calls are still arriving, against the real engram-server
// binary: every call whose headers reached the server before the signal
// either completes OK or ends UNAVAILABLE with a grpc-retry-pushback-ms
// trailer (a non-negative integer), within --drain_deadline; none ends
// CANCELLED, DEADLINE_EXCEEDED or otherwise, and the process exits 0.
//
// - Large BatchCosine calls (tens of MB each) with the signal landing at a
//   random instant while their request bytes are on the wire, several
//   rounds, each on a fresh server.
// - UploadCollection and PutGraph streams in progress at the signal, one of
//   them too slow to finish within the drain deadline: each ends OK or
//   UNAVAILABLE, and after a restart on the same --data_dir, every upload
//   that answered OK is there whole, at the version it answered, and every
//   one that answered UNAVAILABLE left nothing.
// - Two servers behind one channel with deploy/grpc-service-config.json
//   (round_robin, health checking, retries of UNAVAILABLE): one is drained
//   mid-run under a mix of large and small calls, and no call fails.
//
// The random instants come from a seed printed with every round;
// ENGRAM_DRAIN_TEST_SEED=<seed> replays one.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/requests.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "grpc/grpc.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;

constexpr char kPushbackKey[] = "grpc-retry-pushback-ms";
// Above every request below, on both sides of the channel.
constexpr int kMaxMessageBytes = 128 << 20;

// --- Seeds, flags, channels ---

uint64_t Seed() {
  const char* env = std::getenv("ENGRAM_DRAIN_TEST_SEED");
  uint64_t seed = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &seed)) return seed;
  return std::random_device{}();
}

// A delay drawn uniformly from [low, high] (low when high < low).
absl::Duration RandomDelay(std::mt19937_64& random, absl::Duration low,
                           absl::Duration high) {
  if (high <= low) return low;
  std::uniform_int_distribution<int64_t> us(absl::ToInt64Microseconds(low),
                                            absl::ToInt64Microseconds(high));
  return absl::Microseconds(us(random));
}

std::string DrainDeadlineFlag(absl::Duration deadline) {
  return absl::StrCat("--drain_deadline=", absl::FormatDuration(deadline));
}

// The server's own limits are raised to take the large requests below.
std::vector<std::string> ServerFlags(absl::Duration drain_deadline) {
  return {"--worker_threads=2", DrainDeadlineFlag(drain_deadline),
          absl::StrCat("--max_message_bytes=", kMaxMessageBytes),
          absl::StrCat("--max_input_elements=", uint64_t{64} << 20),
          "--log_level=warning"};
}

std::shared_ptr<grpc::Channel> Channel(const std::string& target,
                                       grpc::ChannelArguments args = {}) {
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// --- Outcomes ---

// How one call ended, as its client saw it.
struct Outcome {
  grpc::Status status;
  std::optional<std::string> pushback;  // the trailer's value, when present
  absl::Time ended;
};

Outcome Finished(const grpc::Status& status,
                 const grpc::ClientContext& context) {
  Outcome outcome{status, std::nullopt, absl::Now()};
  const auto& trailers = context.GetServerTrailingMetadata();
  if (auto it = trailers.find(kPushbackKey); it != trailers.end()) {
    outcome.pushback = std::string(it->second.data(), it->second.size());
  }
  return outcome;
}

bool PushbackParses(const Outcome& outcome) {
  int64_t ms = -1;
  return outcome.pushback.has_value() &&
         absl::SimpleAtoi(*outcome.pushback, &ms) && ms >= 0;
}

bool IsRefusal(const Outcome& outcome) {
  return outcome.status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         PushbackParses(outcome);
}

// UNAVAILABLE from the client's own connection attempt: the server had
// stopped listening before this call's headers reached it (a call sent on a
// connection that then got GOAWAY is retried by gRPC on a new connection),
// so it was never the server's to finish. A call the server had seen cannot
// end this way.
bool NeverReachedServer(const Outcome& outcome) {
  const std::string& message = outcome.status.error_message();
  return outcome.status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         !outcome.pushback.has_value() &&
         (absl::StrContains(message, "failed to connect") ||
          absl::StrContains(message, "Connection refused"));
}

// The tally key of an outcome: the allowed ones, or what went wrong.
std::string Category(const Outcome& outcome) {
  if (outcome.status.ok()) return "OK";
  if (IsRefusal(outcome)) return "UNAVAILABLE+pushback";
  if (NeverReachedServer(outcome)) return "UNAVAILABLE(never reached it)";
  switch (outcome.status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return outcome.pushback.has_value()
                 ? "UNAVAILABLE(bad pushback)"
                 : "UNAVAILABLE(no grpc-retry-pushback-ms)";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    default:
      return absl::StrCat("code ", outcome.status.error_code());
  }
}

std::string Describe(const Outcome& outcome) {
  return absl::StrCat(Category(outcome), " \"", outcome.status.error_message(),
                      "\" pushback=", outcome.pushback.value_or("(none)"));
}

std::string Tally(const std::map<std::string, int>& counts) {
  std::vector<std::string> parts;
  for (const auto& [category, count] : counts) {
    parts.push_back(absl::StrCat(category, " x", count));
  }
  return absl::StrJoin(parts, ", ");
}

void Print(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// --- Large BatchCosine calls ---

// 4 queries against 36Ki targets of dimension 256: 9.4 M floats, 38 MB on
// the wire, about as much transfer as a client's large batch and almost no
// compute; top 10 per query, so the answer is small.
constexpr size_t kLargeQ = 4, kLargeN = 36864, kLargeD = 256;
constexpr uint32_t kLargeTopK = 10;
constexpr int kLargeCalls = 8;

const pb::BatchCosineRequest& LargeRequest() {
  static const pb::BatchCosineRequest* const request = [] {
    return new pb::BatchCosineRequest(client::MakeCosineRequest(
        *client::MakeMatrix(kLargeQ, kLargeD,
                            testing::RandomMatrix(kLargeQ, kLargeD, 21)),
        *client::MakeMatrix(kLargeN, kLargeD,
                            testing::RandomMatrix(kLargeN, kLargeD, 22)),
        kLargeTopK, std::nullopt));
  }();
  return *request;
}

// An OK answer to a top-k request of `queries` queries over at least
// `top_k` targets has one list of exactly top_k per query.
void ExpectTopKShape(const pb::BatchCosineResponse& response, size_t queries,
                     uint32_t top_k) {
  ASSERT_EQ(response.top_size(), static_cast<int>(queries));
  for (const pb::TopK& top : response.top()) {
    EXPECT_EQ(top.indices_size(), static_cast<int>(top_k));
    EXPECT_EQ(top.scores_size(), static_cast<int>(top_k));
  }
}

// Sends `calls` copies of `request` at once, from one thread each; once they
// are all under way, runs `meanwhile` (on this thread). Returns every call's
// outcome and OK answer, and when they started.
struct Batch {
  absl::Time started;
  std::vector<Outcome> outcomes;
  std::vector<pb::BatchCosineResponse> responses;
};
Batch RunBatch(pb::Similarity::Stub& stub,
               const pb::BatchCosineRequest& request, int calls,
               const std::function<void(absl::Time started)>& meanwhile) {
  Batch batch;
  batch.outcomes.resize(calls);
  batch.responses.resize(calls);
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < calls; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      grpc::ClientContext context;
      // Only ends a hung run: far beyond the drain deadline.
      context.set_deadline(testing::ScaledDeadline(absl::Seconds(45)));
      const grpc::Status status =
          stub.BatchCosine(&context, request, &batch.responses[i]);
      batch.outcomes[i] = Finished(status, context);
    });
  }
  batch.started = absl::Now();
  go.Notify();
  meanwhile(batch.started);
  for (std::thread& t : threads) t.join();
  return batch;
}

// The wall time of `threads` threads serializing `request` at once: about
// how long a call's headers wait behind its own serialization when that
// many calls start together (gRPC serializes before it sends the headers).
absl::Duration ConcurrentSerializeTime(const pb::BatchCosineRequest& request,
                                       int threads) {
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&] {
      std::string bytes;
      request.SerializeToString(&bytes);
    });
  }
  for (std::thread& t : workers) t.join();
  return absl::Now() - start;
}

TEST(DrainTest, SigtermDuringLargeTransfersEndsEveryCallOkOrWithPushback) {
  const uint64_t seed = Seed();
  Print(absl::StrCat("seed ", seed, " (ENGRAM_DRAIN_TEST_SEED replays it)"));
  std::mt19937_64 random(seed);
  const pb::BatchCosineRequest& request = LargeRequest();
  const absl::Duration drain_deadline = testing::Scaled(absl::Seconds(20));

  // Every call's headers should have reached the server before the signal:
  // gRPC sends them once it has serialized the request, so the earliest
  // instant is the time the concurrent calls spend serializing, plus a
  // margin for the headers to cross loopback. (A call that still misses it
  // can only be refused by the closed port: NeverReachedServer.)
  const absl::Duration earliest =
      ConcurrentSerializeTime(request, kLargeCalls) +
      testing::Scaled(absl::Milliseconds(10));

  // The rounds' budget is the test's run time, not a hang guard: a slower
  // (sanitized) build runs fewer rounds, at least one.
  constexpr int kRounds = 5;
  const absl::Time give_up = absl::Now() + absl::Seconds(40);
  std::map<std::string, int> total;
  int rounds = 0;
  for (int round = 0; round < kRounds && absl::Now() < give_up; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round, ", seed ", seed));
    auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY,
                                                ServerFlags(drain_deadline));
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = pb::Similarity::NewStub(Channel((*server)->grpc_target()));

    // The same calls without a signal: every one OK, and how long one takes
    // with the others beside it, which is nearly all transfer.
    Batch calm = RunBatch(*stub, request, kLargeCalls, [](absl::Time) {});
    absl::Duration transfer = absl::InfiniteDuration();
    for (int i = 0; i < kLargeCalls; ++i) {
      ASSERT_TRUE(calm.outcomes[i].status.ok()) << Describe(calm.outcomes[i]);
      ExpectTopKShape(calm.responses[i], kLargeQ, kLargeTopK);
      transfer = std::min(transfer, calm.outcomes[i].ended - calm.started);
    }

    // Then again, with SIGTERM at a random instant while bytes are still
    // arriving.
    const absl::Duration delay = RandomDelay(random, earliest, transfer * 0.9);
    absl::Time signalled;
    Batch drained = RunBatch(*stub, request, kLargeCalls, [&](absl::Time t0) {
      absl::SleepFor(delay - (absl::Now() - t0));
      signalled = absl::Now();
      (*server)->Signal(SIGTERM);
    });

    std::map<std::string, int> counts;
    for (int i = 0; i < kLargeCalls; ++i) {
      const Outcome& outcome = drained.outcomes[i];
      ++counts[Category(outcome)];
      ++total[Category(outcome)];
      if (outcome.status.ok()) {
        ExpectTopKShape(drained.responses[i], kLargeQ, kLargeTopK);
      } else {
        EXPECT_TRUE(IsRefusal(outcome) || NeverReachedServer(outcome))
            << "call " << i << ": " << Describe(outcome);
      }
      EXPECT_LE(outcome.ended - signalled,
                drain_deadline + testing::Scaled(absl::Seconds(1)))
          << "call " << i << " outlived the drain deadline";
    }
    Print(absl::StrCat("round ", round, ": transfer ",
                       absl::FormatDuration(transfer), ", SIGTERM after ",
                       absl::FormatDuration(delay), ": ", Tally(counts)));

    const absl::Duration left = signalled + drain_deadline +
                                testing::Scaled(absl::Seconds(5)) - absl::Now();
    absl::StatusOr<int> exit_code =
        (*server)->WaitForExit(std::max(left, absl::ZeroDuration()));
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);
    ++rounds;
  }
  Print(absl::StrCat(rounds, " rounds, seed ", seed, ": ", Tally(total)));
}

// --- Streaming uploads ---

constexpr uint32_t kDimension = 16;
constexpr uint64_t kBaseRows = 64;  // an append's collection before it

std::string TempDir(const std::string& name) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/drain_e2e_", getpid(), "_", name);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  std::filesystem::create_directories(dir);
  return dir;
}

// One upload stream of the drain, and what it answered.
struct Upload {
  enum class Kind { kCreate, kAppend, kGraph };
  Kind kind;
  std::string name;
  int chunks = 0;
  absl::Duration pause;  // between chunks
  uint64_t seed = 0;

  Outcome outcome;
  bool all_sent = false;  // the client sent everything and closed its side
  pb::CollectionInfo collection;
  pb::GraphInfo graph;
};

Upload MakeUpload(Upload::Kind kind, std::string name, int chunks,
                  absl::Duration pause, uint64_t seed) {
  Upload upload;
  upload.kind = kind;
  upload.name = std::move(name);
  upload.chunks = chunks;
  upload.pause = pause;
  upload.seed = seed;
  return upload;
}

constexpr uint64_t kRowsPerChunk = 2;
constexpr uint32_t kGraphNodes = 1000;
constexpr uint32_t kGraphDegree = 4;

uint64_t UploadRows(const Upload& upload) {
  return static_cast<uint64_t>(upload.chunks) * kRowsPerChunk;
}

// The row values an upload sends (and a search finds again).
std::vector<float> UploadVectors(const Upload& upload) {
  return testing::RandomMatrix(UploadRows(upload), kDimension, upload.seed);
}

// Runs one UploadCollection stream: the header, then `chunks` chunks with
// `pause` between them, then the close; stops writing once the stream
// fails. `header_sent` is notified once the header is handed to gRPC.
void RunCollectionUpload(pb::Similarity::Stub& stub, Upload& upload,
                         absl::Notification& header_sent) {
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(45)));
  pb::UploadCollectionResponse response;
  auto writer = stub.UploadCollection(&context, &response);
  pb::UploadCollectionRequest message;
  pb::UploadHeader* header = message.mutable_header();
  header->set_name(upload.name);
  header->set_create(upload.kind == Upload::Kind::kCreate);
  header->set_dimension(kDimension);
  header->set_total_rows(UploadRows(upload));
  bool writing = writer->Write(message);
  header_sent.Notify();
  const std::vector<float> vectors = UploadVectors(upload);
  const size_t per_chunk = kRowsPerChunk * kDimension;
  for (int c = 0; writing && c < upload.chunks; ++c) {
    absl::SleepFor(upload.pause);
    message.Clear();
    message.mutable_chunk()->mutable_vectors()->Add(
        vectors.begin() + c * per_chunk, vectors.begin() + (c + 1) * per_chunk);
    writing = writer->Write(message);
  }
  if (writing) upload.all_sent = writer->WritesDone();
  upload.outcome = Finished(writer->Finish(), context);
  upload.collection = response.collection();
}

// The graph a PutGraph stream sends.
testing::RandomCsrGraph UploadGraph(const Upload& upload) {
  return testing::RandomGraph(kGraphNodes, kGraphDegree, upload.seed);
}

// Runs one PutGraph stream: the header, then the row offsets and the edges
// in `chunks` chunks (about), with `pause` between them.
void RunGraphUpload(pb::Similarity::Stub& stub, Upload& upload,
                    absl::Notification& header_sent) {
  const testing::RandomCsrGraph graph = UploadGraph(upload);
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(45)));
  pb::GraphInfo response;
  auto writer = stub.PutGraph(&context, &response);
  pb::PutGraphRequest message;
  message.mutable_header()->set_name(upload.name);
  message.mutable_header()->set_num_nodes(graph.num_nodes);
  message.mutable_header()->set_num_edges(graph.targets.size());
  bool writing = writer->Write(message);
  header_sent.Notify();
  const size_t entries = graph.row_offsets.size() + graph.targets.size();
  const size_t per_chunk = entries / upload.chunks + 1;
  for (size_t first = 0; writing && first < graph.row_offsets.size();
       first += per_chunk) {
    absl::SleepFor(upload.pause);
    const size_t end = std::min(first + per_chunk, graph.row_offsets.size());
    message.Clear();
    message.mutable_chunk()->mutable_row_offsets()->Add(
        graph.row_offsets.begin() + first, graph.row_offsets.begin() + end);
    writing = writer->Write(message);
  }
  for (size_t first = 0; writing && first < graph.targets.size();
       first += per_chunk) {
    absl::SleepFor(upload.pause);
    const size_t end = std::min(first + per_chunk, graph.targets.size());
    message.Clear();
    pb::PutGraphChunk* chunk = message.mutable_chunk();
    chunk->mutable_targets()->Add(graph.targets.begin() + first,
                                  graph.targets.begin() + end);
    chunk->mutable_weights()->Add(graph.weights.begin() + first,
                                  graph.weights.begin() + end);
    writing = writer->Write(message);
  }
  if (writing) upload.all_sent = writer->WritesDone();
  upload.outcome = Finished(writer->Finish(), context);
  upload.graph = response;
}

// A complete upload outside the drain, for an append to land on.
void CreateBase(pb::Similarity::Stub& stub, const std::string& name,
                uint64_t seed) {
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
  pb::UploadCollectionResponse response;
  auto writer = stub.UploadCollection(&context, &response);
  pb::UploadCollectionRequest message;
  message.mutable_header()->set_name(name);
  message.mutable_header()->set_create(true);
  message.mutable_header()->set_dimension(kDimension);
  message.mutable_header()->set_total_rows(kBaseRows);
  ASSERT_TRUE(writer->Write(message));
  message.Clear();
  const std::vector<float> rows =
      testing::RandomMatrix(kBaseRows, kDimension, seed);
  message.mutable_chunk()->mutable_vectors()->Add(rows.begin(), rows.end());
  ASSERT_TRUE(writer->Write(message));
  ASSERT_TRUE(writer->WritesDone());
  const grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.collection().version(), 1u);
}

// After the restart: an upload that answered OK is there whole, at the
// version it answered; one that answered UNAVAILABLE left nothing.
void ExpectStoredAsAnswered(pb::Similarity::Stub& stub, const Upload& upload) {
  SCOPED_TRACE(upload.name);
  const bool committed = upload.outcome.status.ok();
  if (upload.kind == Upload::Kind::kGraph) {
    grpc::ClientContext context;
    context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
    pb::DescribeGraphRequest request;
    request.set_name(upload.name);
    pb::GraphInfo info;
    const grpc::Status status = stub.DescribeGraph(&context, request, &info);
    if (!committed) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
          << "a put that answered " << Describe(upload.outcome)
          << " is stored: " << info.ShortDebugString();
      return;
    }
    ASSERT_TRUE(status.ok()) << status.error_message();
    const testing::RandomCsrGraph graph = UploadGraph(upload);
    EXPECT_EQ(info.num_nodes(), graph.num_nodes);
    EXPECT_EQ(info.num_edges(), graph.targets.size());
    EXPECT_EQ(info.version(), upload.graph.version());
    EXPECT_EQ(info.load_state(), "ready");
    return;
  }

  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
  pb::DescribeCollectionRequest request;
  request.set_name(upload.name);
  pb::CollectionInfo info;
  const grpc::Status status = stub.DescribeCollection(&context, request, &info);
  const uint64_t before =
      upload.kind == Upload::Kind::kAppend ? kBaseRows : uint64_t{0};
  if (!committed) {
    if (upload.kind == Upload::Kind::kCreate) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
          << "an upload that answered " << Describe(upload.outcome)
          << " is stored: " << info.ShortDebugString();
    } else {
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(info.count(), kBaseRows)
          << "an append that answered " << Describe(upload.outcome)
          << " changed its collection";
      EXPECT_EQ(info.version(), 1u);
      EXPECT_EQ(info.load_state(), "ready");
    }
    return;
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  const uint64_t rows = UploadRows(upload);
  EXPECT_EQ(upload.collection.count(), before + rows);
  EXPECT_EQ(info.count(), before + rows);
  EXPECT_EQ(info.version(), upload.collection.version());
  EXPECT_EQ(info.version(), upload.kind == Upload::Kind::kAppend ? 2u : 1u);
  EXPECT_EQ(info.load_state(), "ready");
  // The last row uploaded is stored where the upload put it.
  const std::vector<float> vectors = UploadVectors(upload);
  grpc::ClientContext search_context;
  search_context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
  pb::SearchCollectionRequest search;
  search.set_collection(upload.name);
  search.set_top_k(1);
  *search.mutable_queries() =
      *client::MakeMatrix(1, kDimension,
                          absl::MakeConstSpan(vectors).subspan(
                              (rows - 1) * kDimension, kDimension));
  pb::SearchCollectionResponse found;
  const grpc::Status searched =
      stub.SearchCollection(&search_context, search, &found);
  ASSERT_TRUE(searched.ok()) << searched.error_message();
  ASSERT_EQ(found.results_size(), 1);
  ASSERT_EQ(found.results(0).rows_size(), 1);
  EXPECT_EQ(found.results(0).rows(0), before + rows - 1);
}

TEST(DrainTest, SigtermDuringUploadsCommitsWholeOrStoresNothing) {
  const uint64_t seed = Seed();
  Print(absl::StrCat("seed ", seed, " (ENGRAM_DRAIN_TEST_SEED replays it)"));
  std::mt19937_64 random(seed);
  // Short, so that the slow upload below cannot finish within it.
  const absl::Duration drain_deadline = testing::Scaled(absl::Seconds(3));

  constexpr int kRounds = 2;
  std::map<std::string, int> total;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round, ", seed ", seed));
    const std::string data_dir = TempDir(absl::StrCat("uploads_", round));
    std::vector<std::string> flags = ServerFlags(drain_deadline);
    flags.push_back("--data_dir=" + data_dir);
    auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = pb::Similarity::NewStub(Channel((*server)->grpc_target()));

    // About 120 chunks 5 ms apart, 0.6 s a stream: mid-flight when the
    // signal lands. The last one takes twice the drain deadline.
    std::vector<Upload> uploads;
    const absl::Duration pause = absl::Milliseconds(5);
    for (int i = 0; i < 3; ++i) {
      uploads.push_back(MakeUpload(Upload::Kind::kCreate,
                                   absl::StrCat("created_", i), 120, pause,
                                   100 + uint64_t(i)));
    }
    for (int i = 0; i < 2; ++i) {
      uploads.push_back(MakeUpload(Upload::Kind::kAppend,
                                   absl::StrCat("appended_", i), 120, pause,
                                   200 + uint64_t(i)));
      CreateBase(*stub, uploads.back().name, 300 + i);
      if (HasFatalFailure()) return;
    }
    uploads.push_back(MakeUpload(Upload::Kind::kGraph, "graph_0", 120, pause,
                                 400 + uint64_t(round)));
    uploads.push_back(MakeUpload(Upload::Kind::kCreate, "created_slow", 100,
                                 drain_deadline * 2 / 100, 500));

    std::vector<std::unique_ptr<absl::Notification>> header_sent;
    std::vector<std::thread> threads;
    for (Upload& upload : uploads) {
      header_sent.push_back(std::make_unique<absl::Notification>());
      absl::Notification* sent = header_sent.back().get();
      threads.emplace_back([&stub, &upload, sent] {
        if (upload.kind == Upload::Kind::kGraph) {
          RunGraphUpload(*stub, upload, *sent);
        } else {
          RunCollectionUpload(*stub, upload, *sent);
        }
      });
    }
    for (auto& sent : header_sent) sent->WaitForNotification();
    const absl::Duration delay =
        RandomDelay(random, testing::Scaled(absl::Milliseconds(20)),
                    absl::Milliseconds(400));
    absl::SleepFor(delay);
    const absl::Time signalled = absl::Now();
    (*server)->Signal(SIGTERM);
    for (std::thread& t : threads) t.join();

    std::map<std::string, int> counts;
    for (const Upload& upload : uploads) {
      ++counts[Category(upload.outcome)];
      ++total[Category(upload.outcome)];
      // A stream the drain stopped is answered UNAVAILABLE with the hint;
      // but once it was the connection's last, gRPC closes the connection
      // right after the answer, and a client that writes its next message
      // before reading the answer (this one sleeps between messages, with
      // nothing reading meanwhile) sees the closed connection instead:
      // UNAVAILABLE without the hint. Either way nothing is stored.
      EXPECT_TRUE(upload.outcome.status.ok() ||
                  upload.outcome.status.error_code() ==
                      grpc::StatusCode::UNAVAILABLE)
          << upload.name << ": " << Describe(upload.outcome);
      if (upload.outcome.status.ok()) {
        EXPECT_TRUE(upload.all_sent) << upload.name << " committed early";
      }
      EXPECT_LE(upload.outcome.ended - signalled,
                drain_deadline + testing::Scaled(absl::Seconds(1)))
          << upload.name << " outlived the drain deadline";
    }
    std::vector<std::string> each;
    for (const Upload& upload : uploads) {
      each.push_back(absl::StrCat(upload.name, "=", Category(upload.outcome)));
    }
    Print(absl::StrCat("round ", round, ": SIGTERM after ",
                       absl::FormatDuration(delay), ": ", Tally(counts), " (",
                       absl::StrJoin(each, " "), ")"));
    absl::StatusOr<int> exit_code = (*server)->WaitForExit(
        std::max(signalled + drain_deadline +
                     testing::Scaled(absl::Seconds(5)) - absl::Now(),
                 absl::ZeroDuration()));
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);

    // What the data directory holds is what the calls answered.
    auto restarted = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    auto check = pb::Similarity::NewStub(Channel((*restarted)->grpc_target()));
    for (const Upload& upload : uploads) ExpectStoredAsAnswered(*check, upload);
    grpc::ClientContext list_context;
    list_context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
    pb::ListCollectionsResponse listed;
    ASSERT_TRUE(check
                    ->ListCollections(&list_context,
                                      pb::ListCollectionsRequest(), &listed)
                    .ok());
    for (const pb::CollectionInfo& info : listed.collections()) {
      EXPECT_EQ(info.load_state(), "ready") << info.ShortDebugString();
    }
    (*restarted)->Signal(SIGTERM);
    exit_code = (*restarted)->WaitForExit(testing::Scaled(absl::Seconds(30)));
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);
    std::error_code ignored;
    std::filesystem::remove_all(data_dir, ignored);
  }
  Print(absl::StrCat(kRounds, " rounds, seed ", seed, ": ", Tally(total)));
}

// --- Two servers, one drained ---

// 4 MB, 16 MB and 38 MB on the wire, and a small one: gRPC can retry the
// large ones only because the channel below raises its per-call retry
// buffer above them.
const pb::BatchCosineRequest& MixRequest(int which) {
  static const pb::BatchCosineRequest* const requests = [] {
    auto* r = new pb::BatchCosineRequest[4];
    const size_t n[4] = {4096, 16384, kLargeN, 64};
    for (int i = 0; i < 4; ++i) {
      r[i] = client::MakeCosineRequest(
          *client::MakeMatrix(kLargeQ, kLargeD,
                              testing::RandomMatrix(kLargeQ, kLargeD, 31 + i)),
          *client::MakeMatrix(n[i], kLargeD,
                              testing::RandomMatrix(n[i], kLargeD, 41 + i)),
          kLargeTopK, std::nullopt);
    }
    return r;
  }();
  return requests[which];
}
constexpr int kLargest = 2;
constexpr int kSmall = 3;

TEST(DrainTest, DrainingOneOfTwoServersFailsNoCallOfARetryingClient) {
  const uint64_t seed = Seed();
  Print(absl::StrCat("seed ", seed, " (ENGRAM_DRAIN_TEST_SEED replays it)"));
  std::mt19937_64 random(seed);
  const absl::Duration drain_deadline = testing::Scaled(absl::Seconds(20));
  const std::string service_config = ReadFile(ENGRAM_SERVICE_CONFIG);
  ASSERT_FALSE(service_config.empty()) << ENGRAM_SERVICE_CONFIG;

  constexpr int kBurst = 12;
  const absl::Duration burst_serialize =
      ConcurrentSerializeTime(MixRequest(kLargest), kBurst);

  // As above: a budget of run time, at least one round.
  constexpr int kRounds = 3;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  std::map<std::string, int> total;
  int rounds = 0;
  for (int round = 0; round < kRounds && absl::Now() < give_up; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round, ", seed ", seed));
    std::vector<std::unique_ptr<testing::ServerProcess>> servers;
    for (int i = 0; i < 2; ++i) {
      auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY,
                                                  ServerFlags(drain_deadline));
      ASSERT_TRUE(server.ok()) << server.status();
      servers.push_back(std::move(*server));
    }
    grpc::ChannelArguments args;
    args.SetServiceConfigJSON(service_config);
    // gRPC keeps a copy of a call's request for its retries only up to this
    // many bytes (256 KiB by default); a larger call refused by a draining
    // server is not retried but fails. A client sending large batches has
    // to raise it above its largest request, as here.
    args.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE, kMaxMessageBytes);
    const std::shared_ptr<grpc::Channel> channel =
        Channel(absl::StrCat("ipv4:127.0.0.1:", servers[0]->grpc_port(),
                             ",127.0.0.1:", servers[1]->grpc_port()),
                args);
    ASSERT_TRUE(
        channel->WaitForConnected(testing::ScaledDeadline(absl::Seconds(10))));
    auto stub = pb::Similarity::NewStub(channel);

    // Two threads cycle through the large calls, two send small ones.
    constexpr int kThreads = 4;
    std::atomic<bool> stop{false};
    absl::Mutex mu;
    std::map<std::string, int> counts;
    std::vector<std::string> failures;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          const int which = t < 2 ? (i + t) % 3 : kSmall;
          const std::string size = which == kSmall ? "small" : "large";
          grpc::ClientContext context;
          context.set_deadline(testing::ScaledDeadline(absl::Seconds(45)));
          pb::BatchCosineResponse response;
          const Outcome outcome = Finished(
              stub->BatchCosine(&context, MixRequest(which), &response),
              context);
          absl::MutexLock lock(&mu);
          ++counts[absl::StrCat(Category(outcome), " ", size)];
          if (outcome.status.ok()) {
            ExpectTopKShape(response, kLargeQ, kLargeTopK);
          } else {
            failures.push_back(
                absl::StrCat(size, " call: ", Describe(outcome)));
          }
        }
      });
    }
    // Mid-run, a burst of the largest calls at once, about half of them to
    // the server that then gets SIGTERM while their bytes are arriving (or,
    // for some, before their headers left: gRPC then sends them to the
    // other server, which must answer them too).
    absl::SleepFor(
        RandomDelay(random, absl::Milliseconds(500), absl::Milliseconds(1000)));
    const absl::Duration aim = RandomDelay(
        random, burst_serialize / 2, burst_serialize + absl::Milliseconds(100));
    absl::Time signalled;
    Batch burst =
        RunBatch(*stub, MixRequest(kLargest), kBurst, [&](absl::Time t0) {
          absl::SleepFor(aim - (absl::Now() - t0));
          signalled = absl::Now();
          servers[0]->Signal(SIGTERM);
          // The load goes on for a while after.
          absl::SleepFor(absl::Milliseconds(1500));
        });
    for (int i = 0; i < kBurst; ++i) {
      absl::MutexLock lock(&mu);
      ++counts[absl::StrCat(Category(burst.outcomes[i]), " burst")];
      if (burst.outcomes[i].status.ok()) {
        ExpectTopKShape(burst.responses[i], kLargeQ, kLargeTopK);
      } else {
        failures.push_back(
            absl::StrCat("burst call: ", Describe(burst.outcomes[i])));
      }
    }
    stop = true;
    for (std::thread& t : threads) t.join();
    absl::StatusOr<int> exit_code = servers[0]->WaitForExit(
        std::max(signalled + drain_deadline +
                     testing::Scaled(absl::Seconds(5)) - absl::Now(),
                 absl::ZeroDuration()));
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);

    absl::MutexLock lock(&mu);
    for (const auto& [category, count] : counts) total[category] += count;
    Print(absl::StrCat("round ", round, ": SIGTERM ", absl::FormatDuration(aim),
                       " into the burst: ", Tally(counts)));
    EXPECT_TRUE(failures.empty()) << failures.size() << " calls failed:\n"
                                  << absl::StrJoin(failures, "\n");
    EXPECT_GT(counts["OK large"], 0);
    EXPECT_GT(counts["OK small"], 0);
    ++rounds;
  }
  Print(absl::StrCat(rounds, " rounds, seed ", seed, ": ", Tally(total)));
}

}  // namespace
}  // namespace engram
