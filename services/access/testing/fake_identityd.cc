// A stand-in for identityd in accessd's end-to-end test, used while the
// directory CLI (mailctl user) is not there to create real users: it serves
// AuthService.CheckSasl for ONE account and mints the same MAIL-scope token
// identityd would (Ed25519, the cluster key), so accessd talks to a REAL
// mailstored with a real user token. At start it creates the account's
// mailboxes in mailstored (service token, as tenantd does).
//
//   access_fake_identityd LISTEN KEY_PEM MAILSTORED TENANT USER PASSWORD MAILBOX[,SHARED...]
//
// Test-only: never part of a deployment.
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "libs/auth/key_id.h"
#include "libs/auth/service_token.h"
#include "libs/auth/token.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"

namespace {

using namespace mailgrid;
namespace idv1 = identity::v1;

struct Account {
  std::string tenant, user, password;
  std::vector<std::string> mailboxes;
};

class FakeAuth final : public idv1::AuthService::Service {
 public:
  FakeAuth(Account a, std::unique_ptr<auth::TokenSigner> signer)
      : a_(std::move(a)), signer_(std::move(signer)) {}

  grpc::Status CheckSasl(grpc::ServerContext*, const idv1::CheckSaslRequest* r,
                         idv1::CheckSaslResponse* out) override {
    bool ok = (r->authcid() == a_.user && r->password() == a_.password) ||
              (!r->bearer_token().empty() && r->bearer_token() == "tok-" + a_.password);
    if (!ok) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "authentication failed");
    auth::Claims c;
    c.issuer = "mailgrid";
    c.subject = "u-" + a_.user;
    c.tenant_id = a_.tenant;
    c.address = a_.user;
    c.roles = {"user"};
    c.mailbox_ids = a_.mailboxes;
    c.scope = "mail";
    c.issued_at = absl::Now();
    c.expires_at = absl::Now() + absl::Hours(1);
    absl::StatusOr<std::string> token = signer_->Sign(c);
    if (!token.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "sign");
    out->set_tenant_id(a_.tenant);
    out->set_user_id(c.subject);
    out->set_address(a_.user);
    for (size_t i = 0; i < a_.mailboxes.size(); ++i) {
      common::v1::MailboxAccess* m = out->add_mailboxes();
      m->set_mailbox_id(a_.mailboxes[i]);
      m->set_address(i == 0 ? a_.user : "shared" + std::to_string(i) + "@example.test");
      m->set_shard(0);
      m->set_kind(i == 0 ? common::v1::MAILBOX_KIND_USER : common::v1::MAILBOX_KIND_SHARED);
    }
    out->mutable_session()->set_access_token(*token);
    return grpc::Status::OK;
  }

 private:
  Account a_;
  std::unique_ptr<auth::TokenSigner> signer_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: access_fake_identityd LISTEN KEY_PEM MAILSTORED TENANT USER PASSWORD "
                 "MAILBOX[,MAILBOX...]\n";
    return 2;
  }
  std::ifstream f(argv[2]);
  std::stringstream pem;
  pem << f.rdbuf();
  auto kid = auth::KeyIdOfPrivatePem(pem.str());
  if (!kid.ok()) {
    std::cerr << kid.status() << "\n";
    return 1;
  }
  auto signer = auth::TokenSigner::FromPrivatePem(*kid, pem.str());
  std::shared_ptr<auth::ServiceTokenSource> svc =
      std::move(auth::ServiceTokenSource::FromPem(pem.str(), "tenantd")).value();
  if (!signer.ok()) {
    std::cerr << signer.status() << "\n";
    return 1;
  }
  Account a{argv[4], argv[5], argv[6], absl::StrSplit(argv[7], ',')};

  // The mailboxes, as tenantd would create them (retry until mailstored
  // answers).
  auto client = mailstore_client::MailstoreClient::FromFlag(argv[3], svc);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  for (size_t i = 0; i < a.mailboxes.size(); ++i) {
    mailstore::v1::CreateMailboxRequest req;
    req.set_mailbox_id(a.mailboxes[i]);
    req.set_tenant_id(a.tenant);
    req.set_kind(i == 0 ? common::v1::MAILBOX_KIND_USER : common::v1::MAILBOX_KIND_SHARED);
    req.set_owner_id(i == 0 ? "u-" + a.user : a.mailboxes[i]);
    req.mutable_quota()->mutable_bytes()->set_value(1 << 30);
    req.mutable_quota()->mutable_messages()->set_unlimited(true);
    absl::Status last;
    for (int attempt = 0; attempt < 600; ++attempt) {
      auto r = (*client)->CreateMailbox(0, req);
      last = r.status();
      if (r.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (!last.ok()) {
      std::cerr << "CreateMailbox " << a.mailboxes[i] << ": " << last << "\n";
      return 1;
    }
  }

  FakeAuth service(a, std::move(*signer));
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort(argv[1], grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) return 1;
  std::cout << "ready " << port << std::endl;
  server->Wait();
  return 0;
}
