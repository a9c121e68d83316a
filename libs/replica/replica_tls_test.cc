// Replica-to-replica traffic over mutual TLS: a group whose members present
// certificates from one CA replicates; a member whose certificate comes from
// another CA is refused by the others and never receives the log.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/replica/channel.h"
#include "libs/replica/client_store.h"
#include "libs/replica/kv_client.h"
#include "libs/replica/replica.h"
#include "libs/replica/replica_flags.h"
#include "libs/replica/testing/test_cluster.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"

namespace mailgrid::replica {
namespace {

using testing::PutRequest;
using testing::TestCluster;
using testing::WaitUntil;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

// Two CAs, each signing a certificate for 127.0.0.1/localhost usable as
// server and client certificate, made with the openssl CLI as an operator
// would.
struct TestPki {
  std::string dir;
  ReplicaTls good, rogue;

  TestPki() {
    dir = ::testing::TempDir() + "/replica_tls_test_pki";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n";
    good = Issue("cluster");
    rogue = Issue("rogue");
  }

  ReplicaTls Issue(const std::string& name) {
    const std::string p = dir + "/" + name;
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + p +
        "-ca.key -out " + p + "-ca.pem -days 2 -subj /CN=" + name + "-ca");
    Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + p +
        ".key -out " + p + ".csr -subj /CN=localhost");
    Run("openssl x509 -req -in " + p + ".csr -CA " + p + "-ca.pem -CAkey " + p +
        "-ca.key -CAcreateserial -out " + p + ".pem -days 2 -extfile " + dir + "/ext");
    ReplicaTls tls;
    tls.ca_file = p + "-ca.pem";
    tls.cert_file = p + ".pem";
    tls.key_file = p + ".key";
    return tls;
  }

  static void Run(const std::string& cmd) {
    ASSERT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  }
};

kv::v1::GetRequest StaleGet(const std::string& key) {
  kv::v1::GetRequest req;
  req.set_key(key);
  req.set_consistency(kv::v1::STALE);
  return req;
}

grpc::Status GetStatusWith(const std::string& address, const ReplicaTls& tls) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeReplicaChannel(address, tls);
  if (!channel.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad tls files");
  auto stub = raft::v1::RaftService::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(In(absl::Seconds(10))));
  raft::v1::GetStatusRequest req;
  req.set_group_id("test");
  raft::v1::GetStatusResponse resp;
  return stub->GetStatus(&ctx, req, &resp);
}

TEST(ReplicaTlsTest, GroupReplicatesOverMutualTlsAndRefusesAMemberFromAnotherCa) {
  TestPki pki;
  ReplicaOptions base = TestCluster::DefaultOptions();
  base.peer_tls = pki.good;
  TestCluster c(base);
  ASSERT_EQ(c.StartGroup(3), absl::OkStatus());
  const raft::NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);

  // A write commits on a majority over TLS and reaches every member.
  absl::StatusOr<kv::v1::WriteResponse> w =
      c.replica(leader).Write(PutRequest("\x02t/tls", "secret"), In(absl::Seconds(30)));
  ASSERT_TRUE(w.ok()) << w.status();
  for (raft::NodeId id = 1; id <= 3; ++id) {
    ASSERT_TRUE(c.WaitApplied(id, w->applied_index())) << "node " << id;
    absl::StatusOr<kv::v1::GetResponse> r =
        c.replica(id).Get(StaleGet("\x02t/tls"), In(absl::Seconds(5)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->value(), "secret") << "node " << id;
  }

  // KvClient with the cluster's CA and a client certificate works.
  KvClientOptions ko;
  ASSERT_TRUE(ParseAddressList(c.AddressList()).ok());
  ko.addresses = *ParseAddressList(c.AddressList());
  ko.tls = pki.good;
  auto client = KvClient::Create(ko);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<kv::v1::WriteResponse> cw =
      (*client)->Write(PutRequest("\x02t/client", "v"), absl::Seconds(30));
  ASSERT_TRUE(cw.ok()) << cw.status();
  // So does the store a service builds over the group (ClientStore).
  auto store = ClientStore::Connect(ko.addresses, pki.good);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<kv::v1::WriteResponse> sw =
      (*store)->Write(PutRequest("\x02t/store", "v"), absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(sw.ok()) << sw.status();

  // The listeners refuse plain text, and certificates from another CA.
  EXPECT_TRUE(GetStatusWith(c.address(1), pki.good).ok());
  EXPECT_EQ(GetStatusWith(c.address(1), ReplicaTls{}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(GetStatusWith(c.address(1), pki.rogue).error_code(), grpc::StatusCode::UNAVAILABLE);
  ReplicaTls rogue_client = pki.good;  // trusts the cluster, but its own cert is rogue
  rogue_client.cert_file = pki.rogue.cert_file;
  rogue_client.key_file = pki.rogue.key_file;
  EXPECT_EQ(GetStatusWith(c.address(1), rogue_client).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // A member whose certificate comes from another CA cannot join: it is
  // added (the change commits without it), but the others refuse its
  // connections and it refuses theirs, so it never receives the log.
  const double failures_before = c.replica(leader).metrics().send_failures->Value();
  ReplicaOptions rogue = base;
  rogue.peer_tls = pki.rogue;
  ASSERT_EQ(c.StartJoiner(4, rogue), absl::OkStatus());
  absl::StatusOr<raft::Index> added =
      c.replica(leader).AddLearner(4, c.address(4), In(absl::Seconds(30)));
  ASSERT_TRUE(added.ok()) << added.status();
  absl::StatusOr<kv::v1::WriteResponse> w2 =
      c.replica(leader).Write(PutRequest("\x02t/tls", "after"), In(absl::Seconds(30)));
  ASSERT_TRUE(w2.ok()) << w2.status();
  for (raft::NodeId id = 1; id <= 3; ++id) {
    ASSERT_TRUE(c.WaitApplied(id, w2->applied_index())) << "node " << id;
  }
  // The leader's sends to it fail at the TLS handshake...
  EXPECT_TRUE(WaitUntil(
      [&] { return c.replica(leader).metrics().send_failures->Value() > failures_before; }));
  // ...and in the meantime it applies nothing (a member that could connect
  // would catch up within a few heartbeats).
  EXPECT_FALSE(WaitUntil([&] { return c.replica(4).Status().applied > 0; }, absl::Seconds(5)));
  EXPECT_FALSE(c.replica(4).Ready());
}

// The daemon flags: a TLS listener makes the peer channels TLS, with the
// listener's certificate as client certificate and a CA from the flags.
TEST(ReplicaTlsTest, FlagsTurnPeerTlsOnWithTheListener) {
  RaftFlags r;
  r.id = 1;
  r.peers = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003";
  rpc::CommonConfig common;
  common.listen = "127.0.0.1:7001";
  common.data_dir = ::testing::TempDir();

  absl::StatusOr<ReplicaOptions> plain = MakeReplicaOptions(r, common, nullptr);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->peer_tls.enabled());

  common.tls_cert = "/pki/node.pem";
  common.tls_key = "/pki/node.key";
  common.tls_client_ca = "/pki/ca.pem";
  absl::StatusOr<ReplicaOptions> mtls = MakeReplicaOptions(r, common, nullptr);
  ASSERT_TRUE(mtls.ok()) << mtls.status();
  EXPECT_EQ(mtls->peer_tls.ca_file, "/pki/ca.pem");
  EXPECT_EQ(mtls->peer_tls.cert_file, "/pki/node.pem");
  EXPECT_EQ(mtls->peer_tls.key_file, "/pki/node.key");

  r.tls_ca = "/pki/raft-ca.pem";
  absl::StatusOr<ReplicaOptions> explicit_ca = MakeReplicaOptions(r, common, nullptr);
  ASSERT_TRUE(explicit_ca.ok()) << explicit_ca.status();
  EXPECT_EQ(explicit_ca->peer_tls.ca_file, "/pki/raft-ca.pem");

  // TLS listener, no CA anywhere: refused, naming the flag.
  r.tls_ca.clear();
  common.tls_client_ca.clear();
  if (std::getenv("MAILGRID_TLS_CA") == nullptr) {
    absl::StatusOr<ReplicaOptions> no_ca = MakeReplicaOptions(r, common, nullptr);
    EXPECT_TRUE(absl::IsInvalidArgument(no_ca.status())) << no_ca.status();
    EXPECT_NE(no_ca.status().message().find("--raft-tls-ca"), std::string::npos);
  }
  // A CA for the peers without a TLS listener makes no sense.
  common.tls_cert.clear();
  common.tls_key.clear();
  r.tls_ca = "/pki/raft-ca.pem";
  EXPECT_TRUE(absl::IsInvalidArgument(MakeReplicaOptions(r, common, nullptr).status()));
}

// --raft-compact-bytes: 64 MiB by default, 0 turns it off, and a tiny
// value (a unit mistake: 64 meaning MiB) is refused rather than compacting
// the log on every write.
TEST(ReplicaFlagsTest, CompactBytes) {
  RaftFlags r;
  r.id = 1;
  r.peers = "1=127.0.0.1:7001";
  rpc::CommonConfig common;
  common.listen = "127.0.0.1:7001";
  common.data_dir = ::testing::TempDir();
  absl::StatusOr<ReplicaOptions> o = MakeReplicaOptions(r, common, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->compact_log_bytes, 64u << 20);
  EXPECT_EQ(o->compact_log_entries, 20000u);
  r.compact_bytes = 0;
  o = MakeReplicaOptions(r, common, nullptr);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->compact_log_bytes, 0u);
  r.compact_bytes = 64;
  EXPECT_TRUE(absl::IsInvalidArgument(MakeReplicaOptions(r, common, nullptr).status()));
}

}  // namespace
}  // namespace mailgrid::replica
