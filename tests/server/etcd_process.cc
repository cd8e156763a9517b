#include "tests/server/etcd_process.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/time_scale.h"

namespace engram::testing {
namespace {

constexpr char kEtcd[] = ENGRAM_ETCD;

std::string TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  static std::atomic<int> counter{0};
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-etcd-", getpid(),
                      "-", counter++);
}

}  // namespace

std::unique_ptr<EtcdProcess> EtcdProcess::Start() {
  if (std::string(kEtcd).empty()) {
    ADD_FAILURE() << "etcd was not found at build time: install the Debian "
                     "package etcd-server (scripts/install-deps.sh)";
    return nullptr;
  }
  auto etcd = std::unique_ptr<EtcdProcess>(new EtcdProcess());
  etcd->dir_ = TempDir();
  std::filesystem::create_directories(etcd->dir_);
  auto client = PickFreePort();
  auto peer = PickFreePort();
  EXPECT_TRUE(client.ok() && peer.ok());
  if (!client.ok() || !peer.ok()) return nullptr;
  etcd->peer_port_ = *peer;
  if (!etcd->Run(*client)) return nullptr;
  return etcd;
}

EtcdProcess::~EtcdProcess() {
  process_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void EtcdProcess::Kill() {
  if (process_ == nullptr) return;
  process_->Signal(SIGKILL);
  EXPECT_TRUE(process_->WaitForExit(Scaled(absl::Seconds(10))).ok());
  process_.reset();
}

bool EtcdProcess::Restart(int client_port) {
  Kill();
  return Run(client_port);
}

std::string EtcdProcess::endpoint() const {
  return absl::StrCat("127.0.0.1:", client_port_);
}

std::string EtcdProcess::log() const {
  std::ifstream in(dir_ + "/etcd.log");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool EtcdProcess::Run(int client_port) {
  client_port_ = client_port;
  const std::string client_url =
      absl::StrCat("http://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  const std::vector<std::string> args = {
      kEtcd,
      "--name=default",
      "--data-dir=" + dir_ + "/data",
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=default=" + peer_url,
      "--logger=zap",
      "--log-level=warn"};
  ChildProcess::Options child;
  child.stderr_path = dir_ + "/etcd.log";
  child.stdout_too = true;
  auto started = ChildProcess::Start(args, child);
  EXPECT_TRUE(started.ok()) << started.status();
  if (!started.ok()) return false;
  process_ = *std::move(started);

  // Answers once a Range goes through (a member that has elected itself).
  auto channel =
      grpc::CreateChannel(endpoint(), grpc::InsecureChannelCredentials());
  auto kv = etcdserverpb::KV::NewStub(channel);
  const absl::Time give_up = absl::Now() + Scaled(absl::Seconds(30));
  while (absl::Now() < give_up) {
    if (process_->Exited()) break;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    context.set_wait_for_ready(true);
    etcdserverpb::RangeRequest request;
    request.set_key("probe");
    etcdserverpb::RangeResponse response;
    if (kv->Range(&context, request, &response).ok()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ADD_FAILURE() << "etcd did not answer on " << endpoint() << ":\n" << log();
  return false;
}

}  // namespace engram::testing
