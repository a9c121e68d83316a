// mailctl domain add|list|show|records|check|rotate-dkim|verify-override|remove
// DomainService (protos/mailgrid/tenant/v1/domain.proto).
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "mailgrid/tenant/v1/domain.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::tenant::v1;
using Channel = std::shared_ptr<grpc::Channel>;

std::string State(v1::DomainState s) { return EnumWord(v1::DomainState_Name(s), "DOMAIN_STATE_"); }

void PrintDomain(std::ostream& out, const v1::Domain& d) {
  out << "domain      " << d.name()
      << (d.unicode_name() != d.name() ? " (" + d.unicode_name() + ")" : "") << "\n"
      << "tenant      " << d.tenant_id() << "\n"
      << "state       " << State(d.state());
  if (d.state() == v1::DOMAIN_STATE_VERIFIED) {
    out << " ("
        << absl::AsciiStrToLower(EnumWord(v1::VerificationMethod_Name(d.verification_method()),
                                          "VERIFICATION_METHOD_"))
        << ", " << When(d.verified_at().seconds()) << ")";
  }
  out << "\n"
      << "checked     " << When(d.last_checked_at().seconds()) << "\n"
      << "drift       "
      << (d.has_drift_detected_at() ? "DETECTED " + When(d.drift_detected_at().seconds()) : "none")
      << "\n";
  for (const auto& k : d.dkim_keys()) {
    out << "dkim        " << k.selector() << " "
        << absl::AsciiStrToLower(EnumWord(v1::DkimAlgorithm_Name(k.algorithm()), "DKIM_ALGORITHM_"))
        << " " << EnumWord(v1::DkimKeyState_Name(k.state()), "DKIM_KEY_STATE_") << "\n";
  }
}

void PrintRecords(std::ostream& out, const v1::DomainRecords& r) {
  out << "domain " << r.domain().name() << " is " << State(r.domain().state())
      << (r.domain().has_drift_detected_at()
              ? " (DRIFT DETECTED " + When(r.domain().drift_detected_at().seconds()) + ")"
              : "")
      << "\n";
  out << "STATUS\tTYPE\tNAME\tPRIORITY\tVALUE\n";
  for (const auto& rec : r.records()) {
    const auto& c = rec.check();
    out << EnumWord(v1::RecordCheckStatus_Name(c.status()), "RECORD_CHECK_STATUS_")
        << (rec.required_for_verification() ? "*" : "") << "\t"
        << EnumWord(v1::DnsRecordType_Name(rec.type()), "DNS_RECORD_TYPE_") << "\t" << rec.name()
        << "\t" << (rec.type() == v1::DNS_RECORD_TYPE_MX ? absl::StrCat(rec.priority()) : "-")
        << "\t" << rec.value() << "\n";
    if (c.status() != v1::RECORD_CHECK_STATUS_OK &&
        c.status() != v1::RECORD_CHECK_STATUS_UNCHECKED) {
      out << "\t\t  " << c.detail();
      if (c.found_size() > 0) out << "; found: " << absl::StrJoin(c.found(), " | ");
      out << "\n";
    }
  }
  out << "(* needed for VERIFIED)\n";
}

absl::StatusOr<std::string> Name(const Args& a) { return a.Positional(0, "DOMAIN"); }

absl::Status RunDomain(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"force"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  std::ostream& out = *inv.out;

  if (verb == "list") {
    v1::ListDomainsRequest req;
    req.set_tenant_id(a.positional.empty() ? "" : a.positional[0]);
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &v1::DomainService::Stub::ListDomains));
    if (c.json()) {
      out << Json(resp) << "\n";
      return absl::OkStatus();
    }
    out << "DOMAIN\tSTATE\tDRIFT\tCHECKED\n";
    for (const auto& d : resp.domains()) {
      out << d.name() << "\t" << State(d.state()) << "\t"
          << (d.has_drift_detected_at() ? "yes" : "no") << "\t"
          << When(d.last_checked_at().seconds()) << "\n";
    }
    return absl::OkStatus();
  }
  auto name = Name(a);
  if (!name.ok()) return name.status();
  if (verb == "add" || verb == "show" || verb == "verify-override" || verb == "rotate-dkim") {
    v1::Domain d;
    auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      auto stub = v1::DomainService::NewStub(ch);
      if (verb == "add") {
        v1::AddDomainRequest req;
        req.set_name(*name);
        req.set_tenant_id(a.Get("tenant"));
        return stub->AddDomain(ctx, req, &d);
      }
      if (verb == "show") {
        v1::GetDomainRequest req;
        req.set_name(*name);
        return stub->GetDomain(ctx, req, &d);
      }
      if (verb == "verify-override") {
        v1::OverrideVerificationRequest req;
        req.set_name(*name);
        req.set_reason(a.Get("reason"));
        return stub->OverrideVerification(ctx, req, &d);
      }
      v1::RotateDkimRequest req;
      req.set_name(*name);
      std::string step = absl::AsciiStrToUpper(a.positional.size() > 1 ? a.positional[1] : "");
      v1::DkimRotationStep parsed_step;
      if (!v1::DkimRotationStep_Parse("DKIM_ROTATION_STEP_" + step, &parsed_step) ||
          parsed_step == v1::DKIM_ROTATION_STEP_UNSPECIFIED) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "step: give begin, switch or retire");
      }
      req.set_step(parsed_step);
      req.set_force(a.flags.count("force") > 0);
      return stub->RotateDkim(ctx, req, &d);
    });
    if (!s.ok()) return s;
    if (c.json()) {
      out << Json(d) << "\n";
    } else {
      if (verb == "add")
        out << "added " << d.name() << "; publish its records (mailctl domain records " << d.name()
            << ")\n";
      PrintDomain(out, d);
    }
    return absl::OkStatus();
  }
  if (verb == "records" || verb == "check") {
    v1::DomainRecords r;
    auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      auto stub = v1::DomainService::NewStub(ch);
      if (verb == "check") {
        v1::CheckDomainRequest req;
        req.set_name(*name);
        return stub->CheckDomain(ctx, req, &r);
      }
      v1::GetDomainRecordsRequest req;
      req.set_name(*name);
      return stub->GetDomainRecords(ctx, req, &r);
    });
    if (!s.ok()) return s;
    if (c.json()) {
      out << Json(r) << "\n";
    } else {
      PrintRecords(out, r);
    }
    return absl::OkStatus();
  }
  if (verb == "remove") {
    v1::RemoveDomainRequest req;
    req.set_name(*name);
    v1::RemoveDomainResponse resp;
    auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::DomainService::NewStub(ch)->RemoveDomain(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (c.json()) {
      out << "{}\n";
    } else {
      out << "removed " << *name << "\n";
    }
    return absl::OkStatus();
  }
  return UnknownSubcommand(verb);
}

const bool kRegistered = RegisterCommand(
    {"domain", "a tenant's mail domains, DNS records, checks and DKIM (tenantd)",
     "mailctl domain add DOMAIN [--tenant TENANT_ID] | list [TENANT_ID] | show DOMAIN | remove "
     "DOMAIN\n"
     "      mailctl domain records DOMAIN        (the records to publish, with the last check)\n"
     "      mailctl domain check DOMAIN          (look them up in DNS now)\n"
     "      mailctl domain rotate-dkim DOMAIN begin|switch|retire [--force]\n"
     "      mailctl domain verify-override DOMAIN --reason R   (platform operators)",
     RunDomain});

}  // namespace
}  // namespace mailgrid::mailctl
