// TLS and mutual TLS on the gRPC port of the real engram-server binary, with
// certificates the test makes with openssl: who holds a valid certificate is
// served, everyone else is refused before any RPC runs.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/requests.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for localhost/127.0.0.1 and a client
// certificate it signed, and a second, unrelated CA with a client
// certificate of its own; made once for the whole test program.
class Certificates {
 public:
  static const Certificates& Get() {
    static const Certificates* const certs = new Certificates();
    return *certs;
  }
  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string pem(const std::string& name) const {
    return ReadFile(path(name));
  }
  bool ok() const { return ok_; }
  const std::string& log() const { return log_; }

 private:
  Certificates() {
    const char* tmp = std::getenv("TMPDIR");
    dir_ =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-tls-", getpid());
    // EC keys: fast to make. Certificates live one day.
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
    const std::vector<std::string> steps = {
        "mkdir -p " + dir_,
        "cd " + dir_ + " && openssl req -x509 -nodes " + key +
            " -keyout ca.key -out ca.pem -days 1 -subj /CN=engram-test-ca",
        "cd " + dir_ + " && openssl req -x509 -nodes " + key +
            " -keyout rogue-ca.key -out rogue-ca.pem -days 1"
            " -subj /CN=engram-rogue-ca",
        "cd " + dir_ +
            " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n"
            "extendedKeyUsage=serverAuth\\n' > server.ext"
            " && printf 'extendedKeyUsage=clientAuth\\n' > client.ext",
        Sign("server", "ca", "/CN=localhost", "server.ext"),
        Sign("client", "ca", "/CN=engram-test-client", "client.ext"),
        Sign("rogue-client", "rogue-ca", "/CN=engram-rogue-client",
             "client.ext"),
    };
    ok_ = true;
    for (const std::string& step : steps) {
      auto result = testing::RunCommand(step);
      if (!result.ok() || result->exit_code != 0) {
        ok_ = false;
        log_ = absl::StrCat(
            step, ":\n",
            result.ok() ? result->output : result.status().ToString());
        return;
      }
    }
  }

  std::string Sign(const std::string& name, const std::string& ca,
                   const std::string& subject, const std::string& ext) {
    return absl::StrCat("cd ", dir_,
                        " && openssl req -nodes -newkey ec -pkeyopt "
                        "ec_paramgen_curve:prime256v1 -keyout ",
                        name, ".key -out ", name, ".csr -subj ", subject,
                        " && openssl x509 -req -in ", name, ".csr -CA ", ca,
                        ".pem -CAkey ", ca, ".key -CAcreateserial -out ", name,
                        ".pem -days 1 -extfile ", ext);
  }

  std::string dir_;
  bool ok_ = false;
  std::string log_;
};

// Removes the certificates once every test has run.
class CertificateCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    (void)testing::RunCommand("rm -rf " + Certificates::Get().dir());
  }
};
::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new CertificateCleanup);

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Certificates::Get().ok()) << Certificates::Get().log();
  }

  void Start(bool mutual) {
    const Certificates& c = Certificates::Get();
    std::vector<std::string> flags = {"--worker_threads=1",
                                      "--log_level=warning",
                                      "--tls_cert_file=" + c.path("server.pem"),
                                      "--tls_key_file=" + c.path("server.key")};
    if (mutual) flags.push_back("--tls_client_ca_file=" + c.path("ca.pem"));
    auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  // A BatchCosine over a channel with `credentials`; the target name is
  // localhost, as the server's certificate says.
  grpc::Status Call(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto stub = pb::Similarity::NewStub(
        grpc::CreateCustomChannel(server_->grpc_target(), credentials, args));
    grpc::ClientContext context;
    context.set_deadline(testing::ScaledDeadline(absl::Seconds(5)));
    pb::BatchCosineRequest request = client::MakeCosineRequest(
        *client::MakeMatrix(1, 3, testing::RandomMatrix(1, 3, 1)),
        *client::MakeMatrix(4, 3, testing::RandomMatrix(4, 3, 2)), 0,
        std::nullopt);
    pb::BatchCosineResponse response;
    grpc::Status status = stub->BatchCosine(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.scores_size(), 4);
    }
    return status;
  }

  static std::shared_ptr<grpc::ChannelCredentials> Tls(
      const std::string& client) {
    const Certificates& c = Certificates::Get();
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = c.pem("ca.pem");
    if (!client.empty()) {
      options.pem_private_key = c.pem(client + ".key");
      options.pem_cert_chain = c.pem(client + ".pem");
    }
    return grpc::SslCredentials(options);
  }

  std::unique_ptr<testing::ServerProcess> server_;
};

TEST_F(TlsTest, ServesAClientThatTrustsTheServersCertificate) {
  Start(/*mutual=*/false);
  const grpc::Status status = Call(Tls(""));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(TlsTest, RefusesPlaintextOnATlsPort) {
  Start(/*mutual=*/false);
  EXPECT_EQ(Call(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ClientRefusesAServerItsCaDidNotSign) {
  Start(/*mutual=*/false);
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = Certificates::Get().pem("rogue-ca.pem");
  EXPECT_EQ(Call(grpc::SslCredentials(options)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsServesAClientWithAValidCertificate) {
  Start(/*mutual=*/true);
  const grpc::Status status = Call(Tls("client"));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutACertificate) {
  Start(/*mutual=*/true);
  EXPECT_EQ(Call(Tls("")).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRefusesACertificateFromAnotherCa) {
  Start(/*mutual=*/true);
  EXPECT_EQ(Call(Tls("rogue-client")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRefusesPlaintext) {
  Start(/*mutual=*/true);
  EXPECT_EQ(Call(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, TheCliSpeaksMutualTls) {
  Start(/*mutual=*/true);
  const Certificates& c = Certificates::Get();
  const std::string base = absl::StrCat(
      ENGRAM_CLI_BINARY, " health --server=", server_->grpc_target(),
      " --tls_server_name=localhost", " --tls_ca_file=", c.path("ca.pem"));
  auto served = testing::RunCommand(
      absl::StrCat(base, " --tls_cert_file=", c.path("client.pem"),
                   " --tls_key_file=", c.path("client.key")));
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->exit_code, 0) << served->output;
  auto refused = testing::RunCommand(base);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->exit_code, 1) << refused->output;
  EXPECT_THAT(refused->output, HasSubstr("UNAVAILABLE"));
}

TEST_F(TlsTest, UnreadableOrHalfConfiguredTlsStopsStartUpWithTheReason) {
  const Certificates& c = Certificates::Get();
  struct Case {
    std::vector<std::string> flags;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{"--tls_cert_file=" + c.path("server.pem")}, "both a certificate"},
      {{"--tls_cert_file=/nonexistent/server.pem",
        "--tls_key_file=" + c.path("server.key")},
       "cannot read TLS file /nonexistent/server.pem"},
      {{"--tls_cert_file=" + c.path("server.ext"),
        "--tls_key_file=" + c.path("server.key")},
       "holds no PEM block"},
      {{"--tls_client_ca_file=" + c.path("ca.pem")}, "needs the server's"},
  };
  for (const Case& test : cases) {
    std::string command = ENGRAM_SERVER_BINARY;
    for (const std::string& flag : test.flags) command += " " + flag;
    command += " --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0";
    auto result = testing::RunCommand(command);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->exit_code, 2) << command << "\n" << result->output;
    EXPECT_THAT(result->output, HasSubstr(test.reason)) << command;
  }
}

}  // namespace
}  // namespace engram
