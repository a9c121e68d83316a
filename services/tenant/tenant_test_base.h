// What tenantd's in-process service tests share (ServiceTest in
// service_test.cc, DirectoryTest in directory_test_fixture.h): a LocalStore
// (real RocksDB) per test under $TMPDIR, the TenantStore over it, a token
// signer with the Authenticator that trusts it, and one TearDown that stops
// the gRPC server and the services before it closes the store and removes
// its directory (each test's RocksDB used to stay in $TMPDIR).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/client_context.h"
#include "grpcpp/server.h"
#include "gtest/gtest.h"
#include "libs/auth/token.h"
#include "libs/store/local_store.h"
#include "mailgrid/common/v1/common.pb.h"
#include "services/tenant/authz.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant::tenanttest {

// A failed call's status with its ErrorDetail / LimitDetails unpacked.
struct RpcError {
  grpc::StatusCode code;
  std::string message, reason, field;
  std::vector<common::v1::LimitDetail> limits;
};

inline RpcError Details(const grpc::Status& s) {
  RpcError e{s.error_code(), s.error_message(), "", "", {}};
  common::v1::RpcStatus r;
  if (!s.error_details().empty() && r.ParseFromString(s.error_details())) {
    for (const auto& any : r.details()) {
      common::v1::ErrorDetail d;
      common::v1::LimitDetail l;
      if (any.UnpackTo(&d)) {
        e.reason = d.reason();
        e.field = d.field();
      } else if (any.UnpackTo(&l)) {
        e.limits.push_back(l);
      }
    }
  }
  return e;
}

class TenantStoreTest : public ::testing::Test {
 protected:
  // First in SetUp (the caller then checks HasFatalFailure): the store in
  // $TMPDIR/<prefix><test name>, emptied first, and a signer "k1" whose
  // tokens auth_ accepts.
  void OpenStore(const std::string& prefix) {
    dir_ = ::testing::TempDir() + "/" + prefix +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    auto local = store::LocalStore::Open(dir_);
    ASSERT_TRUE(local.ok()) << local.status();
    kv_ = std::move(*local);
    store_ = std::make_unique<TenantStore>(kv_.get());
    signer_ = *auth::TokenSigner::Generate("k1");
    auto verifier = std::make_unique<auth::TokenVerifier>("mailgrid");
    ASSERT_TRUE(verifier->AddPublicPem("k1", *signer_->PublicPem()).ok());
    auth_ = std::make_unique<Authenticator>(std::move(verifier), store_.get());
  }

  // Stops the server, then (ReleaseServices) everything that uses the
  // store, closes the store and removes its directory. Subclasses with
  // threads of their own stop them first, then call this.
  void TearDown() override {
    if (server_) server_->Shutdown();  // null when SetUp failed early
    server_.reset();
    ReleaseServices();
    auth_.reset();
    store_.reset();
    kv_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  // Drops the services built over store_ (the server has stopped).
  virtual void ReleaseServices() = 0;

  // A token signed by signer_, valid for an hour.
  std::string Sign(const std::string& tenant, std::vector<std::string> roles,
                   const std::string& subject) {
    auth::Claims c;
    c.issuer = "mailgrid";
    c.subject = subject;
    c.tenant_id = tenant;
    c.roles = std::move(roles);
    c.issued_at = absl::Now();
    c.expires_at = absl::Now() + absl::Hours(1);
    return *signer_->Sign(c);
  }
  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  std::string dir_;
  std::unique_ptr<store::LocalStore> kv_;
  std::unique_ptr<TenantStore> store_;
  std::unique_ptr<auth::TokenSigner> signer_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace mailgrid::tenant::tenanttest
