// Protobuf JSON into messages: both field name forms, and errors as one
// INVALID_ARGUMENT line naming the message type and the field.
#include "client/proto_json.h"

#include <utility>
#include <vector>

#include "engram/similarity/v1/similarity.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ProtoJsonTest, ParsesNestedFiltersInEitherFieldNameForm) {
  v1::RowFilter filter;
  ASSERT_TRUE(ParseProtoJson(
                  R"({"allow_ids":[1,"18446744073709551615"],"denyIds":[3],
                      "where":{"all":{"predicates":[
                        {"tag":{"key":"kind","values":[{"text":"episode"}]}},
                        {"not":{"range":{"name":"t","min":1,
                                         "max_exclusive":true}}}]}}})",
                  &filter)
                  .ok());
  EXPECT_THAT(filter.allow_ids(), ElementsAre(1u, 18446744073709551615u));
  EXPECT_THAT(filter.deny_ids(), ElementsAre(3u));
  const v1::PredicateList& all = filter.where().all();
  ASSERT_EQ(all.predicates_size(), 2);
  EXPECT_EQ(all.predicates(0).tag().values(0).text(), "episode");
  const v1::AttributeRange& range = all.predicates(1).not_().range();
  EXPECT_EQ(range.name(), "t");
  EXPECT_TRUE(range.has_min());
  EXPECT_FALSE(range.has_max());
  EXPECT_TRUE(range.max_exclusive());
}

TEST(ProtoJsonTest, ReplacesWhatTheMessageHeld) {
  v1::RowFilter filter;
  filter.add_deny_ids(9);
  ASSERT_TRUE(ParseProtoJson(R"({"allow_ids":[1]})", &filter).ok());
  EXPECT_EQ(filter.deny_ids_size(), 0);
}

TEST(ProtoJsonTest, ErrorsNameTheTypeAndTheFieldOnOneLine) {
  v1::RowFilter filter;
  for (const auto& [json, message] :
       std::vector<std::pair<const char*, const char*>>{
           {R"({"where":{"tag":{"key":"k","values":[{"integer":"x"}]}}})",
            "not a RowFilter in JSON: (where.tag.values[0].integer)"},
           {R"({"allowed_ids":[1]})", "allowed_ids: Cannot find field"},
           {R"({"allow_ids":[-1]})", "allow_ids"},
           {R"([])", "not a RowFilter in JSON: Root element must be a message"},
           {R"({"allow_ids":[1])", "Unexpected end"},
           {R"({} {})", "Parsing terminated before end of input"}}) {
    const absl::Status status = ParseProtoJson(json, &filter);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_THAT(status.message(), HasSubstr(message)) << json;
    EXPECT_THAT(status.message(), Not(HasSubstr("\n"))) << json;
  }
}

}  // namespace
}  // namespace engram::client
