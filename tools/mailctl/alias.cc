// mailctl alias add|remove|list, and alias domain DOMAIN (domain alias,
// catch-all, plus-addressing). DirectoryService.
#include <ostream>

#include "absl/strings/str_cat.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

absl::Status RunAlias(const Invocation& inv) {
  ASSIGN_OR_RETURN(const Subcommand sub, ParseSubcommand(inv, {"no-plus", "plus", "clear"}));
  const std::string& verb = sub.verb;
  const Args& a = sub.args;
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  std::ostream& out = *inv.out;
  const std::string tenant = a.Get("tenant");
  if (verb == "list") {
    dirv1::ListAliasesRequest req;
    req.set_tenant_id(tenant);
    if (a.Has("to")) {
      auto id = UserIdOf(c, a.Get("to"));
      if (!id.ok()) id = SharedIdOf(c, a.Get("to"), tenant);
      if (!id.ok()) return id.status();
      req.set_target_id(*id);
    }
    ASSIGN_OR_RETURN(const auto resp, ListAll(c, req, &DirStub::ListAliases));
    for (const auto& al : resp.aliases()) {
      if (c.json()) {
        out << Json(al) << "\n";
      } else {
        out << al.address() << "\t-> " << al.target_address() << "\n";
      }
    }
    return absl::OkStatus();
  }
  auto address = a.Positional(0, verb == "domain" ? "DOMAIN" : "ALIAS_ADDRESS");
  if (!address.ok()) return address.status();
  if (verb == "add") {
    auto to = a.Required("to");
    if (!to.ok()) return to.status();
    dirv1::AddAliasRequest req;
    req.set_address(*address);
    auto user = UserIdOf(c, *to);
    if (user.ok()) {
      req.set_user_id(*user);
    } else {
      auto shared = SharedIdOf(c, *to, tenant);
      if (!shared.ok()) return user.status();  // neither: say the user was not found
      req.set_shared_mailbox_id(*shared);
    }
    dirv1::Alias al;
    auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return d.AddAlias(ctx, req, &al);
    });
    if (!s.ok()) return s;
    if (c.json())
      out << Json(al) << "\n";
    else
      out << al.address() << "\t-> " << al.target_address() << "\n";
    return absl::OkStatus();
  }
  if (verb == "remove") {
    dirv1::RemoveAliasRequest req;
    req.set_address(*address);
    dirv1::RemoveAliasResponse resp;
    auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return d.RemoveAlias(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    if (!c.json()) out << "removed " << *address << "\n";
    return absl::OkStatus();
  }
  if (verb == "domain") {
    dirv1::DomainMailSettings settings;
    dirv1::GetDomainMailSettingsRequest get;
    get.set_domain(*address);
    auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return d.GetDomainMailSettings(ctx, get, &settings);
    });
    if (!s.ok()) return s;
    bool change = a.Has("alias-of") || a.Has("catch-all") || a.Has("no-plus") || a.Has("plus") ||
                  a.Has("clear");
    if (change) {
      if (a.Has("clear")) settings.Clear();
      if (a.Has("alias-of")) settings.set_alias_of(a.Get("alias-of"));
      if (a.Has("catch-all")) settings.set_catch_all_address(a.Get("catch-all"));
      if (a.Has("no-plus")) settings.set_disable_plus_addressing(true);
      if (a.Has("plus")) settings.set_disable_plus_addressing(false);
      dirv1::SetDomainMailSettingsRequest set;
      set.set_domain(*address);
      *set.mutable_settings() = settings;
      s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
        return d.SetDomainMailSettings(ctx, set, &settings);
      });
      if (!s.ok()) return s;
    }
    if (c.json()) {
      out << Json(settings) << "\n";
    } else {
      out << "domain      " << *address << "\n"
          << "alias of    " << (settings.alias_of().empty() ? "-" : settings.alias_of()) << "\n"
          << "catch-all   "
          << (settings.catch_all_address().empty() ? "off" : settings.catch_all_address()) << "\n"
          << "plus        " << (settings.disable_plus_addressing() ? "off" : "on") << "\n";
    }
    return absl::OkStatus();
  }
  return UnknownSubcommand(verb);
}

const bool kRegistered = RegisterCommand(
    {"alias", "address aliases and per-domain addressing (tenantd directory)",
     "mailctl alias add ALIAS --to ADDRESS | remove ALIAS | list [--to ADDRESS]\n"
     "      mailctl alias domain DOMAIN [--alias-of DOMAIN] [--catch-all ADDRESS] [--no-plus|--plus]"
     " [--clear]",
     RunAlias});

}  // namespace
}  // namespace mailgrid::mailctl
