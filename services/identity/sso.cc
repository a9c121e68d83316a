// SsoService: the tenant's OIDC provider settings and the relying-party
// login (BeginSsoLogin -> provider -> CompleteSsoLogin with the ID token).
// The ID token must be RS256/ES256-signed by a key of the tenant's JWKS,
// name the configured issuer, have our client id as audience, be unexpired
// and carry the nonce we issued; its email claim must be an ACTIVE user of
// that tenant. Any failure is the uniform UNAUTHENTICATED.
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"
#include "services/identity/totp.h"

namespace mailgrid::identity {
namespace {

std::string StateKey(const std::string& state) { return absl::StrCat("mg:id:sso:", state); }

v1::OidcConfig Redacted(v1::OidcConfig c) {
  c.set_has_client_secret(!c.client_secret().empty());
  c.clear_client_secret();
  return c;
}

}  // namespace

absl::StatusOr<std::string> Core::FetchJwks(v1::OidcConfig& config) {
  ASSIGN_OR_RETURN(std::string discovery, HttpGet(config.jwks_discovery_url(), absl::Seconds(10)));
  nlohmann::json d = nlohmann::json::parse(discovery, nullptr, false);
  if (!d.is_object() || !d.contains("jwks_uri") || !d["jwks_uri"].is_string())
    return absl::FailedPreconditionError("discovery document has no jwks_uri");
  auto str = [&](const char* k) {
    return d.contains(k) && d[k].is_string() ? d[k].get<std::string>() : "";
  };
  if (config.authorization_endpoint().empty())
    config.set_authorization_endpoint(str("authorization_endpoint"));
  if (config.token_endpoint().empty()) config.set_token_endpoint(str("token_endpoint"));
  if (!str("issuer").empty() && str("issuer") != config.issuer())
    return absl::FailedPreconditionError("discovery issuer differs from the configured issuer");
  ASSIGN_OR_RETURN(std::string jwks, HttpGet(str("jwks_uri"), absl::Seconds(10)));
  RETURN_IF_ERROR(Jwks::Parse(jwks).status());
  return jwks;
}

absl::StatusOr<Jwks> Core::JwksFor(const v1::OidcConfig& config, bool refetch) {
  if (config.jwks_source_case() == v1::OidcConfig::kJwksJson)
    return Jwks::Parse(config.jwks_json());
  {
    absl::MutexLock lock(&jwks_mu_);
    auto it = jwks_cache_.find(config.tenant_id());
    if (it != jwks_cache_.end() && !refetch) return Jwks::Parse(it->second);
  }
  v1::OidcConfig copy = config;
  ASSIGN_OR_RETURN(std::string jwks, FetchJwks(copy));
  absl::MutexLock lock(&jwks_mu_);
  jwks_cache_[config.tenant_id()] = jwks;
  return Jwks::Parse(jwks);
}

absl::StatusOr<v1::OidcConfig> Core::SetOidcConfig(const Caller& c,
                                                   const v1::SetOidcConfigRequest& r) {
  v1::OidcConfig config = r.config();
  if (config.tenant_id().empty()) config.set_tenant_id(c.claims.tenant_id);
  RETURN_IF_ERROR(RequireTenantRole(c, config.tenant_id(), true, false));
  if (c.user()) {
    auto principal = directory_->ByUserId(c.claims.subject);
    if (!principal.ok()) return principal.status();
    bool sso = false;
    for (int f : principal->plan_features()) sso = sso || f == tenant::v1::PLAN_FEATURE_SSO;
    if (!sso) return Precondition("PLAN_FEATURE_MISSING", "the tenant's plan does not include SSO");
  }
  if (!AcceptableIssuer(config.issuer()))
    return InvalidField("config.issuer", "NOT_HTTPS", "an https URL (http only for loopback)");
  if (config.client_id().empty()) return InvalidField("config.client_id", "EMPTY", "required");
  switch (config.jwks_source_case()) {
    case v1::OidcConfig::kJwksJson:
      if (auto j = Jwks::Parse(config.jwks_json()); !j.ok())
        return InvalidField("config.jwks_json", "NOT_JWKS", std::string(j.status().message()));
      break;
    case v1::OidcConfig::kJwksDiscoveryUrl: {
      auto jwks = FetchJwks(config);
      if (!jwks.ok()) return Precondition("DISCOVERY_FAILED", std::string(jwks.status().message()));
      absl::MutexLock lock(&jwks_mu_);
      jwks_cache_[config.tenant_id()] = *jwks;
      *config.mutable_jwks_fetched_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
      break;
    }
    default:
      return InvalidField("config.jwks_json", "EMPTY", "give jwks_json or jwks_discovery_url");
  }
  ASSIGN_OR_RETURN(auto existing, store_->GetOidc(config.tenant_id()));
  if (config.client_secret().empty() && existing.has_value())
    config.set_client_secret(existing->client_secret());
  config.clear_has_client_secret();
  *config.mutable_updated_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  RETURN_IF_ERROR(store_->PutOidc(config));
  Event(config.tenant_id(), "", "", v1::AUTH_EVENT_KIND_SSO_CONFIG_CHANGED,
        v1::AUTH_OUTCOME_SUCCESS, "", ClientOf(c, {}), config.issuer(), &c);
  return Redacted(config);
}

absl::StatusOr<v1::OidcConfig> Core::GetOidcConfig(const Caller& c,
                                                   const v1::GetOidcConfigRequest& r) {
  std::string tid = r.tenant_id().empty() ? c.claims.tenant_id : r.tenant_id();
  RETURN_IF_ERROR(RequireTenantRole(c, tid, true, true));
  ASSIGN_OR_RETURN(auto config, store_->GetOidc(tid));
  if (!config.has_value()) return NotFound("SSO configuration");
  return Redacted(*config);
}

absl::StatusOr<v1::DeleteOidcConfigResponse> Core::DeleteOidcConfig(
    const Caller& c, const v1::DeleteOidcConfigRequest& r) {
  std::string tid = r.tenant_id().empty() ? c.claims.tenant_id : r.tenant_id();
  RETURN_IF_ERROR(RequireTenantRole(c, tid, true, false));
  ASSIGN_OR_RETURN(bool deleted, store_->DeleteOidc(tid));
  if (!deleted) return NotFound("SSO configuration");
  Event(tid, "", "", v1::AUTH_EVENT_KIND_SSO_CONFIG_CHANGED, v1::AUTH_OUTCOME_SUCCESS, "",
        ClientOf(c, {}), "deleted", &c);
  return v1::DeleteOidcConfigResponse();
}

absl::StatusOr<v1::BeginSsoLoginResponse> Core::BeginSsoLogin(const Caller& c,
                                                              const v1::BeginSsoLoginRequest& r) {
  std::string tid, hint;
  if (r.who_case() == v1::BeginSsoLoginRequest::kTenantId) {
    tid = r.tenant_id();
  } else if (r.who_case() == v1::BeginSsoLoginRequest::kAddress) {
    if (r.address().size() > kMaxAddressBytes)
      return InvalidField("address", "TOO_LONG", "at most 320 bytes");
    // A known address names its user's tenant. "@domain" alone, or an
    // address tenantd does not know, names the tenant that owns the domain
    // (VERIFIED there), so every address of an SSO domain gets the same
    // answer and a login page may ask for nothing but the domain.
    const std::string& address = r.address();
    size_t at = address.rfind('@');
    if (at != 0) {
      ASSIGN_OR_RETURN(auto principal, LookupAddress(address));
      if (principal) tid = principal->user().tenant_id();
      hint = address;
    }
    if (tid.empty() && at != std::string::npos && at + 1 < address.size()) {
      auto owner = directory_->TenantOfDomain(absl::AsciiStrToLower(address.substr(at + 1)));
      if (owner.ok())
        tid = *owner;
      else if (!absl::IsNotFound(owner.status()) && !absl::IsInvalidArgument(owner.status()))
        return owner.status();
    }
  }
  if (tid.empty()) return NotFound("SSO configuration");
  ASSIGN_OR_RETURN(auto config, store_->GetOidc(tid));
  if (!config.has_value()) return NotFound("SSO configuration");
  if (!r.redirect_uri().empty() && r.redirect_uri() != config->redirect_uri())
    return InvalidField("redirect_uri", "NOT_REGISTERED",
                        "not the tenant's registered redirect URI");
  storage::SsoState state;
  state.set_tenant_id(tid);
  state.set_nonce(RandomToken(24));
  state.set_client(ClientOf(c, r.client()).SerializeAsString());
  state.set_redirect_uri(config->redirect_uri());
  std::string state_id = RandomToken(24);
  RETURN_IF_ERROR(PutPending(StateKey(state_id), state, options_.sso_state_ttl));
  std::vector<std::string> scopes = {"openid", "email"};
  for (const auto& s : config->scopes()) scopes.push_back(s);
  v1::BeginSsoLoginResponse out;
  std::string endpoint = config->authorization_endpoint();
  out.set_authorize_url(absl::StrCat(
      endpoint, endpoint.find('?') == std::string::npos ? "?" : "&",
      "response_type=code&client_id=", PercentEncode(config->client_id()), "&redirect_uri=",
      PercentEncode(config->redirect_uri()), "&scope=", PercentEncode(absl::StrJoin(scopes, " ")),
      "&state=", state_id, "&nonce=", state.nonce(),
      hint.empty() ? "" : absl::StrCat("&login_hint=", PercentEncode(hint))));
  out.set_state(state_id);
  out.set_nonce(state.nonce());
  out.mutable_expires_at()->set_seconds(absl::ToUnixSeconds(absl::Now() + options_.sso_state_ttl));
  return out;
}

absl::StatusOr<v1::LoginResult> Core::CompleteSsoLogin(const Caller& c,
                                                       const v1::CompleteSsoLoginRequest& r) {
  if (r.state().empty() || r.state().size() > 128) return NotFound("login state");
  ASSIGN_OR_RETURN(auto raw, redis_->GetDel(StateKey(r.state())));
  storage::SsoState state;
  if (!raw.has_value() || !state.ParseFromString(*raw)) return NotFound("login state");
  common::v1::ClientInfo client;
  client.ParseFromString(state.client());
  client = ClientOf(c, r.client().ip().empty() ? client : r.client());
  auto fail = [&](const std::string& why) -> absl::Status {
    Event(state.tenant_id(), "", "", v1::AUTH_EVENT_KIND_SSO_LOGIN, v1::AUTH_OUTCOME_FAILURE, "sso",
          client, why);
    return InvalidCredentials();
  };
  ASSIGN_OR_RETURN(auto config, store_->GetOidc(state.tenant_id()));
  if (!config.has_value()) return fail("SSO no longer configured");
  std::string id_token = r.id_token();
  if (r.answer_case() == v1::CompleteSsoLoginRequest::kAuthorizationCode) {
    // RFC 6749 §4.1.3 at the provider's token endpoint, authenticating with
    // client_secret_basic (§2.3.1).
    if (config->token_endpoint().empty() || r.authorization_code().size() > 4096)
      return fail("no token endpoint configured");
    std::string form =
        absl::StrCat("grant_type=authorization_code&code=", PercentEncode(r.authorization_code()),
                     "&redirect_uri=", PercentEncode(state.redirect_uri()),
                     "&client_id=", PercentEncode(config->client_id()));
    std::string basic = absl::Base64Escape(absl::StrCat(PercentEncode(config->client_id()), ":",
                                                        PercentEncode(config->client_secret())));
    auto body = HttpPostForm(config->token_endpoint(), form, basic, absl::Seconds(10));
    if (!body.ok()) return fail(absl::StrCat("token endpoint: ", body.status().message()));
    nlohmann::json answer = nlohmann::json::parse(*body, nullptr, false);
    if (!answer.is_object() || !answer.contains("id_token") || !answer["id_token"].is_string())
      return fail("token endpoint answered without an id_token");
    id_token = answer["id_token"].get<std::string>();
  }
  auto jwks = JwksFor(*config, false);
  if (!jwks.ok()) return fail(std::string(jwks.status().message()));
  IdTokenCheck check;
  check.issuer = config->issuer();
  check.audience = config->client_id();
  check.nonce = state.nonce();
  auto claims = VerifyIdToken(id_token, *jwks, check);
  if (!claims.ok() && absl::StrContains(claims.status().message(), "no key for kid") &&
      config->jwks_source_case() == v1::OidcConfig::kJwksDiscoveryUrl) {
    // The provider rotated its keys: fetch them again once.
    jwks = JwksFor(*config, true);
    if (jwks.ok()) claims = VerifyIdToken(id_token, *jwks, check);
  }
  if (!claims.ok()) return fail(std::string(claims.status().message()));
  std::string claim = config->email_claim().empty() ? "email" : config->email_claim();
  auto it = claims->find(claim);
  if (it == claims->end() || !it->is_string()) return fail("no email claim");
  std::string email = it->get<std::string>();
  // An IdP asserting email_verified=false does not vouch for the address.
  auto verified = claims->find("email_verified");
  if (verified != claims->end() && verified->is_boolean() && !verified->get<bool>())
    return fail("email not verified by the provider");
  ASSIGN_OR_RETURN(auto principal, LookupAddress(email));
  if (!principal || principal->user().tenant_id() != state.tenant_id() || !Usable(*principal))
    return fail("email is not an active user of the tenant");
  const auto& u = principal->user();
  Event(u.tenant_id(), u.user_id(), email, v1::AUTH_EVENT_KIND_SSO_LOGIN, v1::AUTH_OUTCOME_SUCCESS,
        "sso", client, "");
  auto cred = store_->GetCredential(u.tenant_id(), u.user_id());
  storage::Credential empty;
  return Continue(*principal, cred.ok() ? *cred : empty, {"sso"}, client, Step::kEnrolment);
}

}  // namespace mailgrid::identity
