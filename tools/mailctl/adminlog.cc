// mailctl adminlog: a tenant's admin audit log (DirectoryService
// ListAdminAuditLog, protos/mailgrid/tenant/v1/directory.proto): who changed
// what in the directory and policies, plus the entries relayd and mailstored
// append (held mail decisions, monitoring copies, exports). Newest first.
//
//   mailctl adminlog list [TENANT_ID] [--action PREFIX] [--actor USER_ID] [--target ID]
//                         [--since WHEN] [--until WHEN] [--limit N]
//
// WHEN is RFC 3339 ("2026-11-27T10:00:00Z") or an age ("24h": that long
// ago). Without TENANT_ID the caller's own tenant. Who may read: the
// tenant's admins and auditors, platform operators (any tenant); anyone
// else gets NOT_FOUND for the tenant, exactly as for a tenant that does not
// exist. Connection and credentials: tenant_client.h.
#include <functional>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

// The server filters after reading a page, so a page may come back short
// (even empty) with more behind it; this bounds how far one listing reads.
constexpr int kMaxPages = 200;
constexpr int kPageSize = 1000;

absl::StatusOr<absl::Time> ParseWhen(const std::string& flag, const std::string& value) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, value, &t, &err)) return t;
  absl::Duration ago;
  if (absl::ParseDuration(value, &ago) && ago >= absl::ZeroDuration()) return absl::Now() - ago;
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": neither RFC 3339 nor an age like 24h: \"", value, "\""));
}

// Sets the field only when the flag is given: a mutable_since()/until() call
// alone would create a 1970 bound that filters out every entry.
absl::Status SetTime(const Args& a, const std::string& flag,
                     const std::function<google::protobuf::Timestamp*()>& field) {
  if (!a.Has(flag)) return absl::OkStatus();
  absl::StatusOr<absl::Time> t = ParseWhen(flag, a.Get(flag));
  if (!t.ok()) return t.status();
  field()->set_seconds(absl::ToUnixSeconds(*t));
  return absl::OkStatus();
}

std::string ActorWord(const ::mailgrid::common::v1::Actor& who) {
  if (!who.user_id().empty()) return who.user_id();
  if (!who.service().empty()) return who.service();
  return "anonymous";
}

absl::Status List(const Invocation& inv, const Args& a, const TenantdClient& c) {
  dirv1::ListAdminAuditLogRequest req;
  if (!a.positional.empty()) req.set_tenant_id(a.positional[0]);
  req.set_action_prefix(a.Get("action"));
  req.set_actor_user_id(a.Get("actor"));
  req.set_target_id(a.Get("target"));
  if (absl::Status s = SetTime(a, "since", [&] { return req.mutable_since(); }); !s.ok()) return s;
  if (absl::Status s = SetTime(a, "until", [&] { return req.mutable_until(); }); !s.ok()) return s;
  int limit = 100;
  if (a.Has("limit") && (!absl::SimpleAtoi(a.Get("limit"), &limit) || limit <= 0)) {
    return absl::InvalidArgumentError("--limit: a positive number");
  }
  req.mutable_page()->set_page_size(kPageSize);

  dirv1::ListAdminAuditLogResponse all;
  for (int page = 0; page < kMaxPages && all.entries_size() < limit; ++page) {
    dirv1::ListAdminAuditLogResponse resp;
    absl::Status s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      resp.Clear();
      return d.ListAdminAuditLog(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    for (auto& e : *resp.mutable_entries()) {
      if (all.entries_size() >= limit) break;
      *all.add_entries() = std::move(e);
    }
    if (resp.page_info().next_page_token().empty()) break;
    req.mutable_page()->set_page_token(resp.page_info().next_page_token());
  }

  if (c.json()) {
    *inv.out << Json(all) << "\n";
    return absl::OkStatus();
  }
  *inv.out << "WHEN\tACTION\tACTOR\tTARGET\tSUMMARY\n";
  for (const auto& e : all.entries()) {
    std::string target = e.target_kind().empty() && e.target_id().empty()
                             ? "-"
                             : absl::StrCat(e.target_kind(), ":", e.target_id());
    *inv.out << When(e.at().seconds()) << "\t" << e.action() << "\t" << ActorWord(e.actor()) << "\t"
             << target << "\t" << e.summary()
             << (e.reason().empty() ? "" : absl::StrCat(" (", e.reason(), ")")) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunAdminLog(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv));
  const std::string& verb = sub.verb;
  const Args& args = sub.args;
  if (verb != "list") {
    return UnknownSubcommand(verb);
  }
  auto client = TenantdClient::Connect(inv, args);
  if (!client.ok()) return client.status();
  return List(inv, args, *client);
}

const bool kRegistered = RegisterCommand(
    {"adminlog", "a tenant's admin audit log, newest first (tenantd)",
     "mailctl adminlog list [TENANT_ID] [--action PREFIX] [--actor USER_ID] [--target ID]\n"
     "                        [--since WHEN] [--until WHEN] [--limit N]     (WHEN: RFC 3339 or "
     "24h)\n"
     "      common: [--json] [--tenantd ADDR] [--token TOKEN | --token-key FILE [--role R] "
     "[--token-tenant T]]",
     RunAdminLog});

}  // namespace
}  // namespace mailgrid::mailctl
