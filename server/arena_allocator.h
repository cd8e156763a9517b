// ArenaMessageAllocator: puts each call's request and response on one
// protobuf Arena, so that parsing a request with many sub-messages (top-k
// lists, seeds) and building its response cost a few block allocations
// instead of one heap allocation per field, and the whole call is freed at
// once when gRPC releases it. Registered per method on the callback service
// (SetMessageAllocatorFor_<Method>).
//
// Thread-safety: AllocateMessages() may be called concurrently (it shares
// no state); each holder belongs to one call.
#ifndef ENGRAM_SERVER_ARENA_ALLOCATOR_H_
#define ENGRAM_SERVER_ARENA_ALLOCATOR_H_

#include "google/protobuf/arena.h"
#include "grpcpp/support/message_allocator.h"

namespace engram::server {

template <typename Request, typename Response>
class ArenaMessageAllocator final
    : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    return new Holder();
  }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options(initial_block_)) {
      this->set_request(
          google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(
          google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    // The first block lives in the holder itself: a small call allocates
    // nothing more. Large repeated fields get blocks of their own size.
    static google::protobuf::ArenaOptions Options(char* initial_block) {
      google::protobuf::ArenaOptions options;
      options.initial_block = initial_block;
      options.initial_block_size = sizeof(initial_block_);
      options.max_block_size = 1 << 20;
      return options;
    }

    alignas(16) char initial_block_[2048];
    google::protobuf::Arena arena_;
  };
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_ARENA_ALLOCATOR_H_
