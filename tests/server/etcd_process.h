// Starts a one-member etcd (Debian's etcd-server) on free loopback ports for
// tests of shared mode, and stops or restarts it on the same data.
#ifndef ENGRAM_TESTS_SERVER_ETCD_PROCESS_H_
#define ENGRAM_TESTS_SERVER_ETCD_PROCESS_H_

#include <memory>
#include <string>

#include "tests/server/child_process.h"

namespace engram::testing {

class EtcdProcess {
 public:
  // Starts etcd (the binary named by ENGRAM_ETCD at build time) in a new
  // temporary data folder and waits until it answers a read; null, with a
  // test failure recorded, when it does not.
  static std::unique_ptr<EtcdProcess> Start();
  // Kills etcd and removes its data.
  ~EtcdProcess();

  // As a crash would: SIGKILL, no goodbye to the clients.
  void Kill();
  // Starts it again on the same data, serving clients on `client_port`.
  bool Restart(int client_port);

  int client_port() const { return client_port_; }
  // "127.0.0.1:PORT", as an etcd:// catalog URL names it.
  std::string endpoint() const;
  // What etcd logged.
  std::string log() const;

 private:
  EtcdProcess() = default;
  bool Run(int client_port);

  std::string dir_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_SERVER_ETCD_PROCESS_H_
