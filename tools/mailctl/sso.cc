// mailctl sso set|show|delete|begin|complete — a tenant's OIDC single
// sign-on (identityd's SsoService).
#include <fstream>
#include <ostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mailgrid/identity/v1/sso.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/identity_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::identity::v1;
using Channel = std::shared_ptr<grpc::Channel>;

absl::Status RunSso(const Invocation& inv) {
  auto args = ParseArgs(inv.args, {"mandatory"});
  if (!args.ok()) return args.status();
  const Args& a = *args;
  auto cmd = a.Positional(0, "set|show|delete|begin|complete");
  if (!cmd.ok()) return cmd.status();
  auto client = IdentitydClient::Connect(inv, a);
  if (!client.ok()) return client.status();
  const IdentitydClient& c = *client;
  std::string tenant = a.positional.size() > 1 ? a.positional[1] : a.Get("tenant");
  std::ostream& out = *inv.out;

  if (*cmd == "set") {
    v1::SetOidcConfigRequest req;
    auto* cfg = req.mutable_config();
    cfg->set_tenant_id(tenant);
    cfg->set_issuer(a.Get("issuer"));
    cfg->set_client_id(a.Get("client-id"));
    cfg->set_client_secret(a.Get("client-secret"));
    cfg->set_redirect_uri(a.Get("redirect-uri"));
    cfg->set_authorization_endpoint(a.Get("authorization-endpoint"));
    cfg->set_token_endpoint(a.Get("token-endpoint"));
    cfg->set_email_claim(a.Get("email-claim"));
    cfg->set_mandatory(a.flags.count("mandatory") > 0);
    for (absl::string_view s : absl::StrSplit(a.Get("scopes"), ',', absl::SkipEmpty()))
      cfg->add_scopes(std::string(s));
    if (a.Has("jwks-file")) {
      std::ifstream in(a.Get("jwks-file"));
      if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", a.Get("jwks-file")));
      std::stringstream ss;
      ss << in.rdbuf();
      cfg->set_jwks_json(ss.str());
    } else if (a.Has("jwks-json")) {
      cfg->set_jwks_json(a.Get("jwks-json"));
    } else if (a.Has("discovery-url")) {
      cfg->set_jwks_discovery_url(a.Get("discovery-url"));
    }
    v1::OidcConfig resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::SsoService::NewStub(ch)->SetOidcConfig(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  if (*cmd == "show") {
    v1::GetOidcConfigRequest req;
    req.set_tenant_id(tenant);
    v1::OidcConfig resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::SsoService::NewStub(ch)->GetOidcConfig(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  if (*cmd == "delete") {
    v1::DeleteOidcConfigRequest req;
    req.set_tenant_id(tenant);
    v1::DeleteOidcConfigResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::SsoService::NewStub(ch)->DeleteOidcConfig(ctx, req, &resp);
    });
    if (s.ok()) out << "SSO removed\n";
    return s;
  }
  if (*cmd == "begin") {
    v1::BeginSsoLoginRequest req;
    if (a.Has("address"))
      req.set_address(a.Get("address"));
    else
      req.set_tenant_id(tenant);
    v1::BeginSsoLoginResponse resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::SsoService::NewStub(ch)->BeginSsoLogin(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  if (*cmd == "complete") {
    v1::CompleteSsoLoginRequest req;
    auto state = a.Required("state");
    if (!state.ok()) return state.status();
    req.set_state(*state);
    if (a.Has("code"))
      req.set_authorization_code(a.Get("code"));
    else
      req.set_id_token(a.Get("id-token"));
    v1::LoginResult resp;
    absl::Status s = c.Run([&](const Channel& ch, grpc::ClientContext* ctx) {
      return v1::SsoService::NewStub(ch)->CompleteSsoLogin(ctx, req, &resp);
    });
    if (!s.ok()) return s;
    out << Json(resp) << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("sso set|show|delete|begin|complete");
}

const bool kRegistered = RegisterCommand(
    {"sso", "a tenant's OIDC single sign-on (identityd)",
     "mailctl sso set [TENANT] --issuer URL --client-id ID [--client-secret S] [--redirect-uri U]\n"
     "                  (--jwks-file F | --jwks-json J | --discovery-url URL) [--mandatory] "
     "[--email-claim C]\n"
     "      mailctl sso show [TENANT] | delete [TENANT]\n"
     "      mailctl sso begin (--tenant T | --address A) | complete --state S --id-token JWT",
     RunSso});

}  // namespace
}  // namespace mailgrid::mailctl
