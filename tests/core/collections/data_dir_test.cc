#include "core/collections/data_dir.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/collections/atomic_file.h"
#include "core/collections/snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/data_dir_stores.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/random_data.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::IdsOf;
using ::engram::collections::testing::ListDir;
using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::RowsOf;
using ::engram::collections::testing::Stage;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::Upload;
using ::engram::collections::testing::WriteAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// One process over the data directory.
using Process = ::engram::collections::testing::DataDirStores;

// A small graph: 0 -> 1 (0.5), 0 -> 2 (0.25), 1 -> 2 (1.0).
const std::vector<uint32_t> kOffsets = {0, 2, 3, 3};
const std::vector<uint32_t> kTargets = {1, 2, 2};
const std::vector<float> kWeights = {0.5f, 0.25f, 1.0f};
kernels::GraphView SmallGraph() {
  kernels::GraphView g;
  g.num_nodes = 3;
  g.row_offsets = kOffsets;
  g.targets = kTargets;
  g.weights = kWeights;
  return g;
}

std::vector<float> NormsOf(const Collection& c) {
  std::vector<float> out;
  for (const auto& s : c.segments()) {
    out.insert(out.end(), s->norms().begin(), s->norms().end());
  }
  return out;
}

class DataDirTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TestDir(); }
  std::string path_;
};

TEST_F(DataDirTest, EveryCommittedChangeComesBackAfterARestart) {
  const std::vector<float> first = engram::testing::RandomMatrix(5, 16, 1);
  const std::vector<float> second = engram::testing::RandomMatrix(3, 16, 2);
  std::vector<float> all = first;
  all.insert(all.end(), second.begin(), second.end());
  uint64_t links_version = 0;
  {
    Process p(path_);
    ASSERT_THAT(p.Load(), IsEmpty());
    // With ids, then an append without: the appended rows keep their row
    // numbers as ids after the restore.
    ASSERT_TRUE(
        Upload(*p.collections, "docs", 16, first, {10, 11, 12, 13, 14}).ok());
    ASSERT_TRUE(Upload(*p.collections, "docs", 16, second, {}, false).ok());
    CollectionSpec spec{"empty", 8, {{"model", "e5"}}};
    ASSERT_TRUE(p.collections->CreateCollection(spec).ok());
    ASSERT_TRUE(Upload(*p.collections, "gone", 16, first).ok());
    ASSERT_TRUE(p.collections->Delete("gone").ok());
    auto links = p.graphs->Put("links", SmallGraph());
    ASSERT_TRUE(links.ok());
    links_version = (*links)->version();
    ASSERT_TRUE(p.graphs->Put("gone_graph", SmallGraph()).ok());
    ASSERT_TRUE(p.graphs->Delete("gone_graph").ok());
  }
  Process p(path_);
  const std::vector<LoadOutcome> outcomes = p.Load();
  ASSERT_THAT(outcomes, SizeIs(3));
  for (const LoadOutcome& o : outcomes) EXPECT_TRUE(o.status.ok()) << o.status;

  auto docs = *p.collections->Get("docs");
  EXPECT_EQ(docs->version(), 2u);
  EXPECT_EQ(docs->rows(), 8u);
  EXPECT_EQ(docs->dimension(), 16u);
  EXPECT_EQ(RowsOf(*docs), all);
  EXPECT_THAT(IdsOf(*docs), ElementsAre(10, 11, 12, 13, 14, 5, 6, 7));
  // Each stored segment is mapped and stays a segment of its own.
  ASSERT_THAT(docs->segments(), SizeIs(2));
  EXPECT_TRUE(docs->segments()[0]->adopted());
  EXPECT_TRUE(docs->segments()[1]->adopted());

  auto empty = *p.collections->Get("empty");
  EXPECT_EQ(empty->version(), 1u);
  EXPECT_EQ(empty->rows(), 0u);
  EXPECT_EQ(empty->dimension(), 8u);
  EXPECT_EQ(empty->metadata().at("model"), "e5");

  EXPECT_TRUE(absl::IsNotFound(p.collections->Get("gone").status()));
  EXPECT_TRUE(absl::IsNotFound(p.graphs->Get("gone_graph").status()));
  auto links = *p.graphs->Get("links");
  EXPECT_EQ(links->num_nodes(), 3u);
  EXPECT_THAT(links->base().targets, ElementsAre(1, 2, 2));
  EXPECT_THAT(links->base().weights, ElementsAre(0.5f, 0.25f, 1.0f));
  // A graph keeps its version across the restart, and a later put gets a
  // larger one than any before it.
  EXPECT_EQ(links->version(), links_version);
  auto later = p.graphs->Put("later", SmallGraph());
  ASSERT_TRUE(later.ok());
  EXPECT_GT((*later)->version(), links_version);

  // A change after the restore continues from the stored version.
  ASSERT_TRUE(Upload(*p.collections, "docs", 16, second, {}, false).ok());
  EXPECT_EQ((*p.collections->Get("docs"))->version(), 3u);
  Process again(path_);
  again.Load();
  auto reloaded = *again.collections->Get("docs");
  EXPECT_EQ(reloaded->version(), 3u);
  EXPECT_EQ(reloaded->rows(), 11u);
}

TEST_F(DataDirTest, MappedAndReadRestoresServeTheSameRows) {
  const std::vector<float> first = engram::testing::RandomMatrix(5, 16, 1);
  const std::vector<float> second = engram::testing::RandomMatrix(3, 16, 2);
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(
        Upload(*p.collections, "docs", 16, first, {10, 11, 12, 13, 14}).ok());
    ASSERT_TRUE(Upload(*p.collections, "docs", 16, second, {}, false).ok());
  }
  Process mapped(path_);
  Process read(path_, nullptr, 1 << 30, /*map_segments=*/false);
  for (Process* p : {&mapped, &read}) {
    for (const LoadOutcome& o : p->Load()) EXPECT_TRUE(o.status.ok());
  }
  auto m = *mapped.collections->Get("docs");
  auto r = *read.collections->Get("docs");
  EXPECT_EQ(RowsOf(*m), RowsOf(*r));
  EXPECT_EQ(IdsOf(*m), IdsOf(*r));
  EXPECT_EQ(NormsOf(*m), NormsOf(*r));
  EXPECT_EQ(m->version(), r->version());
  EXPECT_EQ(m->bytes(), r->bytes());
  // Read, a restore is one segment in memory of its own.
  ASSERT_THAT(r->segments(), SizeIs(1));
  EXPECT_FALSE(r->segments()[0]->adopted());
  ASSERT_THAT(m->segments(), SizeIs(2));
  // Deleted, the mapped collection's files go at once; a search holding
  // the version still reads its rows from the mappings.
  ASSERT_TRUE(mapped.collections->Delete("docs").ok());
  EXPECT_THAT(ListDir(path_ + "/segments"), IsEmpty());
  EXPECT_EQ(RowsOf(*m), RowsOf(*r));
}

TEST_F(DataDirTest, ACorruptSegmentTakesOnlyItsOwnCollectionOutOfService) {
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(
        Upload(*p.collections, "bad", 8, engram::testing::RandomMatrix(4, 8, 3))
            .ok());
    ASSERT_TRUE(Upload(*p.collections, "good", 8,
                       engram::testing::RandomMatrix(4, 8, 4))
                    .ok());
  }
  std::string bad_segment;
  for (const std::string& f : ListDir(path_ + "/segments")) {
    if (absl::StartsWith(f, "bad.")) bad_segment = path_ + "/segments/" + f;
  }
  ASSERT_FALSE(bad_segment.empty());
  std::string bytes = ReadAll(bad_segment);
  bytes[bytes.size() - 3] ^= 0x40;
  WriteAll(bad_segment, bytes);

  Process p(path_);
  p.Load();
  EXPECT_TRUE(p.collections->Get("good").ok());
  const absl::Status lost = p.collections->Get("bad").status();
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_THAT(lost.message(), HasSubstr(bad_segment));
  EXPECT_EQ(p.collections->Describe("bad").status().code(),
            absl::StatusCode::kDataLoss);
  // The name stays taken, and listed as lost, until it is deleted.
  EXPECT_TRUE(absl::IsAlreadyExists(
      p.collections->CreateCollection({"bad", 8, {}}).status()));
  const std::vector<CollectionInfo> listed = p.collections->List();
  ASSERT_THAT(listed, SizeIs(2));
  EXPECT_EQ(listed[0].name, "bad");
  EXPECT_EQ(listed[0].load_state, "lost");
  EXPECT_THAT(listed[0].error, HasSubstr("checksum"));

  ASSERT_TRUE(p.collections->Delete("bad").ok());
  EXPECT_TRUE(absl::IsNotFound(p.collections->Get("bad").status()));
  for (const std::string& f : ListDir(path_ + "/segments")) {
    EXPECT_FALSE(absl::StartsWith(f, "bad.")) << f;
  }
  EXPECT_THAT(ListDir(path_ + "/collections"), ElementsAre("good.manifest"));
}

TEST_F(DataDirTest, ACorruptGraphIsLostAndTheRestLoads) {
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(p.graphs->Put("links", SmallGraph()).ok());
    ASSERT_TRUE(p.graphs->Put("other", SmallGraph()).ok());
  }
  const std::string file = path_ + "/graphs/links.graph";
  std::string bytes = ReadAll(file);
  WriteAll(file, bytes.substr(0, bytes.size() - 5));  // truncated
  Process p(path_);
  p.Load();
  EXPECT_TRUE(p.graphs->Get("other").ok());
  const absl::Status lost = p.graphs->Get("links").status();
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_THAT(lost.message(), HasSubstr(file));
  ASSERT_TRUE(p.graphs->Delete("links").ok());
  EXPECT_THAT(ListDir(path_ + "/graphs"), ElementsAre("other.graph"));
}

// The states a crash can leave: a segment written whose manifest was never
// replaced, a temporary file of an interrupted write, and a delete that
// removed the manifest but not the segments. The stored versions are the
// old ones and the leftovers go.
TEST_F(DataDirTest, ACrashMidWriteLeavesTheOldVersionAndLeftoversAreRemoved) {
  const std::vector<float> rows = engram::testing::RandomMatrix(4, 8, 5);
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(Upload(*p.collections, "docs", 8, rows).ok());
    ASSERT_TRUE(Upload(*p.collections, "deleted", 8, rows).ok());
    // An append whose segment reached the disk, then the crash.
    auto segment = *p.collections->Get("docs");
    ASSERT_TRUE(p.dir->WriteSegment("docs", *segment->segments()[0]).ok());
  }
  // The delete that stopped after its manifest.
  ASSERT_EQ(::unlink((path_ + "/collections/deleted.manifest").c_str()), 0);
  WriteAll(path_ + "/collections/.docs.manifest.tmp-1-2", "partial");
  WriteAll(path_ + "/segments/.docs.0123.seg.tmp-1-3", "partial");
  ASSERT_THAT(ListDir(path_ + "/segments"), SizeIs(4));

  Process p(path_);
  p.Load();
  auto docs = *p.collections->Get("docs");
  EXPECT_EQ(docs->version(), 1u);
  EXPECT_EQ(RowsOf(*docs), rows);
  EXPECT_TRUE(absl::IsNotFound(p.collections->Get("deleted").status()));
  EXPECT_THAT(ListDir(path_ + "/segments"), SizeIs(1));
  EXPECT_THAT(ListDir(path_ + "/collections"), ElementsAre("docs.manifest"));
  EXPECT_EQ(p.dir->leftovers_removed(), 4u);
}

TEST_F(DataDirTest, AnUnreadableManifestKeepsEverySegment) {
  const std::vector<float> rows = engram::testing::RandomMatrix(4, 8, 6);
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(Upload(*p.collections, "docs", 8, rows).ok());
  }
  const std::string manifest = path_ + "/collections/docs.manifest";
  std::string bytes = ReadAll(manifest);
  bytes[bytes.size() - 1] ^= 0x01;
  WriteAll(manifest, bytes);
  WriteAll(path_ + "/segments/stray.0000.seg", "x");

  Process p(path_);
  const std::vector<LoadOutcome> outcomes = p.Load();
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(outcomes[0].status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(outcomes[0].status.message(), HasSubstr("checksum"));
  // The damaged manifest may name any segment: none is removed.
  EXPECT_THAT(ListDir(path_ + "/segments"), SizeIs(2));
}

TEST_F(DataDirTest, AFailedWriteChangesNothingVisible) {
  const std::vector<float> rows = engram::testing::RandomMatrix(4, 8, 7);
  Process p(path_);
  p.Load();
  ASSERT_TRUE(Upload(*p.collections, "docs", 8, rows).ok());
  // The segments folder replaced by a file: every segment write fails,
  // whatever the permissions of the user running the test.
  ASSERT_EQ(std::system(("rm -rf '" + path_ + "/segments' && touch '" + path_ +
                         "/segments'")
                            .c_str()),
            0);
  const absl::Status appended =
      Upload(*p.collections, "docs", 8, rows, {}, false).status();
  EXPECT_EQ(appended.code(), absl::StatusCode::kUnavailable) << appended;
  EXPECT_THAT(appended.message(), HasSubstr("segments"));
  EXPECT_EQ((*p.collections->Get("docs"))->version(), 1u);
  const absl::Status created = Upload(*p.collections, "new", 8, rows).status();
  EXPECT_EQ(created.code(), absl::StatusCode::kUnavailable) << created;
  EXPECT_TRUE(absl::IsNotFound(p.collections->Get("new").status()));
  // The name is free again for a later try.
  ASSERT_EQ(::unlink((path_ + "/segments").c_str()), 0);
  ASSERT_EQ(::mkdir((path_ + "/segments").c_str(), 0755), 0);
  EXPECT_TRUE(Upload(*p.collections, "new", 8, rows).ok());
}

// A collection loaded from an operator's file is not copied into the data
// directory, until a client changes it: then its earlier rows are stored
// with the change, so the restart brings back every row.
TEST_F(DataDirTest, ADeclaredCollectionIsStoredWholeOnItsFirstChange) {
  const std::vector<float> declared = engram::testing::RandomMatrix(6, 8, 8);
  const std::vector<float> appended = engram::testing::RandomMatrix(2, 8, 9);
  const std::string file = path_ + "/declared.engc";
  {
    auto store = testing::MakeStore(MakeBudget());
    ASSERT_TRUE(Upload(*store, "decl", 8, declared).ok());
    ASSERT_TRUE(WriteCollectionSnapshot(**store->Get("decl"), file).ok());
  }
  {
    Process p(path_ + "/data");
    p.Load();
    ASSERT_TRUE(LoadCollectionSnapshot(file, "", p.collections.get()).ok());
    EXPECT_THAT(ListDir(path_ + "/data/collections"), IsEmpty());
    ASSERT_TRUE(Upload(*p.collections, "decl", 8, appended, {}, false).ok());
  }
  Process p(path_ + "/data");
  p.Load();
  auto decl = *p.collections->Get("decl");
  std::vector<float> all = declared;
  all.insert(all.end(), appended.begin(), appended.end());
  EXPECT_EQ(RowsOf(*decl), all);
  EXPECT_EQ(decl->version(), 2u);
  EXPECT_EQ(decl->source(), file);
}

// Stages `values` as an append keyed `key` and commits it.
absl::StatusOr<std::shared_ptr<const Collection>> KeyedAppend(
    CollectionStore& store, const std::string& key,
    const std::vector<float>& values, bool* replayed) {
  UploadOptions o;
  o.name = "docs";
  o.rows = values.size() / 8;
  o.idempotency_key = key;
  auto upload = store.BeginUpload(o);
  if (!upload.ok()) return upload.status();
  absl::Status s = (*upload)->Append(
      kernels::MatrixView{values.data(), values.size() / 8, 8});
  if (!s.ok()) return s;
  auto committed = (*upload)->Commit();
  *replayed = (*upload)->replayed();
  return committed;
}

TEST_F(DataDirTest, AKeyedUploadIsAppliedOnceEvenAcrossARestart) {
  const std::vector<float> rows = engram::testing::RandomMatrix(3, 8, 10);
  bool replayed = true;
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(Upload(*p.collections, "docs", 8, rows).ok());
    auto first = KeyedAppend(*p.collections, "batch-1", rows, &replayed);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_FALSE(replayed);
    EXPECT_EQ((*first)->version(), 2u);
    // The resend answers with the version the first commit made.
    auto again = KeyedAppend(*p.collections, "batch-1", rows, &replayed);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(replayed);
    EXPECT_EQ((*again)->version(), 2u);
    EXPECT_EQ((*again)->rows(), 6u);
    EXPECT_EQ(p.collections->FindCommitted("docs", "batch-1"), *again);
    EXPECT_EQ(p.collections->FindCommitted("docs", "other"), nullptr);
  }
  Process p(path_);
  p.Load();
  auto resent = KeyedAppend(*p.collections, "batch-1", rows, &replayed);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_TRUE(replayed);
  EXPECT_EQ((*resent)->rows(), 6u);
  ASSERT_TRUE(KeyedAppend(*p.collections, "batch-2", rows, &replayed).ok());
  EXPECT_FALSE(replayed);
  EXPECT_EQ((*p.collections->Get("docs"))->rows(), 9u);
  // Only the last kMaxCommittedKeys keys are remembered.
  for (size_t i = 0; i < kMaxCommittedKeys; ++i) {
    ASSERT_TRUE(
        KeyedAppend(*p.collections, absl::StrCat("k", i), rows, &replayed)
            .ok());
  }
  EXPECT_EQ(p.collections->FindCommitted("docs", "batch-1"), nullptr);
  EXPECT_NE(p.collections->FindCommitted("docs", "k0"), nullptr);
}

// A resend that was staged while the original still ran: both pass the
// check at BeginUpload; the one committed second publishes nothing.
TEST_F(DataDirTest, TwoStagedUploadsWithOneKeyCommitOnce) {
  const std::vector<float> rows = engram::testing::RandomMatrix(3, 8, 11);
  Process p(path_);
  p.Load();
  ASSERT_TRUE(Upload(*p.collections, "docs", 8, rows).ok());
  UploadOptions o;
  o.name = "docs";
  o.rows = 3;
  o.idempotency_key = "same";
  auto first = *p.collections->BeginUpload(o);
  auto second = *p.collections->BeginUpload(o);
  for (auto* upload : {first.get(), second.get()}) {
    ASSERT_TRUE(upload->Append(kernels::MatrixView{rows.data(), 3, 8}).ok());
  }
  ASSERT_TRUE(first->Commit().ok());
  auto again = second->Commit();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(second->replayed());
  EXPECT_EQ((*again)->rows(), 6u);
  EXPECT_EQ((*again)->version(), 2u);
  // No segment file was left by the upload that published nothing.
  EXPECT_THAT(ListDir(path_ + "/segments"), SizeIs(2));
}

absl::StatusOr<std::shared_ptr<const Collection>> StreamedUpload(
    CollectionStore& store, const std::string& name, uint32_t dim,
    const std::vector<float>& values, const std::vector<uint64_t>& ids,
    bool create, uint64_t chunk_rows) {
  auto upload = Stage(store, name, dim, values, ids, create, chunk_rows);
  if (!upload.ok()) return upload.status();
  return (*upload)->Commit();
}

// Creates with ids and without, and appends with ids and without, each
// streamed in chunks: after a restart every row, id and norm is as it was.
TEST_F(DataDirTest, StreamedUploadsReloadIdenticallyAfterReopening) {
  constexpr uint32_t kDim = 20;
  const std::vector<float> first = engram::testing::RandomMatrix(37, kDim, 21);
  const std::vector<float> second = engram::testing::RandomMatrix(23, kDim, 22);
  std::vector<uint64_t> first_ids, second_ids;
  for (uint64_t i = 0; i < 37; ++i) first_ids.push_back(5000 + 7 * i);
  for (uint64_t i = 0; i < 23; ++i) second_ids.push_back(9000 + i);
  // What each collection held before the restart: version, rows, ids,
  // norms (copies: a version must not outlive its process's budget).
  struct Held {
    uint64_t version = 0;
    std::vector<float> rows;
    std::vector<uint64_t> ids;
    std::vector<float> norms;
  };
  auto held = [](const Collection& c) {
    return Held{c.version(), RowsOf(c), IdsOf(c), NormsOf(c)};
  };
  std::map<std::string, Held> before;
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(
        StreamedUpload(*p.collections, "ids", kDim, first, first_ids, true, 5)
            .ok());
    auto ids = StreamedUpload(*p.collections, "ids", kDim, second, second_ids,
                              false, 4);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_TRUE(
        StreamedUpload(*p.collections, "plain", kDim, first, {}, true, 6).ok());
    auto plain =
        StreamedUpload(*p.collections, "plain", kDim, second, {}, false, 1);
    ASSERT_TRUE(plain.ok()) << plain.status();
    // Appended rows without ids keep their row numbers as ids.
    auto mixed =
        StreamedUpload(*p.collections, "ids", kDim, second, {}, false, 23);
    ASSERT_TRUE(mixed.ok()) << mixed.status();
    before["ids"] = held(**mixed);
    before["plain"] = held(**plain);
    EXPECT_THAT(ListDir(path_ + "/segments"), SizeIs(5));
  }
  Process p(path_);
  for (const LoadOutcome& o : p.Load()) EXPECT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(p.dir->leftovers_removed(), 0u);
  for (const auto& [name, was] : before) {
    SCOPED_TRACE(name);
    auto now = p.collections->Get(name);
    ASSERT_TRUE(now.ok()) << now.status();
    EXPECT_EQ((*now)->version(), was.version);
    EXPECT_EQ(RowsOf(**now), was.rows);
    EXPECT_EQ(IdsOf(**now), was.ids);
    EXPECT_EQ(NormsOf(**now), was.norms);
  }
  EXPECT_EQ(IdsOf(**p.collections->Get("ids"))[37 + 23], 60u);
}

// A client that cancels, a chunk the store refuses, a stream that ends
// early, and a commit the store refuses: none leaves a file behind, and
// the committed version stays as it was.
TEST_F(DataDirTest, AnUploadThatIsNotCommittedLeavesNoFile) {
  const std::vector<float> rows = engram::testing::RandomMatrix(40, 8, 23);
  Process p(path_);
  p.Load();
  ASSERT_TRUE(Upload(*p.collections, "docs", 8, rows).ok());
  const std::vector<std::string> committed = ListDir(path_ + "/segments");
  ASSERT_THAT(committed, SizeIs(1));
  const std::vector<float> part(rows.begin(), rows.begin() + 10 * 8);
  UploadOptions append;
  append.name = "docs";
  append.rows = 40;

  {  // Aborted after some chunks (the client cancelled).
    auto upload = *p.collections->BeginUpload(append);
    ASSERT_TRUE(upload->Append(kernels::MatrixView{part.data(), 10, 8}).ok());
    upload->Abort();
    EXPECT_EQ(ListDir(path_ + "/segments"), committed);
  }
  {  // Destroyed without a commit.
    auto upload = *p.collections->BeginUpload(append);
    ASSERT_TRUE(upload->Append(kernels::MatrixView{part.data(), 10, 8}).ok());
  }
  EXPECT_EQ(ListDir(path_ + "/segments"), committed);
  {  // A bad chunk, then the caller gives up.
    auto upload = *p.collections->BeginUpload(append);
    ASSERT_TRUE(upload->Append(kernels::MatrixView{part.data(), 10, 8}).ok());
    std::vector<float> bad = part;
    bad[17] = std::nanf("");
    EXPECT_TRUE(absl::IsInvalidArgument(
        upload->Append(kernels::MatrixView{bad.data(), 10, 8})));
    upload->Abort();
    EXPECT_EQ(ListDir(path_ + "/segments"), committed);
  }
  {  // The stream ended early: Commit refuses.
    auto upload = *p.collections->BeginUpload(append);
    ASSERT_TRUE(upload->Append(kernels::MatrixView{part.data(), 10, 8}).ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(upload->Commit().status()));
    EXPECT_EQ(ListDir(path_ + "/segments"), committed);
  }
  {  // A creating upload cancelled.
    auto staged = Stage(*p.collections, "new", 8, part, {}, true, 3);
    ASSERT_TRUE(staged.ok()) << staged.status();
    (*staged)->Abort();
    EXPECT_EQ(ListDir(path_ + "/segments"), committed);
  }
  EXPECT_EQ((*p.collections->Get("docs"))->version(), 1u);

  // A complete upload the store refuses at commit: the collection it
  // appends to was deleted meanwhile.
  auto staged = Stage(*p.collections, "docs", 8, rows, {}, false, 7);
  ASSERT_TRUE(staged.ok()) << staged.status();
  ASSERT_TRUE(p.collections->Delete("docs").ok());
  EXPECT_TRUE(absl::IsNotFound((*staged)->Commit().status()));
  EXPECT_THAT(ListDir(path_ + "/segments"), IsEmpty());
}

// SIGKILL while an upload streams: the file it leaves is no manifest's, the
// old version loads, and start-up removes the file.
TEST_F(DataDirTest, AnUploadKilledMidwayLeavesALeftoverThatStartUpRemoves) {
  const std::vector<float> rows = engram::testing::RandomMatrix(64, 16, 24);
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(Upload(*p.collections, "docs", 16, rows).ok());
  }
  // No thread of this process runs now, so the child may use anything.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Process p(path_);
    p.Load();
    auto staged =
        Stage(*p.collections, "docs", 16,
              engram::testing::RandomMatrix(640, 16, 25), {}, false, 64);
    if (!staged.ok()) ::_exit(1);
    // Half of the rows arrived; the writer may be writing some of them.
    ::raise(SIGKILL);
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  const std::vector<std::string> left = ListDir(path_ + "/segments");
  ASSERT_THAT(left, SizeIs(2));
  EXPECT_TRUE(IsAtomicWriteLeftover(left[0])) << left[0];

  Process p(path_);
  p.Load();
  auto docs = *p.collections->Get("docs");
  EXPECT_EQ(docs->version(), 1u);
  EXPECT_EQ(RowsOf(*docs), rows);
  EXPECT_EQ(p.dir->leftovers_removed(), 1u);
  EXPECT_THAT(ListDir(path_ + "/segments"), ElementsAre(left[1]));
}

// The file-size limit (RLIMIT_FSIZE) stands in for a disk that fails while
// the rows stream: the error comes back with its reason, nothing becomes
// visible, no file is left, and the old version is served, also after a
// restart.
TEST_F(DataDirTest, AWriteThatFailsMidUploadKeepsThePreviousVersion) {
  constexpr uint32_t kDim = 256;  // 1 KiB a row
  const std::vector<float> small = engram::testing::RandomMatrix(8, kDim, 26);
  const std::vector<float> large =
      engram::testing::RandomMatrix(2048, kDim, 27);
  Process p(path_);
  p.Load();
  ASSERT_TRUE(Upload(*p.collections, "docs", kDim, small).ok());

  struct LimitFileSize {
    LimitFileSize() {
      ::getrlimit(RLIMIT_FSIZE, &old_limit);
      old_handler = ::signal(SIGXFSZ, SIG_IGN);
      rlimit limit = old_limit;
      limit.rlim_cur = 512 << 10;
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    ~LimitFileSize() {
      ::setrlimit(RLIMIT_FSIZE, &old_limit);
      ::signal(SIGXFSZ, old_handler);
    }
    rlimit old_limit;
    sighandler_t old_handler;
  };
  absl::Status failed;
  {
    LimitFileSize limit;
    UploadOptions o;
    o.name = "docs";
    o.rows = 2048;
    auto upload = p.collections->BeginUpload(o);
    ASSERT_TRUE(upload.ok()) << upload.status();
    for (uint64_t r = 0; r < o.rows && failed.ok(); r += 64) {
      failed = (*upload)->Append(
          kernels::MatrixView{large.data() + r * kDim, 64, kDim});
    }
    if (failed.ok()) failed = (*upload)->Commit().status();
  }
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_THAT(failed.message(), HasSubstr(path_ + "/segments/"));
  EXPECT_THAT(failed.message(), HasSubstr("too large"));
  EXPECT_EQ((*p.collections->Get("docs"))->version(), 1u);
  EXPECT_THAT(ListDir(path_ + "/segments"), SizeIs(1));

  Process again(path_);
  again.Load();
  auto docs = *again.collections->Get("docs");
  EXPECT_EQ(docs->version(), 1u);
  EXPECT_EQ(RowsOf(*docs), small);
}

TEST_F(DataDirTest, ManifestFramingRejectsDamage) {
  storage::CollectionManifest m;
  m.set_name("docs");
  m.set_version(7);
  m.add_segments()->set_file("docs.1.seg");
  const std::string bytes = EncodeManifest(m);
  auto decoded = DecodeManifest("m", bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->version(), 7u);
  EXPECT_EQ(decoded->segments(0).file(), "docs.1.seg");
  for (size_t cut : {size_t{0}, size_t{10}, bytes.size() - 1}) {
    EXPECT_EQ(DecodeManifest("m", bytes.substr(0, cut)).status().code(),
              absl::StatusCode::kDataLoss)
        << cut;
  }
  std::string flipped = bytes;
  flipped[20] ^= 0x10;
  EXPECT_THAT(DecodeManifest("m", flipped).status().message(),
              HasSubstr("checksum"));
}

}  // namespace
}  // namespace engram::collections
