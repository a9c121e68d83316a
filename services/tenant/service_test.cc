// TenantService and DomainService end to end in one process: a real gRPC
// server on loopback over LocalStore (real RocksDB), real tokens, and a
// scripted resolver for the DNS side (the real one is exercised with
// dnsmasq in tenant_integration_test.py).

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "libs/kv/keys.h"
#include "libs/store/local_store.h"
#include "mailgrid/tenant/v1/directory.pb.h"
#include "services/tenant/domain_service.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/tenant_test_base.h"

namespace mailgrid::tenant {
namespace {

class FakeResolver final : public Resolver {
 public:
  absl::StatusOr<Lookups> LookupAll(const std::vector<LookupKey>& queries) override {
    absl::MutexLock lock(&mu);
    if (down) return absl::UnavailableError("resolver down");
    Lookups out;
    for (const auto& q : queries) {
      auto it = zone.find(q);
      LookupResult r;
      r.kind = it == zone.end() ? LookupResult::Kind::kNoData : LookupResult::Kind::kFound;
      if (it != zone.end()) r.values = it->second;
      out[q] = r;
    }
    return out;
  }
  void Set(const std::string& name, v1::DnsRecordType type, std::vector<std::string> values) {
    absl::MutexLock lock(&mu);
    zone[{name, type}] = std::move(values);
  }
  absl::Mutex mu;
  std::map<LookupKey, std::vector<std::string>> zone;
  bool down = false;
};

using tenanttest::Details;
using tenanttest::RpcError;

class ServiceTest : public tenanttest::TenantStoreTest {
 protected:
  void SetUp() override {
    OpenStore("tenant_service_test_");
    if (HasFatalFailure()) return;
    options_.max_document_bytes = 2 << 20;
    options_.mx_hosts_raw = {"mx1.mg.example:10"};
    options_.cluster_hostname = "mail.mg.example";
    ASSERT_TRUE(Finish(options_).ok());
    auto resolver = std::make_unique<FakeResolver>();
    dns_ = resolver.get();
    tenants_ = std::make_unique<TenantServiceImpl>(store_.get(), auth_.get(), &options_);
    domains_ = std::make_unique<DomainServiceImpl>(store_.get(), auth_.get(), &options_,
                                                   std::move(resolver),
                                                   *KeySealer::Create(std::string(32, 'k')));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(tenants_.get());
    builder.RegisterService(domains_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    tenant_stub_ = v1::TenantService::NewStub(channel);
    domain_stub_ = v1::DomainService::NewStub(channel);
    operator_ = Mint("", {auth::kRolePlatformOperator});
    reviewer_ = Mint("", {auth::kRolePlatformReviewer});
  }
  void ReleaseServices() override {
    domains_.reset();
    tenants_.reset();
  }
  std::string Mint(const std::string& tenant, std::vector<std::string> roles,
                   const std::string& subject = "u1") {
    return Sign(tenant, std::move(roles), subject);
  }

  v1::RegisterTenantRequest Registration(const std::string& name, const std::string& email) {
    v1::RegisterTenantRequest r;
    r.set_company_name(name);
    r.mutable_address()->set_street("1 Example Road");
    r.mutable_address()->set_city("Beijing");
    r.mutable_address()->set_country_code("cn");
    r.mutable_contact()->set_name("张伟");
    r.mutable_contact()->set_phone("+86 138 0013 8000");
    r.mutable_contact()->set_email(email);
    return r;
  }

  // Registers a company; returns (tenant id, onboarding token).
  std::pair<std::string, std::string> Register(const std::string& name, const std::string& email) {
    v1::RegisterTenantResponse resp;
    auto ctx = Ctx("");
    grpc::Status s = tenant_stub_->RegisterTenant(ctx.get(), Registration(name, email), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.tenant().tenant_id(), resp.onboarding_token()};
  }

  grpc::Status Upload(const std::string& token, const std::string& tenant, const std::string& bytes,
                      v1::Document* out, size_t piece = 700 << 10) {
    auto ctx = Ctx(token);
    auto writer = tenant_stub_->UploadDocument(ctx.get(), out);
    v1::UploadDocumentRequest first;
    first.mutable_metadata()->set_tenant_id(tenant);
    first.mutable_metadata()->set_kind(v1::DOCUMENT_KIND_BUSINESS_LICENCE);
    first.mutable_metadata()->set_filename("营业执照.pdf");
    writer->Write(first);
    for (size_t i = 0; i < bytes.size(); i += piece) {
      v1::UploadDocumentRequest chunk;
      chunk.set_chunk(bytes.substr(i, piece));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Review(const std::string& token, const std::string& tenant, v1::ReviewDecision d,
                      const std::string& reason = "") {
    v1::ReviewTenantRequest req;
    req.set_tenant_id(tenant);
    req.set_decision(d);
    req.set_reason(reason);
    v1::Tenant out;
    auto ctx = Ctx(token);
    return tenant_stub_->ReviewTenant(ctx.get(), req, &out);
  }

  v1::Tenant Get(const std::string& token, const std::string& tenant,
                 grpc::Status* status = nullptr) {
    v1::GetTenantRequest req;
    req.set_tenant_id(tenant);
    v1::Tenant out;
    auto ctx = Ctx(token);
    grpc::Status s = tenant_stub_->GetTenant(ctx.get(), req, &out);
    if (status) *status = s;
    return out;
  }

  std::string Pdf(size_t size) {
    std::string pdf = "%PDF-1.4\n";
    while (pdf.size() < size) pdf.push_back(static_cast<char>('a' + pdf.size() % 26));
    return pdf;
  }

  // A tenant walked to ACTIVE with a plan allowing `domains` domains.
  std::pair<std::string, std::string> ActiveTenant(const std::string& name,
                                                   const std::string& email, int domains) {
    auto [id, token] = Register(name, email);
    v1::Document doc;
    EXPECT_TRUE(Upload(token, id, Pdf(1000), &doc).ok());
    EXPECT_TRUE(Review(reviewer_, id, v1::REVIEW_DECISION_APPROVE).ok());
    v1::CreatePlanRequest plan;
    plan.mutable_plan()->set_name("plan-" + name);
    plan.mutable_plan()->mutable_mailboxes()->set_value(10);
    plan.mutable_plan()->mutable_domains()->set_value(domains);
    v1::Plan created;
    auto c1 = Ctx(operator_);
    EXPECT_TRUE(tenant_stub_->CreatePlan(c1.get(), plan, &created).ok());
    v1::SetTenantPlanRequest set;
    set.set_plan_id(created.plan_id());
    v1::Tenant t;
    auto c2 = Ctx(token);
    EXPECT_TRUE(tenant_stub_->SetTenantPlan(c2.get(), set, &t).ok());
    return {id, token};
  }

  size_t KeysUnder(const std::string& prefix) { return store_->ScanAll(prefix, true)->size(); }

  Options options_;
  FakeResolver* dns_ = nullptr;
  std::unique_ptr<TenantServiceImpl> tenants_;
  std::unique_ptr<DomainServiceImpl> domains_;
  std::unique_ptr<v1::TenantService::Stub> tenant_stub_;
  std::unique_ptr<v1::DomainService::Stub> domain_stub_;
  std::string operator_, reviewer_;
};

TEST_F(ServiceTest, RegisterValidatesAndDetectsDuplicates) {
  auto [id, token] = Register("北京示例科技有限公司", "li@example.cn");
  EXPECT_TRUE(absl::StartsWith(token, "mgot_"));
  grpc::Status s;
  v1::Tenant t = Get(token, id, &s);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.company_name(), "北京示例科技有限公司");  // byte-exact round trip
  EXPECT_EQ(t.contact().phone(), "+8613800138000");
  EXPECT_EQ(t.address().country_code(), "CN");
  EXPECT_EQ(t.state(), v1::TENANT_STATE_PENDING_DOCUMENTS);
  EXPECT_TRUE(t.onboarding_token_active());

  // Same company, same email in another case, other phone: a duplicate.
  auto dup = Registration("北京示例科技有限公司", "LI@example.cn");
  dup.mutable_contact()->set_phone("+86 139 0000 0000");
  v1::RegisterTenantResponse resp;
  auto ctx = Ctx("");
  s = tenant_stub_->RegisterTenant(ctx.get(), dup, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_NE(s.error_message().find("email"), std::string::npos);

  // Bad input: named field, precise reason, nothing written.
  size_t before = KeysUnder(keys::TenantRegistryPrefix());
  for (auto [field, value, reason] : {std::tuple{"contact.phone", "call me", "NOT_E164"},
                                      std::tuple{"contact.email", "not-an-address", "BAD_ADDRESS"},
                                      std::tuple{"company_name", "   ", "EMPTY"}}) {
    auto bad = Registration("Other Co", "o@example.com");
    if (std::string(field) == "contact.phone") bad.mutable_contact()->set_phone(value);
    if (std::string(field) == "contact.email") bad.mutable_contact()->set_email(value);
    if (std::string(field) == "company_name") bad.set_company_name(value);
    auto c = Ctx("");
    s = tenant_stub_->RegisterTenant(c.get(), bad, &resp);
    RpcError e = Details(s);
    EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_EQ(e.field, field);
    EXPECT_EQ(e.reason, reason);
    EXPECT_TRUE(absl::StartsWith(e.message, field)) << e.message;
  }
  EXPECT_EQ(KeysUnder(keys::TenantRegistryPrefix()), before);
}

TEST_F(ServiceTest, AuthorizationMatrix) {
  auto [a, token_a] = Register("Alpha Co", "a@alpha.example");
  auto [b, token_b] = Register("Beta Co", "b@beta.example");
  grpc::Status s;

  // No token, and a forged token: UNAUTHENTICATED with one message.
  Get("", a, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto other_signer = *auth::TokenSigner::Generate("k1");
  auth::Claims c;
  c.issuer = "mailgrid";
  c.subject = "x";
  c.roles = {auth::kRolePlatformOperator};
  c.issued_at = absl::Now();
  c.expires_at = absl::Now() + absl::Hours(1);
  std::string forged = *other_signer->Sign(c);
  grpc::Status s2;
  Get(forged, a, &s2);
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), s2.error_message());
  Get("mgot_notatoken", a, &s2);
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Tenant A's admin asking for B: NOT_FOUND, worded as for an absent tenant.
  Get(token_a, b, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "tenant " + b + " not found");
  Get(operator_, "t-doesnotexist", &s2);
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s2.error_message(), "tenant t-doesnotexist not found");
  // A JWT tenant admin of A alike; an empty tenant_id means its own tenant.
  std::string admin_a = Mint(a, {auth::kRoleTenantAdmin});
  Get(admin_a, b, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get(admin_a, "", &s).tenant_id(), a);
  EXPECT_TRUE(s.ok());

  // Known caller, wrong role: PERMISSION_DENIED.
  Get(Mint(a, {auth::kRoleUser}), a, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Review(token_a, a, v1::REVIEW_DECISION_APPROVE).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Review(token_a, b, v1::REVIEW_DECISION_APPROVE).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Review(operator_, a, v1::REVIEW_DECISION_APPROVE).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::SuspendTenantRequest suspend;
  suspend.set_tenant_id(a);
  suspend.set_reason("x");
  v1::Tenant out;
  auto ctx = Ctx(reviewer_);
  EXPECT_EQ(tenant_stub_->SuspendTenant(ctx.get(), suspend, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListTenantsRequest list;
  v1::ListTenantsResponse listed;
  auto c3 = Ctx(token_a);
  EXPECT_EQ(tenant_stub_->ListTenants(c3.get(), list, &listed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto c4 = Ctx(operator_);
  ASSERT_TRUE(tenant_stub_->ListTenants(c4.get(), list, &listed).ok());
  EXPECT_EQ(listed.tenants_size(), 2);

  // Documents: the tenant uploads but cannot download, even its own.
  v1::Document doc;
  ASSERT_TRUE(Upload(token_a, a, Pdf(3000), &doc).ok());
  v1::DownloadDocumentRequest dl;
  dl.set_document_id(doc.document_id());
  v1::DownloadDocumentResponse part;
  auto c5 = Ctx(token_a);
  auto r1 = tenant_stub_->DownloadDocument(c5.get(), dl);
  while (r1->Read(&part)) {
  }
  EXPECT_EQ(r1->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto c6 = Ctx(token_b);
  auto r2 = tenant_stub_->DownloadDocument(c6.get(), dl);
  while (r2->Read(&part)) {
  }
  EXPECT_EQ(r2->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  // The onboarding token stops working once revoked.
  v1::RevokeOnboardingTokenRequest revoke;
  v1::RevokeOnboardingTokenResponse revoked;
  auto c7 = Ctx(token_a);
  ASSERT_TRUE(tenant_stub_->RevokeOnboardingToken(c7.get(), revoke, &revoked).ok());
  Get(token_a, a, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServiceTest, DocumentsAndReview) {
  auto [id, token] = Register("Gamma Co", "g@gamma.example");
  // Approve with no documents: the state machine's precise refusal.
  grpc::Status s = Review(reviewer_, id, v1::REVIEW_DECISION_APPROVE);
  RpcError e = Details(s);
  EXPECT_EQ(e.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(e.reason, "WRONG_STATE");
  EXPECT_NE(e.message.find("PENDING_DOCUMENTS"), std::string::npos);

  // Not a PDF/PNG/JPEG, and too large: refused, nothing stored, no state change.
  v1::Document doc;
  e = Details(Upload(token, id, "GIF89a this is a gif", &doc));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "UNSUPPORTED_TYPE");
  e = Details(Upload(token, id, Pdf((2 << 20) + 1), &doc));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "TOO_LARGE");
  EXPECT_NE(e.message.find("2 MiB"), std::string::npos);
  e = Details(Upload(token, id, "", &doc));
  EXPECT_EQ(e.reason, "EMPTY");
  EXPECT_EQ(KeysUnder(kv::KeyBuilder(kv::TenantPrefix(id)).Str("docdata").Build()), 0u);
  EXPECT_EQ(KeysUnder(keys::DocumentPrefix(id)), 0u);
  EXPECT_EQ(Get(token, id).state(), v1::TENANT_STATE_PENDING_DOCUMENTS);

  // A 1.5 MiB PDF: three stored chunks, SHA-256 recorded, UNDER_REVIEW.
  std::string pdf = Pdf(1536 << 10);
  ASSERT_TRUE(Upload(token, id, pdf, &doc).ok());
  EXPECT_EQ(doc.content_type(), "application/pdf");
  EXPECT_EQ(doc.size_bytes(), static_cast<int64_t>(pdf.size()));
  EXPECT_EQ(doc.sha256(), Hex(Sha256(pdf)));
  EXPECT_EQ(doc.filename(), "营业执照.pdf");
  EXPECT_EQ(KeysUnder(keys::DocumentChunkPrefix(id, doc.document_id())), 3u);
  EXPECT_EQ(Get(token, id).state(), v1::TENANT_STATE_UNDER_REVIEW);

  // The reviewer downloads exactly the bytes.
  v1::DownloadDocumentRequest dl;
  dl.set_document_id(doc.document_id());
  auto ctx = Ctx(reviewer_);
  auto reader = tenant_stub_->DownloadDocument(ctx.get(), dl);
  v1::DownloadDocumentResponse part;
  std::string got;
  ASSERT_TRUE(reader->Read(&part));
  EXPECT_EQ(part.metadata().sha256(), doc.sha256());
  while (reader->Read(&part)) got += part.chunk();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, pdf);

  // Reject needs a reason; rejected may upload again; then approve.
  EXPECT_EQ(Details(Review(reviewer_, id, v1::REVIEW_DECISION_REJECT)).field, "reason");
  ASSERT_TRUE(Review(reviewer_, id, v1::REVIEW_DECISION_REJECT, "licence expired").ok());
  v1::Tenant t = Get(token, id);
  EXPECT_EQ(t.state(), v1::TENANT_STATE_REJECTED);
  EXPECT_EQ(t.state_reason(), "licence expired");
  std::string png("\x89PNG\r\n\x1a\n", 8);
  png += std::string(100, 'x');
  ASSERT_TRUE(Upload(token, id, png, &doc).ok());
  EXPECT_EQ(doc.content_type(), "image/png");
  ASSERT_TRUE(Review(reviewer_, id, v1::REVIEW_DECISION_APPROVE).ok());
  EXPECT_EQ(Get(token, id).state(), v1::TENANT_STATE_ACTIVE);
  // ACTIVE: no more uploads.
  EXPECT_EQ(Details(Upload(token, id, Pdf(100), &doc)).reason, "WRONG_STATE");

  v1::ListTenantEventsRequest ev;
  ev.set_tenant_id(id);
  v1::ListTenantEventsResponse events;
  auto c2 = Ctx(token);
  ASSERT_TRUE(tenant_stub_->ListTenantEvents(c2.get(), ev, &events).ok());
  std::vector<std::string> actions;
  for (const auto& event : events.events()) actions.push_back(event.action());
  EXPECT_EQ(actions, (std::vector<std::string>{"registered", "document_uploaded", "rejected",
                                               "document_uploaded", "approved"}));
  EXPECT_EQ(events.events(2).reason(), "licence expired");
  EXPECT_EQ(events.events(2).to_state(), v1::TENANT_STATE_REJECTED);
  EXPECT_EQ(events.events(2).actor().user_id(), "u1");

  // Suspend / resume / delete / resume-from-deleted.
  v1::DeleteTenantRequest del;
  del.set_tenant_id(id);
  auto c3 = Ctx(operator_);
  EXPECT_EQ(Details(tenant_stub_->DeleteTenant(c3.get(), del, &t)).field, "reason");
  del.set_reason("customer asked");
  auto c4 = Ctx(operator_);
  ASSERT_TRUE(tenant_stub_->DeleteTenant(c4.get(), del, &t).ok());
  EXPECT_EQ(t.state(), v1::TENANT_STATE_DELETED);
  EXPECT_GT(t.purge_after().seconds(), absl::ToUnixSeconds(absl::Now() + absl::Hours(24 * 29)));
  v1::ResumeTenantRequest resume;
  resume.set_tenant_id(id);
  auto c5 = Ctx(operator_);
  ASSERT_TRUE(tenant_stub_->ResumeTenant(c5.get(), resume, &t).ok());
  EXPECT_EQ(t.state(), v1::TENANT_STATE_SUSPENDED);
}

TEST_F(ServiceTest, PlansDomainsChecksDriftAndRotation) {
  auto [id, token] = ActiveTenant("Delta Co", "d@delta.example", 1);
  // Add an IDN domain: stored as A-labels.
  v1::AddDomainRequest add;
  add.set_name("例子.中国");
  v1::Domain domain;
  auto c1 = Ctx(token);
  grpc::Status s = domain_stub_->AddDomain(c1.get(), add, &domain);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(domain.name(), "xn--fsqu00a.xn--fiqs8s");
  EXPECT_EQ(domain.unicode_name(), "例子.中国");
  EXPECT_EQ(domain.state(), v1::DOMAIN_STATE_PENDING_VERIFICATION);
  ASSERT_EQ(domain.dkim_keys_size(), 2);

  // Plan allows one domain; bad names; someone else's claim.
  add.set_name("second.example");
  auto c2 = Ctx(token);
  RpcError e = Details(domain_stub_->AddDomain(c2.get(), add, &domain));
  EXPECT_EQ(e.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_EQ(e.limits.size(), 1u);
  EXPECT_EQ(e.limits[0].limit(), "plan.domains");
  EXPECT_EQ(e.limits[0].usage(), 1);
  add.set_name("not a domain");
  auto c3 = Ctx(token);
  e = Details(domain_stub_->AddDomain(c3.get(), add, &domain));
  EXPECT_EQ(e.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.reason, "NOT_A_DOMAIN");
  auto [other, other_token] = ActiveTenant("Epsilon Co", "e@eps.example", 5);
  add.set_name("XN--FSQU00A.xn--fiqs8s.");
  auto c4 = Ctx(other_token);
  EXPECT_EQ(domain_stub_->AddDomain(c4.get(), add, &domain).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  // ...and cannot see it.
  v1::GetDomainRequest get;
  get.set_name("例子.中国");
  auto c5 = Ctx(other_token);
  s = domain_stub_->GetDomain(c5.get(), get, &domain);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "domain xn--fsqu00a.xn--fiqs8s not found");

  // A downgrade below usage is refused showing the usage.
  v1::CreatePlanRequest zero;
  zero.mutable_plan()->set_name("No domains");
  zero.mutable_plan()->mutable_domains()->set_value(0);
  v1::Plan zero_plan;
  auto c6 = Ctx(operator_);
  ASSERT_TRUE(tenant_stub_->CreatePlan(c6.get(), zero, &zero_plan).ok());
  v1::SetTenantPlanRequest set;
  set.set_plan_id(zero_plan.plan_id());
  v1::Tenant t;
  auto c7 = Ctx(token);
  e = Details(tenant_stub_->SetTenantPlan(c7.get(), set, &t));
  EXPECT_EQ(e.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(e.reason, "LIMIT_BELOW_USAGE");
  ASSERT_EQ(e.limits.size(), 1u);
  EXPECT_EQ(e.limits[0].usage(), 1);
  EXPECT_NE(e.message.find("in use 1"), std::string::npos) << e.message;

  // DNS: nothing published yet -> MISSING, still pending.
  const std::string name = "xn--fsqu00a.xn--fiqs8s";
  v1::CheckDomainRequest check;
  check.set_name(name);
  v1::DomainRecords records;
  auto c8 = Ctx(token);
  ASSERT_TRUE(domain_stub_->CheckDomain(c8.get(), check, &records).ok());
  EXPECT_EQ(records.domain().state(), v1::DOMAIN_STATE_PENDING_VERIFICATION);
  std::string token_value;
  for (const auto& r : records.records()) {
    EXPECT_EQ(r.check().status(), v1::RECORD_CHECK_STATUS_MISSING) << r.name();
    if (r.purpose() == v1::DNS_RECORD_PURPOSE_VERIFICATION) token_value = r.value();
  }
  // Publish the verification TXT and MX: VERIFIED.
  dns_->Set("_mailgrid-verification." + name, v1::DNS_RECORD_TYPE_TXT, {token_value});
  dns_->Set(name, v1::DNS_RECORD_TYPE_MX, {"10 mx1.mg.example"});
  auto c9 = Ctx(token);
  ASSERT_TRUE(domain_stub_->CheckDomain(c9.get(), check, &records).ok());
  EXPECT_EQ(records.domain().state(), v1::DOMAIN_STATE_VERIFIED);
  EXPECT_EQ(records.domain().verification_method(), v1::VERIFICATION_METHOD_DNS);

  // The MX moves away: the background recheck flags drift and audits it.
  dns_->Set(name, v1::DNS_RECORD_TYPE_MX, {"10 mx.other-provider.example"});
  ASSERT_EQ(*domains_->RecheckAll(), 1);
  auto c10 = Ctx(token);
  ASSERT_TRUE(domain_stub_->GetDomain(c10.get(), get, &domain).ok());
  EXPECT_EQ(domain.state(), v1::DOMAIN_STATE_VERIFIED);
  EXPECT_TRUE(domain.has_drift_detected_at());
  auto audit = store_->ScanAll(keys::AuditPrefix(id));
  bool drift_audited = false;
  for (const auto& kv : *audit) {
    v1::AdminAuditEntry entry;
    entry.ParseFromString(kv.value());
    if (entry.action() == "domain.drift") {
      drift_audited = true;
      EXPECT_NE(entry.summary().find("mx.other-provider.example"), std::string::npos)
          << entry.summary();
    }
  }
  EXPECT_TRUE(drift_audited);
  // Resolver down: UNAVAILABLE, nothing changes.
  dns_->down = true;
  auto c11 = Ctx(token);
  EXPECT_EQ(domain_stub_->CheckDomain(c11.get(), check, &records).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  dns_->down = false;

  // DKIM rotation: BEGIN, SWITCH refused until published, SWITCH, RETIRE.
  v1::RotateDkimRequest rot;
  rot.set_name(name);
  rot.set_step(v1::DKIM_ROTATION_STEP_SWITCH);
  auto c12 = Ctx(token);
  EXPECT_EQ(Details(domain_stub_->RotateDkim(c12.get(), rot, &domain)).reason,
            "ROTATION_NOT_STARTED");
  rot.set_step(v1::DKIM_ROTATION_STEP_BEGIN);
  auto c13 = Ctx(token);
  ASSERT_TRUE(domain_stub_->RotateDkim(c13.get(), rot, &domain).ok());
  ASSERT_EQ(domain.dkim_keys_size(), 4);
  rot.set_step(v1::DKIM_ROTATION_STEP_SWITCH);
  auto c14 = Ctx(token);
  EXPECT_EQ(Details(domain_stub_->RotateDkim(c14.get(), rot, &domain)).reason,
            "NEW_KEY_NOT_PUBLISHED");
  rot.set_force(true);
  auto c15 = Ctx(token);
  EXPECT_EQ(domain_stub_->RotateDkim(c15.get(), rot, &domain).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  rot.set_force(false);
  std::vector<std::string> fresh;
  for (const auto& k : domain.dkim_keys()) {
    if (k.state() == v1::DKIM_KEY_STATE_PUBLISHED) {
      dns_->Set(k.selector() + "._domainkey." + name, v1::DNS_RECORD_TYPE_TXT, {k.txt_value()});
      fresh.push_back(k.selector());
    }
  }
  ASSERT_EQ(fresh.size(), 2u);
  auto c16 = Ctx(token);
  ASSERT_TRUE(domain_stub_->RotateDkim(c16.get(), rot, &domain).ok());

  // relayd's view: the two new keys, decrypted; tenant admins may not ask.
  v1::GetDkimSigningKeyRequest sk;
  sk.set_domain(name);
  v1::GetDkimSigningKeyResponse keys;
  auto c17 = Ctx(Mint("", {auth::kRoleService}, "relayd"));
  ASSERT_TRUE(domain_stub_->GetDkimSigningKey(c17.get(), sk, &keys).ok());
  ASSERT_EQ(keys.keys_size(), 2);
  EXPECT_EQ(keys.version(), 2);
  for (const auto& k : keys.keys()) {
    EXPECT_NE(std::find(fresh.begin(), fresh.end(), k.selector()), fresh.end());
    EXPECT_TRUE(absl::StartsWith(k.private_key_pem(), "-----BEGIN PRIVATE KEY-----"));
  }
  auto c18 = Ctx(token);
  EXPECT_EQ(domain_stub_->GetDkimSigningKey(c18.get(), sk, &keys).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  rot.set_step(v1::DKIM_ROTATION_STEP_RETIRE);
  auto c19 = Ctx(token);
  ASSERT_TRUE(domain_stub_->RotateDkim(c19.get(), rot, &domain).ok());
  int retired = 0;
  for (const auto& k : domain.dkim_keys()) retired += k.state() == v1::DKIM_KEY_STATE_RETIRED;
  EXPECT_EQ(retired, 2);

  // Operator override is audited with its reason.
  v1::OverrideVerificationRequest ov;
  ov.set_name(name);
  auto c20 = Ctx(operator_);
  EXPECT_EQ(Details(domain_stub_->OverrideVerification(c20.get(), ov, &domain)).field, "reason");
  auto c21 = Ctx(token);
  ov.set_reason("demo");
  EXPECT_EQ(domain_stub_->OverrideVerification(c21.get(), ov, &domain).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

}  // namespace
}  // namespace mailgrid::tenant
