// End-to-end tests of rows changed by id (UpsertRows, DeleteRows), row
// labels and filtered search: the real engram-server binary called through
// the generated stub, every search checked against the float64 reference
// over the rows that should exist, before and after a restart.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/reference.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

constexpr uint32_t kDim = 24;

struct Row {
  std::vector<float> vector;
  std::string kind;  // tag kind=...
  int64_t user = 0;  // tag user=...
  double t = 0;      // attribute t
};
// The rows that should exist, by id.
using Model = std::map<uint64_t, Row>;

class Server {
 public:
  explicit Server(std::vector<std::string> flags) {
    flags.push_back("--worker_threads=2");
    flags.push_back("--log_level=warning");
    auto process = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return;
    process_ = *std::move(process);
    stub_ = pb::Similarity::NewStub(grpc::CreateChannel(
        process_->grpc_target(), grpc::InsecureChannelCredentials()));
  }
  bool ok() const { return stub_ != nullptr; }
  pb::Similarity::Stub& stub() { return *stub_; }
  void Stop() {
    process_->Signal(SIGTERM);
    EXPECT_TRUE(process_->WaitForExit(testing::Scaled(absl::Seconds(30))).ok());
  }

 private:
  std::unique_ptr<testing::ServerProcess> process_;
  std::unique_ptr<pb::Similarity::Stub> stub_;
};

template <typename Call>
grpc::Status Invoke(Call call) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  return call(&context);
}

pb::RowLabels LabelsOf(const Row& row) {
  pb::RowLabels labels;
  pb::Tag* kind = labels.add_tags();
  kind->set_key("kind");
  kind->set_text(row.kind);
  pb::Tag* user = labels.add_tags();
  user->set_key("user");
  user->set_integer(row.user);
  (*labels.mutable_attributes())["t"] = row.t;
  return labels;
}

// A filter and the test's own reading of it.
struct Filter {
  pb::RowFilter proto;
  std::set<uint64_t> allow, deny;
  std::optional<std::string> kind;
  std::set<int64_t> users;
  bool users_negated = false;
  std::optional<double> t_min;

  bool Passes(uint64_t id, const Row& row) const {
    if (!allow.empty() && allow.count(id) == 0) return false;
    if (deny.count(id) > 0) return false;
    if (kind.has_value() && row.kind != *kind) return false;
    if (!users.empty() && (users.count(row.user) > 0) == users_negated) {
      return false;
    }
    if (t_min.has_value() && !(row.t >= *t_min)) return false;
    return true;
  }
};

Filter RandomFilter(std::mt19937_64& rng, uint64_t max_id) {
  Filter f;
  pb::PredicateList* all = f.proto.mutable_where()->mutable_all();
  if (rng() % 2 == 0) {
    f.kind = rng() % 2 ? "episode" : "concept";
    pb::TagMatch* tag = all->add_predicates()->mutable_tag();
    tag->set_key("kind");
    tag->add_values()->set_text(*f.kind);
  }
  if (rng() % 2 == 0) {
    f.users_negated = rng() % 2 == 0;
    pb::Predicate* p = all->add_predicates();
    pb::TagMatch* tag =
        f.users_negated ? p->mutable_not_()->mutable_tag() : p->mutable_tag();
    tag->set_key("user");
    for (int i = 0; i < 2; ++i) {
      const int64_t user = static_cast<int64_t>(rng() % 5);
      f.users.insert(user);
      tag->add_values()->set_integer(user);
    }
  }
  if (rng() % 2 == 0) {
    f.t_min = static_cast<double>(rng() % 100);
    pb::AttributeRange* range = all->add_predicates()->mutable_range();
    range->set_name("t");
    range->set_min(*f.t_min);
  }
  if (rng() % 4 == 0) {
    for (int i = 0; i < 30; ++i) {
      const uint64_t id = rng() % max_id;
      f.allow.insert(id);
      f.proto.add_allow_ids(id);
    }
  }
  if (rng() % 3 == 0) {
    for (int i = 0; i < 10; ++i) {
      const uint64_t id = rng() % max_id;
      f.deny.insert(id);
      f.proto.add_deny_ids(id);
    }
  }
  return f;
}

class RowChangesE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        ::testing::TempDir(), "/row_changes_e2e_", getpid(), "_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Flags() const {
    return {absl::StrCat("--data_dir=", dir_),
            "--resident_memory_bytes=268435456"};
  }

  // Upserts `count` rows with random ids below `max_id` into the model
  // and the server.
  void Upsert(pb::Similarity::Stub& stub, int count, uint64_t max_id) {
    pb::UpsertRowsRequest request;
    request.set_collection("memories");
    request.mutable_vectors()->set_cols(kDim);
    std::set<uint64_t> used;
    static const char* kKinds[] = {"episode", "concept", "fact"};
    std::uniform_real_distribution<float> value(-1, 1);
    std::vector<std::pair<uint64_t, Row>> rows;
    while (static_cast<int>(rows.size()) < count) {
      const uint64_t id = rng_() % max_id;
      if (!used.insert(id).second) continue;
      Row row;
      for (uint32_t c = 0; c < kDim; ++c) row.vector.push_back(value(rng_));
      row.kind = kKinds[rng_() % 3];
      row.user = static_cast<int64_t>(rng_() % 5);
      row.t = static_cast<double>(rng_() % 1000) / 10.0;
      request.add_ids(id);
      for (float v : row.vector) request.mutable_vectors()->add_values(v);
      *request.add_labels() = LabelsOf(row);
      rows.emplace_back(id, std::move(row));
    }
    request.mutable_vectors()->set_rows(static_cast<uint32_t>(rows.size()));
    uint64_t held = 0;
    for (const auto& [id, row] : rows) held += model_.count(id);
    pb::UpsertRowsResponse response;
    const grpc::Status status = Invoke([&](grpc::ClientContext* context) {
      return stub.UpsertRows(context, request, &response);
    });
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.replaced(), held);
    EXPECT_EQ(response.inserted(), rows.size() - held);
    for (auto& [id, row] : rows) model_[id] = std::move(row);
    EXPECT_EQ(response.collection().count(), model_.size());
  }

  void Delete(pb::Similarity::Stub& stub, int count, uint64_t max_id) {
    pb::DeleteRowsRequest request;
    request.set_collection("memories");
    std::set<uint64_t> ids;
    uint64_t held = 0;
    for (int i = 0; i < count; ++i) {
      const uint64_t id = rng_() % max_id;
      request.add_ids(id);
      if (ids.insert(id).second) held += model_.count(id);
    }
    pb::DeleteRowsResponse response;
    const grpc::Status status = Invoke([&](grpc::ClientContext* context) {
      return stub.DeleteRows(context, request, &response);
    });
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.deleted(), held);
    EXPECT_EQ(response.not_found(), ids.size() - held);
    for (uint64_t id : ids) model_.erase(id);
    EXPECT_EQ(response.collection().count(), model_.size());
  }

  // One search per mode (top-k and every score, with and without a
  // filter) against the float64 reference over the rows that pass.
  void ExpectSearchesMatch(pb::Similarity::Stub& stub, uint64_t max_id) {
    std::uniform_real_distribution<float> value(-1, 1);
    std::vector<float> queries(3 * kDim);
    for (float& v : queries) v = value(rng_);
    for (int round = 0; round < 4; ++round) {
      const bool filtered = round % 2 == 1;
      const uint32_t top_k = round < 2 ? 7 : 0;
      const Filter filter = filtered ? RandomFilter(rng_, max_id) : Filter();
      std::vector<uint64_t> ids;
      std::vector<float> targets;
      for (const auto& [id, row] : model_) {
        if (!filter.Passes(id, row)) continue;
        ids.push_back(id);
        targets.insert(targets.end(), row.vector.begin(), row.vector.end());
      }
      pb::SearchCollectionRequest request;
      request.set_collection("memories");
      request.mutable_queries()->set_rows(3);
      request.mutable_queries()->set_cols(kDim);
      for (float v : queries) request.mutable_queries()->add_values(v);
      request.set_top_k(top_k);
      if (filtered) *request.mutable_filter() = filter.proto;
      pb::SearchCollectionResponse response;
      const grpc::Status status = Invoke([&](grpc::ClientContext* context) {
        return stub.SearchCollection(context, request, &response);
      });
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(response.rows_searched(), ids.size());
      const std::vector<double> reference = testing::ReferenceCosine(
          queries.data(), 3, targets.data(), ids.size(), kDim);
      if (top_k == 0) {
        ASSERT_EQ(response.ids_size(), static_cast<int>(ids.size()));
        // Row order is the server's; compare by id.
        std::map<uint64_t, int> column;
        for (int j = 0; j < response.ids_size(); ++j) {
          column[response.ids(j)] = j;
        }
        ASSERT_EQ(response.scores_size(), static_cast<int>(3 * ids.size()));
        for (size_t q = 0; q < 3; ++q) {
          for (size_t j = 0; j < ids.size(); ++j) {
            ASSERT_EQ(column.count(ids[j]), 1u) << ids[j];
            EXPECT_NEAR(response.scores(
                            static_cast<int>(q * ids.size() + column[ids[j]])),
                        reference[q * ids.size() + j], 1e-5);
          }
        }
        continue;
      }
      ASSERT_EQ(response.results_size(), 3);
      for (size_t q = 0; q < 3; ++q) {
        std::vector<std::pair<double, uint64_t>> expected;
        for (size_t j = 0; j < ids.size(); ++j) {
          expected.emplace_back(reference[q * ids.size() + j], ids[j]);
        }
        std::sort(
            expected.begin(), expected.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
        expected.resize(std::min<size_t>(expected.size(), top_k));
        const pb::CollectionHits& hits = response.results(static_cast<int>(q));
        ASSERT_EQ(hits.ids_size(), static_cast<int>(expected.size()));
        for (size_t j = 0; j < expected.size(); ++j) {
          EXPECT_EQ(hits.ids(static_cast<int>(j)), expected[j].second)
              << "query " << q << " rank " << j;
          EXPECT_NEAR(hits.scores(static_cast<int>(j)), expected[j].first,
                      1e-5);
        }
      }
    }
  }

  std::string dir_;
  Model model_;
  std::mt19937_64 rng_{2024};
};

TEST_F(RowChangesE2ETest, SearchesSeeExactlyTheRowsThatShouldExist) {
  constexpr uint64_t kIds = 400;
  {
    Server server(Flags());
    ASSERT_TRUE(server.ok());
    pb::CreateCollectionRequest create;
    create.set_name("memories");
    create.set_dimension(kDim);
    pb::CollectionInfo info;
    ASSERT_TRUE(Invoke([&](grpc::ClientContext* context) {
                  return server.stub().CreateCollection(context, create, &info);
                }).ok());
    for (int round = 0; round < 8; ++round) {
      for (int op = 0; op < 12; ++op) {
        if (rng_() % 3 == 0) {
          Delete(server.stub(), 1 + static_cast<int>(rng_() % 20), kIds);
        } else {
          Upsert(server.stub(), 1 + static_cast<int>(rng_() % 30), kIds);
        }
      }
      ExpectSearchesMatch(server.stub(), kIds);
    }
    server.Stop();
  }
  // What was written comes back.
  Server server(Flags());
  ASSERT_TRUE(server.ok());
  ExpectSearchesMatch(server.stub(), kIds);
  Upsert(server.stub(), 20, kIds);
  Delete(server.stub(), 20, kIds);
  ExpectSearchesMatch(server.stub(), kIds);
}

TEST_F(RowChangesE2ETest, BadCallsAreRefusedNamingTheField) {
  Server server(Flags());
  ASSERT_TRUE(server.ok());
  pb::CreateCollectionRequest create;
  create.set_name("memories");
  create.set_dimension(kDim);
  pb::CollectionInfo info;
  ASSERT_TRUE(Invoke([&](grpc::ClientContext* context) {
                return server.stub().CreateCollection(context, create, &info);
              }).ok());
  Upsert(server.stub(), 10, 100);

  auto search = [&](const pb::RowFilter& filter) {
    pb::SearchCollectionRequest request;
    request.set_collection("memories");
    request.mutable_queries()->set_rows(1);
    request.mutable_queries()->set_cols(kDim);
    for (uint32_t c = 0; c < kDim; ++c) {
      request.mutable_queries()->add_values(1);
    }
    request.set_top_k(3);
    *request.mutable_filter() = filter;
    pb::SearchCollectionResponse response;
    return Invoke([&](grpc::ClientContext* context) {
      return server.stub().SearchCollection(context, request, &response);
    });
  };
  pb::RowFilter no_condition;
  no_condition.mutable_where()->mutable_all()->add_predicates();
  grpc::Status status = search(no_condition);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("filter.where.all.predicates[0]"));
  pb::RowFilter no_bounds;
  no_bounds.mutable_where()->mutable_range()->set_name("t");
  status = search(no_bounds);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("filter.where.range"));

  pb::UpsertRowsRequest upsert;
  upsert.set_collection("memories");
  upsert.mutable_vectors()->set_rows(2);
  upsert.mutable_vectors()->set_cols(kDim);
  for (uint32_t i = 0; i < 2 * kDim; ++i) {
    upsert.mutable_vectors()->add_values(0.5f);
  }
  upsert.add_ids(1);
  pb::UpsertRowsResponse upserted;
  status = Invoke([&](grpc::ClientContext* context) {
    return server.stub().UpsertRows(context, upsert, &upserted);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ids has 1 entries"));
  upsert.add_ids(1);
  status = Invoke([&](grpc::ClientContext* context) {
    return server.stub().UpsertRows(context, upsert, &upserted);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("repeats id 1"));
  upsert.set_ids(1, 2);
  upsert.set_expected_version(999);
  status = Invoke([&](grpc::ClientContext* context) {
    return server.stub().UpsertRows(context, upsert, &upserted);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), HasSubstr("expected_version"));

  pb::DeleteRowsRequest remove;
  remove.set_collection("memories");
  for (uint64_t id = 1000; id < 3000; ++id) remove.add_ids(id);
  pb::DeleteRowsResponse removed;
  status = Invoke([&](grpc::ClientContext* context) {
    return server.stub().DeleteRows(context, remove, &removed);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(removed.deleted(), 0u);
  EXPECT_EQ(removed.not_found(), 2000u);
  EXPECT_EQ(removed.not_found_ids_size(), 1024);

  // A collection uploaded without ids changes only whole.
  pb::UploadCollectionRequest header;
  header.mutable_header()->set_name("plain");
  header.mutable_header()->set_create(true);
  header.mutable_header()->set_dimension(kDim);
  header.mutable_header()->set_total_rows(1);
  pb::UploadCollectionRequest chunk;
  for (uint32_t c = 0; c < kDim; ++c) chunk.mutable_chunk()->add_vectors(1);
  {
    grpc::ClientContext context;
    pb::UploadCollectionResponse uploaded;
    auto writer = server.stub().UploadCollection(&context, &uploaded);
    ASSERT_TRUE(writer->Write(header));
    ASSERT_TRUE(writer->Write(chunk));
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  remove.set_collection("plain");
  status = Invoke([&](grpc::ClientContext* context) {
    return server.stub().DeleteRows(context, remove, &removed);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("without ids"));
}

}  // namespace
}  // namespace engram
