// mailctl tenant register|show|list|upload-doc|docs|download-doc|approve|
//   reject|suspend|resume|delete|events|usage|issue-token
// TenantService (protos/mailgrid/tenant/v1/tenant.proto) from the command
// line. Options and credentials: tenant_client.h.
#include <algorithm>
#include <fstream>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/tenant.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::tenant::v1;
using Stub = v1::TenantService::Stub;
using Channel = std::shared_ptr<grpc::Channel>;

std::string State(v1::TenantState s) { return EnumWord(v1::TenantState_Name(s), "TENANT_STATE_"); }

void PrintTenant(std::ostream& out, const v1::Tenant& t) {
  out << "tenant      " << t.tenant_id() << "\n"
      << "company     " << t.company_name() << "\n"
      << "state       " << State(t.state())
      << (t.state_reason().empty() ? "" : " (" + t.state_reason() + ")") << "\n"
      << "address     " << t.address().street() << ", " << t.address().postal_code()
      << (t.address().postal_code().empty() ? "" : " ") << t.address().city() << ", "
      << t.address().country_code() << "\n"
      << "contact     " << t.contact().name() << " <" << t.contact().email() << "> "
      << t.contact().phone() << "\n"
      << "plan        " << (t.plan_id().empty() ? "-" : t.plan_id()) << "\n"
      << "created     " << When(t.created_at().seconds()) << "\n";
  if (t.has_purge_after()) out << "purge after " << When(t.purge_after().seconds()) << "\n";
}

// The tenant a command is about: the first positional argument, or empty
// (= the caller's own tenant, from its token).
std::string TenantArg(const Args& a, size_t index = 0) {
  return index < a.positional.size() ? a.positional[index] : "";
}

absl::Status Register(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::RegisterTenantRequest req;
  std::string name, street, country, contact, phone, email;
  for (auto [flag, target] : {std::pair{"name", &name}, std::pair{"street", &street},
                              std::pair{"country", &country}, std::pair{"contact-name", &contact},
                              std::pair{"phone", &phone}, std::pair{"email", &email}}) {
    auto v = a.Required(flag);
    if (!v.ok()) return v.status();
    *target = *v;
  }
  req.set_company_name(name);
  req.mutable_address()->set_street(street);
  req.mutable_address()->set_city(a.Get("city"));
  req.mutable_address()->set_region(a.Get("region"));
  req.mutable_address()->set_postal_code(a.Get("postal-code"));
  req.mutable_address()->set_country_code(country);
  req.mutable_contact()->set_name(contact);
  req.mutable_contact()->set_phone(phone);
  req.mutable_contact()->set_email(email);
  req.set_plan_id(a.Get("plan"));
  v1::RegisterTenantResponse resp;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::TenantService::NewStub(ch)->RegisterTenant(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(resp) << "\n";
  } else {
    *inv.out << "registered tenant " << resp.tenant().tenant_id() << " ("
             << State(resp.tenant().state()) << ")\n"
             << "onboarding token (shown once; use it as --token until a tenant admin exists):\n"
             << resp.onboarding_token() << "\n";
  }
  return absl::OkStatus();
}

absl::Status Show(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::GetTenantRequest req;
  req.set_tenant_id(TenantArg(a));
  v1::Tenant t;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::TenantService::NewStub(ch)->GetTenant(ctx, req, &t);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(t) << "\n";
  } else {
    PrintTenant(*inv.out, t);
  }
  return absl::OkStatus();
}

absl::Status List(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::ListTenantsRequest req;
  req.set_name_contains(a.Get("name-contains"));
  for (absl::string_view st : absl::StrSplit(a.Get("state"), ',', absl::SkipEmpty())) {
    v1::TenantState state;
    if (!v1::TenantState_Parse(absl::StrCat("TENANT_STATE_", absl::AsciiStrToUpper(st)), &state)) {
      return absl::InvalidArgumentError(absl::StrCat("--state: unknown state \"", st, "\""));
    }
    req.add_states(state);
  }
  ASSIGN_OR_RETURN(const auto all, ListAll(c, req, &v1::TenantService::Stub::ListTenants));
  if (c.json()) {
    *inv.out << Json(all) << "\n";
    return absl::OkStatus();
  }
  *inv.out << "TENANT\tSTATE\tPLAN\tCOMPANY\n";
  for (const auto& t : all.tenants()) {
    *inv.out << t.tenant_id() << "\t" << State(t.state()) << "\t"
             << (t.plan_id().empty() ? "-" : t.plan_id()) << "\t" << t.company_name() << "\n";
  }
  return absl::OkStatus();
}

absl::Status UploadDoc(const Invocation& inv, const Args& a, const TenantdClient& c) {
  // upload-doc [TENANT] FILE
  std::string tenant = a.positional.size() >= 2 ? a.positional[0] : "";
  auto path = a.Positional(a.positional.size() >= 2 ? 1 : 0, "FILE to upload");
  if (!path.ok()) return path.status();
  std::ifstream in(*path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", *path));
  v1::DocumentKind kind = v1::DOCUMENT_KIND_OTHER;
  std::string k = absl::AsciiStrToUpper(a.Get("kind", "other"));
  std::replace(k.begin(), k.end(), '-', '_');
  if (!v1::DocumentKind_Parse("DOCUMENT_KIND_" + k, &kind)) {
    return absl::InvalidArgumentError("--kind: business-licence, tax-registration or other");
  }
  std::string filename = path->substr(path->find_last_of('/') + 1);
  v1::Document doc;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    in.clear();
    in.seekg(0);
    auto writer = v1::TenantService::NewStub(ch)->UploadDocument(ctx, &doc);
    v1::UploadDocumentRequest first;
    first.mutable_metadata()->set_tenant_id(tenant);
    first.mutable_metadata()->set_kind(kind);
    first.mutable_metadata()->set_filename(filename);
    first.mutable_metadata()->set_content_type(a.Get("content-type"));
    bool ok = writer->Write(first);
    std::string buf(256 << 10, '\0');
    while (ok && in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      std::streamsize n = in.gcount();
      if (n <= 0) break;
      v1::UploadDocumentRequest chunk;
      chunk.set_chunk(buf.substr(0, static_cast<size_t>(n)));
      ok = writer->Write(chunk);  // false: the server already answered
    }
    writer->WritesDone();
    return writer->Finish();
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(doc) << "\n";
  } else {
    *inv.out << "uploaded " << doc.document_id() << " " << doc.filename() << " ("
             << doc.content_type() << ", " << doc.size_bytes() << " bytes, sha256 " << doc.sha256()
             << ")\n";
  }
  return absl::OkStatus();
}

absl::Status Docs(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::ListDocumentsRequest req;
  req.set_tenant_id(TenantArg(a));
  ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &v1::TenantService::Stub::ListDocuments));
  if (c.json()) {
    *inv.out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  *inv.out << "DOCUMENT\tKIND\tTYPE\tBYTES\tSHA256\tFILENAME\n";
  for (const auto& d : resp.documents()) {
    *inv.out << d.document_id() << "\t"
             << EnumWord(v1::DocumentKind_Name(d.kind()), "DOCUMENT_KIND_") << "\t"
             << d.content_type() << "\t" << d.size_bytes() << "\t" << d.sha256() << "\t"
             << d.filename() << "\n";
  }
  return absl::OkStatus();
}

absl::Status DownloadDoc(const Invocation& inv, const Args& a, const TenantdClient& c) {
  auto id = a.Positional(0, "DOCUMENT_ID");
  auto path = a.Positional(1, "OUTPUT file");
  if (!id.ok()) return id.status();
  if (!path.ok()) return path.status();
  v1::DownloadDocumentRequest req;
  req.set_document_id(*id);
  std::string bytes;
  v1::Document meta;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    bytes.clear();
    auto reader = v1::TenantService::NewStub(ch)->DownloadDocument(ctx, req);
    v1::DownloadDocumentResponse part;
    while (reader->Read(&part)) {
      if (part.has_metadata()) meta = part.metadata();
      bytes += part.chunk();
    }
    return reader->Finish();
  });
  if (!s.ok()) return s;
  std::ofstream out(*path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", *path));
  if (c.json()) {
    *inv.out << Json(meta) << "\n";
  } else {
    *inv.out << "wrote " << bytes.size() << " bytes to " << *path << " (sha256 " << meta.sha256()
             << ")\n";
  }
  return absl::OkStatus();
}

// approve / reject / suspend / resume / delete: one tenant and a reason.
absl::Status Lifecycle(const std::string& verb, const Invocation& inv, const Args& a,
                       const TenantdClient& c) {
  auto tenant = a.Positional(0, "TENANT_ID");
  if (!tenant.ok()) return tenant.status();
  std::string reason = a.Get("reason");
  v1::Tenant t;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    auto stub = v1::TenantService::NewStub(ch);
    if (verb == "approve" || verb == "reject") {
      v1::ReviewTenantRequest r;
      r.set_tenant_id(*tenant);
      r.set_decision(verb == "approve" ? v1::REVIEW_DECISION_APPROVE : v1::REVIEW_DECISION_REJECT);
      r.set_reason(reason);
      return stub->ReviewTenant(ctx, r, &t);
    }
    if (verb == "suspend") {
      v1::SuspendTenantRequest r;
      r.set_tenant_id(*tenant);
      r.set_reason(reason);
      return stub->SuspendTenant(ctx, r, &t);
    }
    if (verb == "resume") {
      v1::ResumeTenantRequest r;
      r.set_tenant_id(*tenant);
      r.set_reason(reason);
      return stub->ResumeTenant(ctx, r, &t);
    }
    v1::DeleteTenantRequest r;
    r.set_tenant_id(*tenant);
    r.set_reason(reason);
    if (a.Has("grace")) {
      absl::Duration d;
      if (!absl::ParseDuration(a.Get("grace"), &d))
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--grace: not a duration (720h)");
      r.mutable_grace_period()->set_seconds(absl::ToInt64Seconds(d));
    }
    return stub->DeleteTenant(ctx, r, &t);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(t) << "\n";
  } else {
    *inv.out << "tenant " << t.tenant_id() << " is " << State(t.state()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Events(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::ListTenantEventsRequest req;
  req.set_tenant_id(TenantArg(a));
  ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &v1::TenantService::Stub::ListTenantEvents));
  if (c.json()) {
    *inv.out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  *inv.out << "WHEN\tACTION\tFROM\tTO\tWHO\tREASON\n";
  for (const auto& e : resp.events()) {
    const auto& who = e.actor();
    std::string actor = !who.user_id().empty()
                            ? who.user_id()
                            : (!who.service().empty() ? who.service() : "anonymous");
    *inv.out << When(e.at().seconds()) << "\t" << e.action() << "\t"
             << (e.from_state() ? State(e.from_state()) : "-") << "\t"
             << (e.to_state() ? State(e.to_state()) : "-") << "\t" << actor << "\t" << e.reason()
             << "\n";
  }
  return absl::OkStatus();
}

absl::Status Usage(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::GetTenantUsageRequest req;
  req.set_tenant_id(TenantArg(a));
  v1::TenantUsage u;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::TenantService::NewStub(ch)->GetTenantUsage(ctx, req, &u);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(u) << "\n";
  } else {
    *inv.out << "plan " << (u.plan_id().empty() ? "-" : u.plan_id()) << "\nmailboxes "
             << u.mailboxes() << "\nstorage_bytes " << u.storage_bytes()
             << "\nshared_mailbox_seats " << u.shared_mailbox_seats() << "\ndomains " << u.domains()
             << "\n";
  }
  return absl::OkStatus();
}

absl::Status IssueToken(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::IssueOnboardingTokenRequest req;
  req.set_tenant_id(TenantArg(a));
  v1::IssueOnboardingTokenResponse resp;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::TenantService::NewStub(ch)->IssueOnboardingToken(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(resp) << "\n";
  } else {
    *inv.out << resp.onboarding_token() << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunTenant(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv));
  const std::string& verb = sub.verb;
  const Args& args = sub.args;
  auto client = TenantdClient::Connect(inv, args);
  if (!client.ok()) return client.status();
  if (verb == "register") return Register(inv, args, *client);
  if (verb == "show") return Show(inv, args, *client);
  if (verb == "list") return List(inv, args, *client);
  if (verb == "upload-doc") return UploadDoc(inv, args, *client);
  if (verb == "docs") return Docs(inv, args, *client);
  if (verb == "download-doc") return DownloadDoc(inv, args, *client);
  if (verb == "approve" || verb == "reject" || verb == "suspend" || verb == "resume" ||
      verb == "delete") {
    return Lifecycle(verb, inv, args, *client);
  }
  if (verb == "events") return Events(inv, args, *client);
  if (verb == "usage") return Usage(inv, args, *client);
  if (verb == "issue-token") return IssueToken(inv, args, *client);
  return UnknownSubcommand(verb);
}

const bool kRegistered = RegisterCommand(
    {"tenant", "register companies and take them through review (tenantd)",
     "mailctl tenant register --name N --street S [--city C] [--region R] [--postal-code P] "
     "--country CC\n"
     "                  --contact-name N --phone P --email E [--plan PLAN_ID]\n"
     "      mailctl tenant show|events|usage|docs|issue-token [TENANT_ID]\n"
     "      mailctl tenant list [--state active,under_review] [--name-contains X]\n"
     "      mailctl tenant upload-doc [TENANT_ID] FILE [--kind "
     "business-licence|tax-registration|other]\n"
     "      mailctl tenant download-doc DOCUMENT_ID OUTPUT_FILE          (platform reviewers)\n"
     "      mailctl tenant approve|reject|suspend|resume|delete TENANT_ID [--reason R] [--grace "
     "720h]\n"
     "      common: [--json] [--tenantd ADDR] [--token TOKEN | --token-key FILE [--role R] "
     "[--token-tenant T]]",
     RunTenant});

}  // namespace
}  // namespace mailgrid::mailctl
