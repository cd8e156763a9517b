// echo_server: the floor for the service's request path (bench/echo/
// echo.proto). Same gRPC library, server options and callback API as
// engram-server, and the same request messages, with the same allocator
// settings (server/malloc_tuning.h, at engram-server's default); the reply
// is a count computed inline on the gRPC thread. It serves plain unary
// methods, which gRPC parses before the handler runs; engram-server serves
// its unary methods as bidi streams read by a reactor
// (server/unary_call.h), so that a drain sees a call from its headers on.
// What the real server takes beyond this is its own overhead, that reactor
// included, plus the work.
//
//   echo_server --address=127.0.0.1:50061
//
// Runs until SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/echo/echo.grpc.pb.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_context.h"
#include "server/malloc_tuning.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50061", "Where to listen.");
ABSL_FLAG(int, max_message_bytes, 256 << 20,
          "Largest message accepted or sent (engram-server's default).");
ABSL_FLAG(int, malloc_trim_threshold, 64 << 20,
          "engram-server's flag of the same name, at its default: the floor "
          "pays the allocator costs the server pays; 0 keeps glibc's "
          "defaults.");

namespace engram::bench {
namespace {

namespace v1 = ::engram::similarity::v1;

class EchoService final : public engram::bench::v1::Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* BatchCosine(
      grpc::CallbackServerContext* context,
      const v1::BatchCosineRequest* request,
      engram::bench::v1::EchoReply* reply) override {
    reply->set_count(static_cast<uint64_t>(request->queries().values_size()) +
                     request->targets().values_size());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Spread(
      grpc::CallbackServerContext* context, const v1::SpreadRequest* request,
      engram::bench::v1::EchoReply* reply) override {
    reply->set_count(request->graph().targets_size());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

volatile std::sig_atomic_t stop_requested = 0;

void OnSignal(int) { stop_requested = 1; }

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const int trim = absl::GetFlag(FLAGS_malloc_trim_threshold);
      trim > 0 && !engram::server::RetainFreedMemory(trim)) {
    std::fprintf(stderr, "echo_server: mallopt refused the trim threshold\n");
  }
  engram::bench::EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_address),
                           grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "echo_server: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_address).c_str());
    return 1;
  }
  std::fprintf(stderr, "echo_server: listening on port %d\n", port);
  std::signal(SIGINT, engram::bench::OnSignal);
  std::signal(SIGTERM, engram::bench::OnSignal);
  while (!engram::bench::stop_requested) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  server->Shutdown();
  return 0;
}
