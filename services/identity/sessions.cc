#include "services/identity/sessions.h"

#include <openssl/sha.h>
#include <sodium.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/auth/base64url.h"
#include "libs/base/status.h"
#include "services/identity/directory.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {
namespace {

constexpr char kRefreshPrefix[] = "mgrt_";

std::string SKey(const std::string& sid) { return absl::StrCat("mg:id:s:", sid); }
std::string RKey(const std::string& sid) { return absl::StrCat("mg:id:r:", sid); }
std::string ROKey(const std::string& sid) { return absl::StrCat("mg:id:ro:", sid); }
std::string UKey(const std::string& uid) { return absl::StrCat("mg:id:u:", uid); }
std::string XKey(const std::string& sid) { return absl::StrCat("mg:id:x:", sid); }
std::string NbKey(const std::string& uid) { return absl::StrCat("mg:id:nb:", uid); }

std::string Ms(absl::Duration d) { return std::to_string(absl::ToInt64Milliseconds(d)); }

// Compare-and-rotate in one step, so two concurrent refreshes with the
// same token cannot both succeed.
constexpr char kRotateScript[] = R"LUA(
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if cur == ARGV[1] then
  redis.call('SADD', KEYS[2], cur)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return -2 end
return 0
)LUA";

struct ParsedRefresh {
  std::string sid, secret;
};

std::optional<ParsedRefresh> ParseRefresh(const std::string& token) {
  if (token.size() > 512 || token.rfind(kRefreshPrefix, 0) != 0) return std::nullopt;
  std::string rest = token.substr(sizeof(kRefreshPrefix) - 1);
  size_t dot = rest.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size()) return std::nullopt;
  return ParsedRefresh{rest.substr(0, dot), rest.substr(dot + 1)};
}

}  // namespace

std::string RandomToken(size_t bytes) {
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  return auth::Base64UrlEncode(raw);
}

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

absl::StatusOr<v1::Session> SessionManager::Issue(storage::SessionRecord& record, bool with_refresh,
                                                  const std::string& refresh_secret) {
  absl::Time now = absl::Now();
  auth::Claims claims;
  claims.issuer = options_.issuer;
  claims.subject = record.user_id();
  claims.tenant_id = record.tenant_id();
  claims.address = record.address();
  claims.roles.assign(record.roles().begin(), record.roles().end());
  claims.mailbox_ids.assign(record.mailbox_ids().begin(), record.mailbox_ids().end());
  claims.scope = record.scope();
  claims.auth_methods.assign(record.amr().begin(), record.amr().end());
  claims.session_id = record.session_id();
  claims.token_id = RandomToken(12);
  claims.issued_at = now;
  claims.expires_at = now + options_.access_ttl;
  ASSIGN_OR_RETURN(std::string access, signer_->Sign(claims));
  v1::Session s;
  s.set_access_token(access);
  s.mutable_access_token_expires_at()->set_seconds(absl::ToUnixSeconds(claims.expires_at));
  if (with_refresh) {
    s.set_refresh_token(absl::StrCat(kRefreshPrefix, record.session_id(), ".", refresh_secret));
    s.mutable_refresh_token_expires_at()->set_seconds(
        absl::ToUnixSeconds(now + options_.refresh_ttl));
  }
  s.set_session_id(record.session_id());
  s.set_tenant_id(record.tenant_id());
  s.set_user_id(record.user_id());
  s.set_address(record.address());
  for (const auto& r : record.roles()) s.add_roles(RoleFromName(r));
  s.set_scope(record.scope() == kScopeMail        ? common::v1::TOKEN_SCOPE_MAIL
              : record.scope() == kScopeEnrolment ? common::v1::TOKEN_SCOPE_TOTP_ENROLMENT
                                                  : common::v1::TOKEN_SCOPE_FULL);
  for (const auto& m : record.mailboxes()) s.add_mailboxes()->ParseFromString(m);
  return s;
}

absl::StatusOr<v1::Session> SessionManager::Create(const SessionSpec& spec) {
  storage::SessionRecord record;
  record.set_session_id(RandomToken(16));
  record.set_tenant_id(spec.tenant_id);
  record.set_user_id(spec.user_id);
  record.set_address(spec.address);
  for (const auto& r : spec.roles) record.add_roles(r);
  for (const auto& m : spec.mailboxes) {
    record.add_mailbox_ids(m.mailbox_id());
    record.add_mailboxes(m.SerializeAsString());
  }
  record.set_scope(spec.scope);
  for (const auto& a : spec.amr) record.add_amr(a);
  record.set_client(spec.client.SerializeAsString());
  int64_t now = absl::ToUnixSeconds(absl::Now());
  record.set_created_at(now);
  record.set_last_used_at(now);
  bool with_refresh = spec.scope != kScopeEnrolment;
  std::string secret = RandomToken(32);
  // An enrolment session lives only as long as its access token.
  absl::Duration ttl = with_refresh ? options_.refresh_ttl : options_.access_ttl;
  std::vector<std::vector<std::string>> cmds = {
      {"SET", SKey(record.session_id()), record.SerializeAsString(), "PX", Ms(ttl)},
      {"SADD", UKey(spec.user_id), record.session_id()},
      {"PEXPIRE", UKey(spec.user_id), Ms(options_.refresh_ttl)}};
  if (with_refresh)
    cmds.push_back({"SET", RKey(record.session_id()), Sha256(secret), "PX", Ms(ttl)});
  ASSIGN_OR_RETURN(auto replies, redis_->Pipeline(std::move(cmds)));
  for (const auto& r : replies) RETURN_IF_ERROR(redis::StatusFromReply(r));
  return Issue(record, with_refresh, secret);
}

absl::StatusOr<v1::Session> SessionManager::Refresh(const std::string& refresh_token,
                                                    const common::v1::ClientInfo& client) {
  auto parsed = ParseRefresh(refresh_token);
  if (!parsed) return InvalidCredentials();
  std::string secret = RandomToken(32);
  ASSIGN_OR_RETURN(
      redis::Reply r,
      redis_->Eval(kRotateScript, {RKey(parsed->sid), ROKey(parsed->sid)},
                   {Sha256(parsed->secret), Sha256(secret), Ms(options_.refresh_ttl)}));
  if (r.as_integer() == -2) {
    // A rotated token came back: someone holds a copy. End the session.
    (void)End(parsed->sid);
    return InvalidCredentials();
  }
  if (r.as_integer() != 1) return InvalidCredentials();
  ASSIGN_OR_RETURN(storage::SessionRecord record, Get(parsed->sid));
  record.set_last_used_at(absl::ToUnixSeconds(absl::Now()));
  if (!client.ip().empty()) record.set_client(client.SerializeAsString());
  ASSIGN_OR_RETURN(auto ok, redis_->Set(SKey(record.session_id()), record.SerializeAsString(),
                                        {.ttl = options_.refresh_ttl}));
  (void)ok;
  return Issue(record, true, secret);
}

absl::StatusOr<std::string> SessionManager::SessionOfRefreshToken(
    const std::string& refresh_token) {
  auto parsed = ParseRefresh(refresh_token);
  if (!parsed) return NotFound("session");
  ASSIGN_OR_RETURN(auto current, redis_->Get(RKey(parsed->sid)));
  if (!current.has_value() || *current != Sha256(parsed->secret)) return NotFound("session");
  return parsed->sid;
}

absl::StatusOr<storage::SessionRecord> SessionManager::Get(const std::string& session_id) {
  ASSIGN_OR_RETURN(auto raw, redis_->Get(SKey(session_id)));
  storage::SessionRecord record;
  if (!raw.has_value() || !record.ParseFromString(*raw)) return NotFound("session");
  return record;
}

absl::StatusOr<bool> SessionManager::End(const std::string& session_id) {
  auto record = Get(session_id);
  std::vector<std::vector<std::string>> cmds = {
      {"DEL", SKey(session_id), RKey(session_id), ROKey(session_id)},
      {"SET", XKey(session_id), "1", "PX", Ms(options_.access_ttl + absl::Minutes(1))}};
  if (record.ok()) cmds.push_back({"SREM", UKey(record->user_id()), session_id});
  ASSIGN_OR_RETURN(auto replies, redis_->Pipeline(std::move(cmds)));
  RETURN_IF_ERROR(redis::StatusFromReply(replies[0]));
  return replies[0].as_integer() > 0;
}

absl::StatusOr<int64_t> SessionManager::EndOthers(const std::string& user_id,
                                                  const std::string& keep) {
  ASSIGN_OR_RETURN(redis::Reply members, redis_->Command({"SMEMBERS", UKey(user_id)}));
  int64_t ended = 0;
  for (const auto& m : members.elements()) {
    if (m.as_string() == keep) continue;
    ASSIGN_OR_RETURN(bool existed, End(m.as_string()));
    ended += existed ? 1 : 0;
  }
  return ended;
}

absl::StatusOr<int64_t> SessionManager::EndAll(const std::string& user_id) {
  ASSIGN_OR_RETURN(int64_t ended, EndOthers(user_id, ""));
  // Access tokens issued up to now are refused by identityd from here on
  // (other services honour them until they expire, at most access_ttl).
  ASSIGN_OR_RETURN(bool ok,
                   redis_->Set(NbKey(user_id), std::to_string(absl::ToUnixSeconds(absl::Now())),
                               {.ttl = options_.access_ttl + absl::Minutes(1)}));
  (void)ok;
  return ended;
}

absl::StatusOr<std::vector<storage::SessionRecord>> SessionManager::List(
    const std::string& user_id) {
  ASSIGN_OR_RETURN(redis::Reply members, redis_->Command({"SMEMBERS", UKey(user_id)}));
  std::vector<storage::SessionRecord> out;
  for (const auto& m : members.elements()) {
    auto record = Get(m.as_string());
    if (record.ok()) out.push_back(*std::move(record));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_at() > b.created_at(); });
  return out;
}

absl::StatusOr<bool> SessionManager::Revoked(const auth::Claims& claims) {
  if (claims.session_id.empty()) return false;
  ASSIGN_OR_RETURN(auto replies, redis_->Pipeline({{"EXISTS", XKey(claims.session_id)},
                                                   {"GET", NbKey(claims.subject)}}));
  if (replies[0].as_integer() > 0) return true;
  int64_t not_before = 0;
  if (replies[1].is_string() && absl::SimpleAtoi(replies[1].as_string(), &not_before))
    return absl::ToUnixSeconds(claims.issued_at) < not_before;
  return false;
}

}  // namespace mailgrid::identity
