// The engram-cli command line: argument parsing, the text formats of its
// flags, request building, and whole runs against an in-process fake server
// (output, error format, exit codes, metadata).
#include "client/cli/commands.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/npy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_similarity_server.h"

namespace engram::client::cli {
namespace {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class CommandsTest : public ::testing::Test {
 protected:
  static std::string WriteTemp(const std::string& name,
                               const std::string& contents) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  static void ExpectParseError(const std::vector<std::string>& args,
                               const std::string& message) {
    auto invocation = ParseArgs(args);
    EXPECT_EQ(invocation.status().code(), absl::StatusCode::kInvalidArgument)
        << ::testing::PrintToString(args);
    EXPECT_THAT(invocation.status().message(), HasSubstr(message))
        << ::testing::PrintToString(args);
  }
};

TEST_F(CommandsTest, ParsesSubcommandAndFlags) {
  auto invocation =
      ParseArgs({"cosine", "--random=2,3,4", "--seed", "7", "--top_k=3",
                 "--min_score", "-0.5", "-placement=gpu", "--server=host:1",
                 "--timeout=2s", "--request_id=abc"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_FALSE(invocation->help);
  EXPECT_EQ(invocation->subcommand, Subcommand::kCosine);
  EXPECT_EQ(invocation->cosine.random, "2,3,4");
  EXPECT_EQ(invocation->cosine.seed, 7u);
  EXPECT_EQ(invocation->cosine.top_k, 3u);
  EXPECT_EQ(invocation->cosine.min_score, -0.5f);
  EXPECT_EQ(invocation->cosine.placement, "gpu");
  EXPECT_EQ(invocation->common.server, "host:1");
  EXPECT_EQ(invocation->common.timeout, absl::Seconds(2));
  EXPECT_EQ(invocation->common.request_id, "abc");
}

TEST_F(CommandsTest, FlagsNotGivenKeepDefaultsAndOptionalsStayUnset) {
  auto invocation = ParseArgs({"spread", "--graph=g.tsv", "--seeds=0:1"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->common.server, "127.0.0.1:50051");
  EXPECT_EQ(invocation->common.timeout, absl::Seconds(30));
  EXPECT_EQ(invocation->common.request_id, "");
  const SpreadOptions& spread = invocation->spread;
  EXPECT_EQ(spread.graph_path, "g.tsv");
  EXPECT_EQ(spread.seeds, "0:1");
  EXPECT_EQ(spread.num_nodes, std::nullopt);
  EXPECT_EQ(spread.max_hops, std::nullopt);
  EXPECT_EQ(spread.threshold, std::nullopt);
  EXPECT_EQ(spread.max_activation, std::nullopt);
  EXPECT_EQ(spread.decay, "");
  EXPECT_EQ(spread.hop_thresholds, "");
  EXPECT_EQ(spread.top_k, 0u);
  EXPECT_EQ(spread.placement, "auto");
}

TEST_F(CommandsTest, ParseDependsOnlyOnItsArguments) {
  ASSERT_TRUE(ParseArgs({"spread", "--top_k=5", "--max_hops=3"}).ok());
  auto invocation = ParseArgs({"spread"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->spread.top_k, 0u);
  EXPECT_EQ(invocation->spread.max_hops, std::nullopt);
}

TEST_F(CommandsTest, AsksForHelp) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"}, {"-h"}, {"help"}}) {
    auto invocation = ParseArgs(args);
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_TRUE(invocation->help);
    EXPECT_EQ(invocation->subcommand, std::nullopt);
  }
  auto invocation = ParseArgs({"cosine", "--top_k=x", "--help"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_TRUE(invocation->help);
  EXPECT_EQ(invocation->subcommand, Subcommand::kCosine);
  invocation = ParseArgs({"help", "spread"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->subcommand, Subcommand::kSpread);
}

TEST_F(CommandsTest, RejectsBadCommandLines) {
  ExpectParseError({}, "missing subcommand");
  ExpectParseError({"cosin"}, "unknown subcommand 'cosin'");
  ExpectParseError({"--server=x", "stats"}, "expected a subcommand before");
  ExpectParseError({"stats", "--top_k=3"}, "--top_k is not a flag of 'stats'");
  ExpectParseError({"cosine", "--graph=g"},
                   "--graph is not a flag of 'cosine'");
  ExpectParseError({"stats", "--verbose=1"}, "unknown flag --verbose");
  ExpectParseError({"cosine", "--top_k=abc"},
                   "invalid value 'abc' for --top_k");
  ExpectParseError({"cosine", "--top_k=-1"}, "invalid value '-1' for --top_k");
  ExpectParseError({"cosine", "--min_score=high"}, "for --min_score");
  ExpectParseError({"stats", "--timeout=soon"}, "for --timeout");
  ExpectParseError({"stats", "--timeout=0s"}, "--timeout must be positive");
  ExpectParseError({"stats", "--server"}, "--server needs a value");
  ExpectParseError({"stats", "extra"}, "unexpected argument 'extra'");
  ExpectParseError({"stats", "-"}, "unexpected argument '-'");
  ExpectParseError({"stats", "--request_id=a\tb"}, "printable ASCII");
  ExpectParseError({"stats", "--tls_ca_file=ca.pem", "--tls_cert_file=c.pem"},
                   "--tls_cert_file and --tls_key_file go together");
  ExpectParseError({"stats", "--tls_server_name=localhost"},
                   "need --tls_ca_file");
}

TEST_F(CommandsTest, TlsFlagsChooseTheChannelCredentials) {
  auto plain = ParseArgs({"stats"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto credentials = ChannelCredentialsFor(plain->common);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  auto tls = ParseArgs({"stats", "--tls_ca_file=/nonexistent/ca.pem"});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->common.tls_ca_file, "/nonexistent/ca.pem");
  EXPECT_EQ(ChannelCredentialsFor(tls->common).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CommandsTest, UsageTextDocumentsExitCodesAndFlags) {
  const std::string overview = UsageText(std::nullopt);
  EXPECT_THAT(overview, HasSubstr("Exit codes:"));
  EXPECT_THAT(overview, HasSubstr("2  usage or input error"));
  for (const char* name : {"cosine", "spread", "stats", "health", "--server",
                           "--timeout", "--request_id"}) {
    EXPECT_THAT(overview, HasSubstr(name));
  }
  const std::string spread = UsageText(Subcommand::kSpread);
  for (const char* flag :
       {"--graph=", "--num_nodes=", "--seeds=", "--max_hops=", "--decay=",
        "--threshold=", "--hop_thresholds=", "--max_activation=", "--top_k=",
        "--placement=", "--server=", "Exit codes:"}) {
    EXPECT_THAT(spread, HasSubstr(flag));
  }
  EXPECT_THAT(spread, Not(HasSubstr("--queries")));
}

TEST_F(CommandsTest, ParsesPlacement) {
  EXPECT_EQ(*ParsePlacement("auto"), v1::PLACEMENT_AUTO);
  EXPECT_EQ(*ParsePlacement("cpu"), v1::PLACEMENT_CPU_ONLY);
  EXPECT_EQ(*ParsePlacement("gpu"), v1::PLACEMENT_GPU_ONLY);
  EXPECT_THAT(ParsePlacement("GPU").status().message(),
              HasSubstr("not one of auto, cpu, gpu"));
}

TEST_F(CommandsTest, ParsesEachDecayKind) {
  struct Case {
    const char* text;
    v1::SpreadParams::DecayCase decay_case;
    float value;
  };
  for (const Case& c :
       {Case{"exponential:0.7", v1::SpreadParams::kExponentialRate, 0.7f},
        Case{"power_law:1.0", v1::SpreadParams::kPowerLawExponent, 1.0f},
        Case{"linear:0.5", v1::SpreadParams::kLinearSlope, 0.5f},
        Case{"constant: 0.9", v1::SpreadParams::kConstantFactor, 0.9f}}) {
    v1::SpreadParams params;
    ASSERT_TRUE(ParseDecay(c.text, &params).ok()) << c.text;
    EXPECT_EQ(params.decay_case(), c.decay_case) << c.text;
    const float value = params.exponential_rate() +
                        params.power_law_exponent() + params.linear_slope() +
                        params.constant_factor();
    EXPECT_EQ(value, c.value) << c.text;
  }
}

TEST_F(CommandsTest, RejectsBadDecayAndLeavesParamsAlone) {
  for (const auto& [text, message] :
       std::vector<std::pair<const char*, const char*>>{
           {"exponential", "expected KIND:VALUE"},
           {"cubic:2", "unknown kind 'cubic'"},
           {"linear:fast", "'fast' is not a number"},
           {"constant:nan", "is not finite"},
           {"power_law:", "is not a number"}}) {
    v1::SpreadParams params;
    const absl::Status status = ParseDecay(text, &params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(status.message(), HasSubstr(message)) << text;
    EXPECT_EQ(params.decay_case(), v1::SpreadParams::DECAY_NOT_SET) << text;
  }
}

TEST_F(CommandsTest, ParsesSeeds) {
  auto seeds = ParseSeeds("0:1, 5:0.5 ,4294967295:-2");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  ASSERT_EQ(seeds->size(), 3u);
  EXPECT_EQ((*seeds)[1].node, 5u);
  EXPECT_EQ((*seeds)[1].activation, 0.5f);
  EXPECT_EQ((*seeds)[2].node, 4294967295u);
  EXPECT_EQ((*seeds)[2].activation, -2.0f);
}

TEST_F(CommandsTest, RejectsBadSeeds) {
  for (const auto& [text, message] :
       std::vector<std::pair<const char*, const char*>>{
           {"", "no seeds given"},
           {"3", "seed '3': expected node:activation"},
           {"1:2:3", "expected node:activation"},
           {"0:1,", "seed '': expected node:activation"},
           {"-1:1", "node '-1' is not a 32-bit non-negative integer"},
           {"+1:1", "node '+1'"},
           {"4294967296:1", "node '4294967296'"},
           {"a:1", "node 'a'"},
           {"2:x", "seed '2:x': activation 'x' is not a number"},
           {"2:inf", "is not finite"}}) {
    auto seeds = ParseSeeds(text);
    EXPECT_EQ(seeds.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(seeds.status().message(), HasSubstr(message)) << text;
  }
}

TEST_F(CommandsTest, ParsesFloatLists) {
  auto values = ParseFloatList("0.01, 0.02,1e-3");
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_THAT(*values, ElementsAre(0.01f, 0.02f, 1e-3f));
  EXPECT_FALSE(ParseFloatList("").ok());
  EXPECT_FALSE(ParseFloatList("0.1,,0.2").ok());
  EXPECT_FALSE(ParseFloatList("0.1,nan").ok());
}

TEST_F(CommandsTest, BuildsCosineRequestFromRandomData) {
  CosineOptions options;
  options.random = "2,3,4";
  options.seed = 11;
  options.top_k = 2;
  options.placement = "cpu";
  auto request = BuildCosineRequest(options);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->queries().rows(), 2u);
  EXPECT_EQ(request->queries().cols(), 4u);
  EXPECT_EQ(request->targets().rows(), 3u);
  EXPECT_EQ(request->targets().values_size(), 12);
  EXPECT_EQ(request->top_k(), 2u);
  EXPECT_FALSE(request->has_min_score());
  EXPECT_EQ(request->placement(), v1::PLACEMENT_CPU_ONLY);

  auto again = BuildCosineRequest(options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), request->SerializeAsString());
  options.seed = 12;
  auto other = BuildCosineRequest(options);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->queries().SerializeAsString(),
            request->queries().SerializeAsString());

  options.min_score = 0.0f;
  auto with_min = BuildCosineRequest(options);
  ASSERT_TRUE(with_min.ok());
  EXPECT_TRUE(with_min->has_min_score());
}

TEST_F(CommandsTest, BuildsCosineRequestFromNpyFiles) {
  const std::string queries = ::testing::TempDir() + "/cli_queries.npy";
  const std::string targets = ::testing::TempDir() + "/cli_targets.npy";
  NpyWriteOptions one_dimensional;
  one_dimensional.one_dimensional = true;
  ASSERT_TRUE(WriteNpyFile(queries, {1, 2, {1, 0}}, one_dimensional).ok());
  ASSERT_TRUE(WriteNpyFile(targets, {2, 2, {0, 1, 1, 1}}).ok());
  CosineOptions options;
  options.queries_path = queries;
  options.targets_path = targets;
  auto request = BuildCosineRequest(options);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->queries().rows(), 1u);
  EXPECT_THAT(request->queries().values(), ElementsAre(1, 0));
  EXPECT_EQ(request->targets().rows(), 2u);
  EXPECT_THAT(request->targets().values(), ElementsAre(0, 1, 1, 1));
  EXPECT_EQ(request->placement(), v1::PLACEMENT_AUTO);

  options.targets_path = ::testing::TempDir() + "/cli_missing.npy";
  EXPECT_EQ(BuildCosineRequest(options).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CommandsTest, CosineRequiresExactlyOneDataSource) {
  CosineOptions none;
  EXPECT_THAT(BuildCosineRequest(none).status().message(),
              HasSubstr("give --queries and --targets"));
  CosineOptions both;
  both.random = "1,1,1";
  both.queries_path = "q.npy";
  both.targets_path = "t.npy";
  EXPECT_THAT(BuildCosineRequest(both).status().message(),
              HasSubstr("not both"));
  CosineOptions half;
  half.queries_path = "q.npy";
  EXPECT_THAT(BuildCosineRequest(half).status().message(),
              HasSubstr("must be given together"));
  CosineOptions bad_placement;
  bad_placement.random = "1,1,1";
  bad_placement.placement = "tpu";
  EXPECT_EQ(BuildCosineRequest(bad_placement).status().code(),
            absl::StatusCode::kInvalidArgument);
  CosineOptions bad_shape;
  bad_shape.random = "1,1";
  EXPECT_THAT(BuildCosineRequest(bad_shape).status().message(),
              HasSubstr("expected Q,N,D"));
}

TEST_F(CommandsTest, SpreadRequestSetsOnlyGivenParams) {
  SpreadOptions options;
  options.graph_path = WriteTemp("cli_graph.tsv", "0\t1\t0.5\n2\t0\t1\n");
  options.seeds = "0:1";
  auto request = BuildSpreadRequest(options);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->graph().num_nodes(), 3u);
  EXPECT_THAT(request->graph().row_offsets(), ElementsAre(0, 1, 1, 2));
  EXPECT_THAT(request->graph().targets(), ElementsAre(1, 0));
  ASSERT_EQ(request->seeds_size(), 1);
  EXPECT_EQ(request->seeds(0).activation(), 1.0f);
  const v1::SpreadParams& params = request->params();
  EXPECT_FALSE(params.has_max_hops());
  EXPECT_EQ(params.decay_case(), v1::SpreadParams::DECAY_NOT_SET);
  EXPECT_FALSE(params.has_threshold());
  EXPECT_EQ(params.hop_thresholds_size(), 0);
  EXPECT_FALSE(params.has_max_activation());
  EXPECT_EQ(request->top_k(), 0u);
  EXPECT_EQ(request->placement(), v1::PLACEMENT_AUTO);
}

TEST_F(CommandsTest, SpreadRequestCarriesEveryGivenParam) {
  SpreadOptions options;
  options.graph_path = WriteTemp("cli_graph_all.tsv", "0 1 0.5\n");
  options.num_nodes = 5;
  options.seeds = "0:1,4:0.5";
  options.max_hops = 0;
  options.decay = "linear:0.25";
  options.threshold = 0.0f;
  options.hop_thresholds = "0.01,0.02";
  options.max_activation = 2.0f;
  options.top_k = 3;
  options.placement = "gpu";
  auto request = BuildSpreadRequest(options);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->graph().num_nodes(), 5u);
  EXPECT_EQ(request->seeds_size(), 2);
  const v1::SpreadParams& params = request->params();
  EXPECT_TRUE(params.has_max_hops());
  EXPECT_EQ(params.max_hops(), 0u);
  EXPECT_EQ(params.linear_slope(), 0.25f);
  EXPECT_TRUE(params.has_threshold());
  EXPECT_THAT(params.hop_thresholds(), ElementsAre(0.01f, 0.02f));
  EXPECT_EQ(params.max_activation(), 2.0f);
  EXPECT_EQ(request->top_k(), 3u);
  EXPECT_EQ(request->placement(), v1::PLACEMENT_GPU_ONLY);
}

TEST_F(CommandsTest, SpreadRejectsBadInput) {
  const std::string graph = WriteTemp("cli_graph_bad.tsv", "0 3 1\n");
  SpreadOptions no_graph;
  no_graph.seeds = "0:1";
  EXPECT_THAT(BuildSpreadRequest(no_graph).status().message(),
              HasSubstr("--graph is required"));
  SpreadOptions no_seeds;
  no_seeds.graph_path = graph;
  EXPECT_THAT(BuildSpreadRequest(no_seeds).status().message(),
              HasSubstr("--seeds is required"));
  SpreadOptions too_few_nodes;
  too_few_nodes.graph_path = graph;
  too_few_nodes.seeds = "0:1";
  too_few_nodes.num_nodes = 3;
  EXPECT_THAT(BuildSpreadRequest(too_few_nodes).status().message(),
              HasSubstr("outside [0, 3)"));
  SpreadOptions bad_decay = too_few_nodes;
  bad_decay.num_nodes.reset();
  bad_decay.decay = "steep:1";
  EXPECT_THAT(BuildSpreadRequest(bad_decay).status().message(),
              HasSubstr("unknown kind 'steep'"));
  SpreadOptions bad_thresholds = too_few_nodes;
  bad_thresholds.num_nodes.reset();
  bad_thresholds.hop_thresholds = "0.1,x";
  EXPECT_THAT(BuildSpreadRequest(bad_thresholds).status().message(),
              HasSubstr("--hop_thresholds"));
  SpreadOptions bad_file = too_few_nodes;
  bad_file.num_nodes.reset();
  bad_file.graph_path = WriteTemp("cli_graph_syntax.tsv", "0 1\n");
  EXPECT_THAT(BuildSpreadRequest(bad_file).status().message(),
              HasSubstr("line 1: missing field"));
}

TEST_F(CommandsTest, ToJsonUsesProtoNamesAndPrintsDefaults) {
  v1::GetStatsResponse stats;
  stats.set_version("1.2.3");
  auto json = ToJson(stats);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, StartsWith("{"));
  EXPECT_THAT(*json, HasSubstr("\"version\":\"1.2.3\""));
  EXPECT_THAT(*json, HasSubstr("\"uptime_seconds\":0"));
  EXPECT_THAT(*json, HasSubstr("\"gpu_available\":false"));
  EXPECT_THAT(*json, HasSubstr("\"inflight_requests\":\"0\""));
  EXPECT_THAT(*json, Not(HasSubstr("\n")));
}

TEST_F(CommandsTest, FormatsErrorsWithCodeName) {
  EXPECT_EQ(FormatError(absl::ResourceExhaustedError("queue full")),
            "error: RESOURCE_EXHAUSTED: queue full");
}

TEST_F(CommandsTest, ParsesBenchFlags) {
  auto invocation = ParseArgs(
      {"bench", "--rpc=spread", "--random_graph=100,4", "--seeds=1:0.5",
       "--concurrency=8", "--rate=250.5", "--duration=3s", "--warmup=0s",
       "--format=json", "--method=/engram.bench.v1.Echo/Spread"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->subcommand, Subcommand::kBench);
  const BenchOptions& bench = invocation->bench;
  EXPECT_EQ(bench.rpc, "spread");
  EXPECT_EQ(bench.random_graph, "100,4");
  EXPECT_EQ(bench.concurrency, 8u);
  EXPECT_EQ(bench.rate, 250.5);
  EXPECT_EQ(bench.duration, absl::Seconds(3));
  EXPECT_EQ(bench.warmup, absl::ZeroDuration());
  EXPECT_EQ(bench.format, "json");
  EXPECT_EQ(bench.method, "/engram.bench.v1.Echo/Spread");
  EXPECT_EQ(invocation->spread.seeds, "1:0.5");

  auto defaults = ParseArgs({"bench", "--random=1,2,3"});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->bench.rpc, "cosine");
  EXPECT_EQ(defaults->bench.concurrency, 1u);
  EXPECT_EQ(defaults->bench.rate, 0.0);
  EXPECT_EQ(defaults->bench.format, "text");
  EXPECT_EQ(defaults->cosine.random, "1,2,3");
  ExpectParseError({"bench", "--service=x"},
                   "--service is not a flag of 'bench'");
  EXPECT_THAT(UsageText(Subcommand::kBench), HasSubstr("--concurrency=C"));
}

TEST_F(CommandsTest, BenchRequestCarriesTheShapeAndPerRequestCounts) {
  Invocation invocation;
  invocation.cosine.random = "3,50,16";
  auto cosine = BuildBenchRequest(invocation);
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_EQ(cosine->method, "/engram.similarity.v1.Similarity/BatchCosine");
  EXPECT_EQ(cosine->vectors, 50u);
  EXPECT_EQ(cosine->pairs, 150u);
  v1::BatchCosineRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(cosine->payload));
  EXPECT_EQ(parsed.targets().values_size(), 50 * 16);

  invocation.bench.rpc = "spread";
  invocation.bench.random_graph = "40,3";
  invocation.bench.method = "/engram.bench.v1.Echo/Spread";
  auto spread = BuildBenchRequest(invocation);
  ASSERT_TRUE(spread.ok()) << spread.status();
  EXPECT_EQ(spread->method, "/engram.bench.v1.Echo/Spread");
  EXPECT_EQ(spread->edges, 120u);
  v1::SpreadRequest graph;
  ASSERT_TRUE(graph.ParseFromString(spread->payload));
  EXPECT_EQ(graph.graph().num_nodes(), 40u);
  EXPECT_EQ(graph.seeds_size(), 1);  // the default seed 0:1
}

// Whole runs of the program against the fake server.
class CliRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::FakeSimilarityServer::Start();
    ASSERT_NE(server_, nullptr);
  }

  // Runs engram-cli with `args` (the program name is added) and the fake's
  // address; returns the exit code and fills out_ and err_.
  int RunCli(std::vector<std::string> args) {
    args.insert(args.begin(), "engram-cli");
    if (args.size() > 1 && args[1] != "--help") {
      args.push_back(absl::StrCat("--server=", server_->target()));
    }
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    out_.str("");
    err_.str("");
    return Main(static_cast<int>(argv.size()), argv.data(), out_, err_);
  }

  std::unique_ptr<testing::FakeSimilarityServer> server_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(CliRunTest, StatsPrintsOneJsonObjectAndExitsZero) {
  v1::GetStatsResponse stats;
  stats.set_version("0.1.0");
  stats.set_gpu_available(true);
  server_->similarity().SetStatsResponse(stats);
  EXPECT_EQ(RunCli({"stats"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith("{\"version\":\"0.1.0\""));
  EXPECT_THAT(out_.str(), HasSubstr("\"gpu_available\":true"));
  const std::string out = out_.str();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CliRunTest, CosineSendsGeneratedDataAndRequestId) {
  v1::BatchCosineResponse canned;
  canned.add_scores(0.25f);
  server_->similarity().SetCosineResponse(canned);
  EXPECT_EQ(RunCli({"cosine", "--random=1,1,8", "--seed=3", "--min_score=0.5",
                    "--top_k=1", "--request_id=cli-1"}),
            kExitOk)
      << err_.str();
  const v1::BatchCosineRequest sent =
      server_->similarity().last_cosine_request();
  EXPECT_EQ(sent.queries().cols(), 8u);
  EXPECT_EQ(sent.targets().rows(), 1u);
  EXPECT_TRUE(sent.has_min_score());
  EXPECT_EQ(sent.min_score(), 0.5f);
  EXPECT_EQ(server_->similarity().last_call().request_id, "cli-1");
  EXPECT_THAT(out_.str(), HasSubstr("\"scores\":[0.25]"));
}

TEST_F(CliRunTest, SpreadSendsTheGraphFile) {
  const std::string graph = ::testing::TempDir() + "/cli_run_graph.tsv";
  std::ofstream(graph) << "# demo\n0\t1\t0.5\n1\t2\t0.5\n";
  EXPECT_EQ(RunCli({"spread", "--graph=" + graph, "--seeds=0:1",
                    "--decay=constant:0.9", "--max_hops=2"}),
            kExitOk)
      << err_.str();
  const v1::SpreadRequest sent = server_->similarity().last_spread_request();
  EXPECT_EQ(sent.graph().num_nodes(), 3u);
  EXPECT_EQ(sent.params().constant_factor(), 0.9f);
  EXPECT_EQ(sent.params().max_hops(), 2u);
  EXPECT_FALSE(sent.params().has_threshold());
  EXPECT_THAT(out_.str(), HasSubstr("\"hops\":0"));
}

TEST_F(CliRunTest, RpcErrorPrintsCodeNameAndExitsOne) {
  server_->similarity().SetStatus(grpc::Status(
      grpc::StatusCode::INVALID_ARGUMENT, "queries.cols 3 != targets.cols 4"));
  EXPECT_EQ(RunCli({"cosine", "--random=1,1,1"}), kExitRpcError);
  EXPECT_EQ(err_.str(),
            "error: INVALID_ARGUMENT: queries.cols 3 != targets.cols 4\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliRunTest, InputErrorExitsTwoWithoutCalling) {
  EXPECT_EQ(RunCli({"cosine", "--queries=/nonexistent/q.npy",
                    "--targets=/nonexistent/t.npy"}),
            kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("error: NOT_FOUND: cannot open"));
  EXPECT_EQ(RunCli({"spread", "--graph=x.tsv"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--seeds is required"));
  EXPECT_EQ(RunCli({"stats", "--bogus=1"}), kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("error: INVALID_ARGUMENT: unknown flag"));
  EXPECT_EQ(server_->similarity().calls(), 0);
}

TEST_F(CliRunTest, HealthExitsZeroOnlyWhenServing) {
  server_->health().SetStatus("", health::HealthCheckResponse::SERVING);
  server_->health().SetStatus("down", health::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(RunCli({"health"}), kExitOk);
  EXPECT_EQ(out_.str(), "{\"status\":\"SERVING\"}\n");

  EXPECT_EQ(RunCli({"health", "--service=down"}), kExitRpcError);
  EXPECT_EQ(out_.str(), "{\"status\":\"NOT_SERVING\"}\n");

  EXPECT_EQ(RunCli({"health", "--service=unknown"}), kExitRpcError);
  EXPECT_THAT(err_.str(), StartsWith("error: NOT_FOUND: "));
}

TEST_F(CliRunTest, UnreachableServerExitsOne) {
  const std::string target = server_->target();
  server_.reset();
  std::vector<std::string> args = {"engram-cli", "health", "--server=" + target,
                                   "--timeout=5s"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  EXPECT_EQ(Main(static_cast<int>(argv.size()), argv.data(), out_, err_),
            kExitRpcError);
  EXPECT_THAT(err_.str(), StartsWith("error: UNAVAILABLE: "));
}

TEST_F(CliRunTest, HelpExitsZero) {
  EXPECT_EQ(RunCli({"--help"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("Exit codes:"));
  EXPECT_EQ(RunCli({"cosine", "--help"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("--random=Q,N,D"));
}

TEST_F(CliRunTest, BenchReportsThroughputAndLatencyAsJson) {
  EXPECT_EQ(RunCli({"bench", "--random=2,16,8", "--concurrency=2",
                    "--duration=200ms", "--warmup=50ms", "--format=json"}),
            kExitOk)
      << err_.str();
  const std::string out = out_.str();
  EXPECT_THAT(out, StartsWith("{\"target\":"));
  EXPECT_THAT(out, HasSubstr("\"shape\":\"BatchCosine Q=2 N=16 d=8 top_k=0\""));
  EXPECT_THAT(out, HasSubstr("\"errors\":{}"));
  EXPECT_THAT(out, HasSubstr("\"latency_ms\":{\"mean\":"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
  EXPECT_GT(server_->similarity().calls(), 0);
  EXPECT_EQ(server_->similarity().last_cosine_request().targets().rows(), 16u);
}

TEST_F(CliRunTest, BenchOpenLoopSendsExactlyTheScheduledCalls) {
  // 100 calls/s for 300 ms: calls are due at 0, 10, ..., 290 ms.
  EXPECT_EQ(RunCli({"bench", "--random=1,4,4", "--rate=100", "--concurrency=4",
                    "--duration=300ms", "--warmup=0s", "--format=json"}),
            kExitOk)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("\"ok\":30,"));
  EXPECT_EQ(server_->similarity().calls(), 30);
}

TEST_F(CliRunTest, BenchCountsErrorsByCodeAndExitsOneWhenNoneSucceed) {
  server_->similarity().SetStatus(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "overloaded"));
  EXPECT_EQ(RunCli({"bench", "--random=1,4,4", "--rate=50", "--duration=100ms",
                    "--warmup=0s", "--format=json"}),
            kExitRpcError);
  EXPECT_THAT(out_.str(), HasSubstr("\"ok\":0,"));
  EXPECT_THAT(out_.str(), HasSubstr("\"errors\":{\"UNAVAILABLE\":5}"));
}

TEST_F(CliRunTest, BenchCallsTheGivenMethodWithTheSameRequest) {
  EXPECT_EQ(RunCli({"bench", "--random=1,4,4", "--rate=50", "--duration=100ms",
                    "--warmup=0s", "--method=/engram.bench.v1.NoSuch/Method"}),
            kExitRpcError);
  EXPECT_THAT(out_.str(), HasSubstr("/engram.bench.v1.NoSuch/Method"));
  EXPECT_THAT(out_.str(), HasSubstr("errors: UNIMPLEMENTED 5"));
  EXPECT_EQ(server_->similarity().calls(), 0);
}

TEST_F(CliRunTest, BenchSpreadSendsARandomGraphAndReportsEdges) {
  EXPECT_EQ(
      RunCli({"bench", "--rpc=spread", "--random_graph=50,3", "--seeds=2:1",
              "--rate=50", "--duration=100ms", "--warmup=0s"}),
      kExitOk)
      << err_.str();
  const v1::SpreadRequest sent = server_->similarity().last_spread_request();
  EXPECT_EQ(sent.graph().num_nodes(), 50u);
  EXPECT_EQ(sent.graph().targets_size(), 150);
  EXPECT_EQ(sent.seeds(0).node(), 2u);
  // 5 calls of 150 edges in 0.1 s.
  EXPECT_THAT(out_.str(), HasSubstr("7500 edges/s"));
}

TEST_F(CliRunTest, BenchRejectsBadOptionsWithoutCalling) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"bench", "--random=1,1,1", "--concurrency=0"},
           {"bench", "--random=1,1,1", "--rate=-1"},
           {"bench", "--random=1,1,1", "--duration=0s"},
           {"bench", "--random=1,1,1", "--format=xml"},
           {"bench", "--random=1,1,1", "--rpc=stats"},
           {"bench", "--random=1,1,1", "--method=Echo"},
           {"bench", "--rpc=spread", "--random_graph=10"},
           {"bench"}}) {
    EXPECT_EQ(RunCli(args), kExitUsage) << ::testing::PrintToString(args);
    EXPECT_THAT(err_.str(), StartsWith("error: INVALID_ARGUMENT: "))
        << ::testing::PrintToString(args);
  }
  EXPECT_EQ(server_->similarity().calls(), 0);
}

}  // namespace
}  // namespace engram::client::cli
