// MailboxService over real gRPC (loopback, a port the kernel picks) on a
// MailStore on a real LocalStore (RocksDB in a temp dir), with a token
// signer the service trusts and a libs/mailstore_client client: the setup
// service_test and watch_test share.
#ifndef MAILGRID_SERVICES_MAILSTORE_TESTING_SERVICE_FIXTURE_H_
#define MAILGRID_SERVICES_MAILSTORE_TESTING_SERVICE_FIXTURE_H_

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "libs/auth/token.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "libs/store/local_store.h"
#include "services/mailstore/authz.h"
#include "services/mailstore/mailbox_service.h"

namespace mailgrid::mailstore::testing {

class ServiceFixture : public ::testing::Test {
 protected:
  // Opens the store and starts the service with `options` (a test that
  // needs no options of its own calls it from SetUp).
  void StartService(ServiceOptions options) {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("mailstore_svc_", std::random_device{}());
    auto local = store::LocalStore::Open(dir_.string());
    ASSERT_TRUE(local.ok()) << local.status();
    kv_ = std::move(*local);
    store_ = std::make_unique<MailStore>(kv_.get(), StoreOptions());
    store_->SetCommitListener([this](const std::string&, const std::string& m) { hub_.Notify(m); });
    signer_ = std::move(*auth::TokenSigner::Generate("k1"));
    auto verifier = std::make_unique<auth::TokenVerifier>("mailgrid");
    ASSERT_TRUE(verifier->AddPublicPem("k1", *signer_->PublicPem()).ok());
    authz_ = std::make_unique<Authorizer>(std::move(verifier), store_.get());
    service_ =
        std::make_unique<MailboxServiceImpl>(store_.get(), authz_.get(), &hub_, std::move(options));
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_GT(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
    client_ = std::move(*mailstore_client::MailstoreClient::FromFlag(address_, nullptr));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    service_.reset();
    store_.reset();
    kv_.reset();
    std::filesystem::remove_all(dir_);
  }

  static auth::Claims Claims(std::string sub, std::string tenant, std::vector<std::string> mbx,
                             std::vector<std::string> roles, std::string svc = "",
                             absl::Duration valid_for = absl::Minutes(10)) {
    auth::Claims c;
    c.issuer = "mailgrid";
    c.subject = std::move(sub);
    c.tenant_id = std::move(tenant);
    c.mailbox_ids = std::move(mbx);
    c.roles = std::move(roles);
    c.service = std::move(svc);
    c.scope = "full";
    c.issued_at = absl::Now();
    c.expires_at = absl::Now() + valid_for;
    return c;
  }
  std::string Bearer(const auth::Claims& c) { return "Bearer " + *signer_->Sign(c); }
  // Creates a mailbox through the RPC, as service_opts_.
  void CreateMailboxByRpc(const std::string& id, const std::string& tenant,
                          const std::string& owner) {
    v1::CreateMailboxRequest r;
    r.set_mailbox_id(id);
    r.set_tenant_id(tenant);
    r.set_owner_id(owner);
    r.set_kind(common::v1::MAILBOX_KIND_USER);
    auto got = client_->CreateMailbox(0, r, service_opts_);
    ASSERT_TRUE(got.ok()) << got.status();
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> kv_;
  std::unique_ptr<MailStore> store_;
  std::unique_ptr<auth::TokenSigner> signer_;
  std::unique_ptr<Authorizer> authz_;
  WatchHub hub_;
  std::unique_ptr<MailboxServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<mailstore_client::MailstoreClient> client_;
  mailstore_client::CallOptions service_opts_;  // a service's token (set by the test)
};

}  // namespace mailgrid::mailstore::testing

#endif  // MAILGRID_SERVICES_MAILSTORE_TESTING_SERVICE_FIXTURE_H_
