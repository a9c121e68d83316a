// mailctl plan list|create|set — the plan catalog (platform operators) and
// a tenant's choice of plan (TenantService).
#include <algorithm>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "mailgrid/tenant/v1/tenant.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::tenant::v1;
using Channel = std::shared_ptr<grpc::Channel>;

// "unlimited", "10", "5GiB", "500MiB".
absl::Status ParseLimit(const Args& a, const std::string& flag, common::v1::Limit* out) {
  if (!a.Has(flag)) return absl::OkStatus();
  std::string v = absl::AsciiStrToLower(a.Get(flag));
  if (v == "unlimited") {
    out->set_unlimited(true);
    return absl::OkStatus();
  }
  int64_t mult = 1;
  for (auto [suffix, m] :
       {std::pair{"kib", int64_t{1} << 10}, std::pair{"mib", int64_t{1} << 20},
        std::pair{"gib", int64_t{1} << 30}, std::pair{"tib", int64_t{1} << 40}}) {
    if (absl::EndsWith(v, suffix)) {
      v.resize(v.size() - 3);
      mult = m;
    }
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": a number (with KiB/MiB/GiB) or \"unlimited\""));
  }
  out->set_value(n * mult);
  return absl::OkStatus();
}

std::string Limit(const common::v1::Limit& l) {
  return l.unlimited() ? "unlimited" : absl::StrCat(l.value());
}

absl::StatusOr<std::vector<v1::Plan>> AllPlans(const TenantdClient& c, bool include_retired) {
  v1::ListPlansRequest req;
  req.set_include_retired(include_retired);
  ASSIGN_OR_RETURN(const auto all, ListAll(c, req, &v1::TenantService::Stub::ListPlans));
  return std::vector<v1::Plan>(all.plans().begin(), all.plans().end());
}

absl::Status List(const Invocation& inv, const Args& a, const TenantdClient& c) {
  auto plans = AllPlans(c, a.flags.count("all") > 0);
  if (!plans.ok()) return plans.status();
  if (c.json()) {
    v1::ListPlansResponse resp;
    for (const auto& p : *plans) *resp.add_plans() = p;
    *inv.out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  *inv.out << "PLAN\tNAME\tMAILBOXES\tDOMAINS\tSTORAGE\tSEATS\tFEATURES\n";
  for (const auto& p : *plans) {
    std::vector<std::string> features;
    for (int f : p.features())
      features.push_back(absl::AsciiStrToLower(EnumWord(v1::PlanFeature_Name(f), "PLAN_FEATURE_")));
    std::string storage = p.storage_model() == v1::STORAGE_MODEL_POOLED
                              ? "pool " + Limit(p.pooled_storage_bytes())
                              : Limit(p.storage_per_mailbox_bytes()) + "/mailbox";
    *inv.out << p.plan_id() << "\t" << p.name() << (p.retired() ? " (retired)" : "") << "\t"
             << Limit(p.mailboxes()) << "\t" << Limit(p.domains()) << "\t" << storage << "\t"
             << Limit(p.shared_mailbox_seats()) << "\t"
             << (features.empty() ? "-" : absl::StrJoin(features, ",")) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Create(const Invocation& inv, const Args& a, const TenantdClient& c) {
  v1::CreatePlanRequest req;
  v1::Plan& p = *req.mutable_plan();
  auto name = a.Required("name");
  if (!name.ok()) return name.status();
  p.set_name(*name);
  p.set_description(a.Get("description"));
  for (auto [flag, field] :
       {std::pair{"mailboxes", p.mutable_mailboxes()}, std::pair{"domains", p.mutable_domains()},
        std::pair{"seats", p.mutable_shared_mailbox_seats()},
        std::pair{"storage-per-mailbox", p.mutable_storage_per_mailbox_bytes()},
        std::pair{"pooled-storage", p.mutable_pooled_storage_bytes()},
        std::pair{"messages-per-hour", p.mutable_messages_per_user_per_hour()}}) {
    if (absl::Status s = ParseLimit(a, flag, field); !s.ok()) return s;
  }
  // Limits not given are unlimited (the server's rule for unset limits).
  for (auto [flag, setter] :
       {std::pair{"mailboxes", &v1::Plan::clear_mailboxes},
        std::pair{"domains", &v1::Plan::clear_domains},
        std::pair{"seats", &v1::Plan::clear_shared_mailbox_seats},
        std::pair{"storage-per-mailbox", &v1::Plan::clear_storage_per_mailbox_bytes},
        std::pair{"pooled-storage", &v1::Plan::clear_pooled_storage_bytes},
        std::pair{"messages-per-hour", &v1::Plan::clear_messages_per_user_per_hour}}) {
    if (!a.Has(flag)) (p.*setter)();
  }
  p.set_storage_model(a.Has("pooled-storage") ? v1::STORAGE_MODEL_POOLED
                                              : v1::STORAGE_MODEL_PER_MAILBOX);
  for (absl::string_view f : absl::StrSplit(a.Get("features"), ',', absl::SkipEmpty())) {
    std::string name_upper = absl::AsciiStrToUpper(f);
    std::replace(name_upper.begin(), name_upper.end(), '-', '_');
    v1::PlanFeature feature;
    if (!v1::PlanFeature_Parse("PLAN_FEATURE_" + name_upper, &feature)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--features: unknown feature \"", f,
                       "\" (archive, mail_audit, monitoring, sso, shared_mailboxes)"));
    }
    p.add_features(feature);
  }
  v1::Plan created;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::TenantService::NewStub(ch)->CreatePlan(ctx, req, &created);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(created) << "\n";
  } else {
    *inv.out << "created plan " << created.plan_id() << " \"" << created.name() << "\"\n";
  }
  return absl::OkStatus();
}

absl::Status Set(const Invocation& inv, const Args& a, const TenantdClient& c) {
  // plan set PLAN (id or name) [TENANT_ID]
  auto which = a.Positional(0, "PLAN (id or name)");
  if (!which.ok()) return which.status();
  std::string plan_id = *which;
  if (!absl::StartsWith(plan_id, "plan-")) {
    auto plans = AllPlans(c, false);
    if (!plans.ok()) return plans.status();
    plan_id.clear();
    for (const auto& p : *plans) {
      if (absl::EqualsIgnoreCase(p.name(), *which)) plan_id = p.plan_id();
    }
    if (plan_id.empty())
      return absl::NotFoundError(absl::StrCat("NOT_FOUND: no plan named \"", *which, "\""));
  }
  v1::SetTenantPlanRequest req;
  req.set_plan_id(plan_id);
  req.set_tenant_id(a.positional.size() > 1 ? a.positional[1] : "");
  v1::Tenant t;
  auto s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
    return v1::TenantService::NewStub(ch)->SetTenantPlan(ctx, req, &t);
  });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(t) << "\n";
  } else {
    *inv.out << "tenant " << t.tenant_id() << " is on plan " << t.plan_id() << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPlan(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"all"}));
  const std::string& verb = sub.verb;
  const Args& args = sub.args;
  auto client = TenantdClient::Connect(inv, args);
  if (!client.ok()) return client.status();
  if (verb == "list") return List(inv, args, *client);
  if (verb == "create") return Create(inv, args, *client);
  if (verb == "set") return Set(inv, args, *client);
  return UnknownSubcommand(verb);
}

const bool kRegistered = RegisterCommand(
    {"plan", "the plan catalog and a tenant's plan (tenantd)",
     "mailctl plan list [--all]\n"
     "      mailctl plan create --name N [--mailboxes N] [--domains N] [--seats N] "
     "[--storage-per-mailbox 5GiB |\n"
     "                  --pooled-storage 1TiB] [--messages-per-hour N] [--features "
     "archive,sso,...]\n"
     "                  (a limit not given is unlimited; any limit may be \"unlimited\")\n"
     "      mailctl plan set PLAN_ID|NAME [TENANT_ID]",
     RunPlan});

}  // namespace
}  // namespace mailgrid::mailctl
