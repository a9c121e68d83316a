#include "libs/auth/token.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/auth/base64url.h"
#include "libs/base/status.h"
#include "nlohmann/json.hpp"

namespace mailgrid::auth {
namespace {

using Json = nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

absl::Status Unauthenticated(std::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("token: ", absl::string_view(why.data(), why.size())));
}

std::string HeaderJson(const std::string& kid) {
  return Json{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", kid}}.dump();
}

std::string ClaimsJson(const Claims& c) {
  Json j;
  j["iss"] = c.issuer;
  j["sub"] = c.subject;
  if (!c.tenant_id.empty()) j["tid"] = c.tenant_id;
  if (!c.address.empty()) j["email"] = c.address;
  j["roles"] = c.roles;
  if (!c.token_id.empty()) j["jti"] = c.token_id;
  if (!c.session_id.empty()) j["sid"] = c.session_id;
  if (!c.mailbox_ids.empty()) j["mbx"] = c.mailbox_ids;
  if (!c.scope.empty()) j["scp"] = c.scope;
  if (!c.auth_methods.empty()) j["amr"] = c.auth_methods;
  if (!c.service.empty()) j["svc"] = c.service;
  j["iat"] = absl::ToUnixSeconds(c.issued_at);
  j["exp"] = absl::ToUnixSeconds(c.expires_at);
  return j.dump();
}

absl::StatusOr<Claims> ParseClaims(std::string_view json) {
  Json j = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Unauthenticated("claims are not a JSON object");
  auto str = [&](const char* k) -> std::string {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  };
  auto num = [&](const char* k, int64_t* out) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_integer()) return false;
    *out = it->get<int64_t>();
    return true;
  };
  Claims c;
  c.issuer = str("iss");
  c.subject = str("sub");
  c.tenant_id = str("tid");
  c.address = str("email");
  c.token_id = str("jti");
  c.session_id = str("sid");
  auto strings = [&](const char* k, std::vector<std::string>* out) {
    auto it = j.find(k);
    if (it == j.end()) return true;
    if (!it->is_array()) return false;
    for (const auto& v : *it) {
      if (!v.is_string()) return false;
      out->push_back(v.get<std::string>());
    }
    return true;
  };
  if (!strings("roles", &c.roles) || !strings("mbx", &c.mailbox_ids) || !strings("amr", &c.auth_methods))
    return Unauthenticated("roles, mbx and amr must be arrays of strings");
  c.scope = str("scp");
  c.service = str("svc");
  int64_t iat = 0, exp = 0;
  if (!num("exp", &exp)) return Unauthenticated("no exp");
  num("iat", &iat);
  c.issued_at = absl::FromUnixSeconds(iat);
  c.expires_at = absl::FromUnixSeconds(exp);
  return c;
}

// Every decoding failure of a presented token is UNAUTHENTICATED: callers
// must not be able to tell a malformed token from a forged one.
absl::StatusOr<std::string> DecodePart(std::string_view part) {
  auto decoded = Base64UrlDecode(part);
  if (!decoded.ok()) return Unauthenticated("malformed base64url");
  return decoded;
}

struct Parts {
  std::string_view header, payload, signature, signing_input;
};

absl::StatusOr<Parts> Split(std::string_view token) {
  size_t a = token.find('.');
  size_t b = a == std::string_view::npos ? a : token.find('.', a + 1);
  if (b == std::string_view::npos || token.find('.', b + 1) != std::string_view::npos)
    return Unauthenticated("not a compact JWS");
  return Parts{token.substr(0, a), token.substr(a + 1, b - a - 1), token.substr(b + 1), token.substr(0, b)};
}

}  // namespace

bool Claims::HasRole(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

struct TokenSigner::Key {
  Pkey pkey;
};

TokenSigner::~TokenSigner() = default;

absl::StatusOr<std::unique_ptr<TokenSigner>> TokenSigner::Generate(std::string key_id) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw == nullptr) return absl::InternalError("cannot generate an Ed25519 key");
  std::unique_ptr<TokenSigner> s(new TokenSigner());
  s->key_id_ = std::move(key_id);
  s->key_ = std::make_unique<Key>(Key{Pkey(raw)});
  return s;
}

absl::StatusOr<std::unique_ptr<TokenSigner>> TokenSigner::FromPrivatePem(std::string key_id, std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (raw == nullptr || EVP_PKEY_get_id(raw) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(raw);
    return absl::InvalidArgumentError("token signing key: not an Ed25519 private key in PEM");
  }
  std::unique_ptr<TokenSigner> s(new TokenSigner());
  s->key_id_ = std::move(key_id);
  s->key_ = std::make_unique<Key>(Key{Pkey(raw)});
  return s;
}

absl::StatusOr<std::string> TokenSigner::Sign(const Claims& claims) const {
  std::string input = absl::StrCat(Base64UrlEncode(HeaderJson(key_id_)), ".", Base64UrlEncode(ClaimsJson(claims)));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  size_t sig_len = sizeof(sig);
  bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_->pkey.get()) == 1 &&
            EVP_DigestSign(ctx, sig, &sig_len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return absl::InternalError("Ed25519 signing failed");
  return absl::StrCat(input, ".", Base64UrlEncode(std::string_view(reinterpret_cast<char*>(sig), sig_len)));
}

namespace {
absl::StatusOr<std::string> WritePem(EVP_PKEY* key, bool private_key) {
  BIO* bio = BIO_new(BIO_s_mem());
  int ok = private_key ? PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr)
                       : PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out = ok == 1 ? std::string(data, static_cast<size_t>(len)) : "";
  BIO_free(bio);
  if (out.empty()) return absl::InternalError("cannot write PEM");
  return out;
}
}  // namespace

absl::StatusOr<std::string> TokenSigner::PublicPem() const { return WritePem(key_->pkey.get(), false); }
absl::StatusOr<std::string> TokenSigner::PrivatePem() const { return WritePem(key_->pkey.get(), true); }

std::string_view KeyUseName(KeyUse use) {
  switch (use) {
    case KeyUse::kAny:
      return "any";
    case KeyUse::kUserOnly:
      return "user";
    case KeyUse::kServiceOnly:
      return "service";
  }
  return "?";
}

namespace {

// Whether a key of `use` may have signed `c`. A service token carries
// nothing a service could use to act as a person: no tenant, no mailboxes,
// no role but "service".
absl::Status CheckKeyUse(KeyUse use, const Claims& c) {
  switch (use) {
    case KeyUse::kAny:
      return absl::OkStatus();
    case KeyUse::kUserOnly:
      if (c.HasRole(kRoleService)) return Unauthenticated("a service token signed with a user-token key");
      return absl::OkStatus();
    case KeyUse::kServiceOnly:
      if (c.roles != std::vector<std::string>{kRoleService} || c.service.empty() || !c.tenant_id.empty() ||
          !c.mailbox_ids.empty())
        return Unauthenticated("a service-token key signs only service tokens");
      return absl::OkStatus();
  }
  return Unauthenticated("unknown key use");
}

}  // namespace

struct TokenVerifier::Keys {
  struct Key {
    Pkey pkey;
    KeyUse use = KeyUse::kAny;
  };
  std::map<std::string, Key> by_id;
};

TokenVerifier::TokenVerifier(std::string expected_issuer, size_t cache_entries)
    : issuer_(std::move(expected_issuer)), keys_(std::make_unique<Keys>()), cache_entries_(cache_entries) {}

TokenVerifier::~TokenVerifier() = default;

absl::Status TokenVerifier::AddPublicPem(std::string key_id, std::string_view pem, KeyUse use) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (raw == nullptr || EVP_PKEY_get_id(raw) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(raw);
    return absl::InvalidArgumentError(absl::StrCat("token key ", key_id, ": not an Ed25519 public key in PEM"));
  }
  keys_->by_id[key_id] = Keys::Key{Pkey(raw), use};
  return absl::OkStatus();
}

absl::StatusOr<Claims> TokenVerifier::Verify(std::string_view token, absl::Time now) const {
  if (token.size() > 8192) return Unauthenticated("too long");
  std::string key(token);
  std::optional<Claims> cached;
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) cached = it->second;
  }
  if (!cached) {
    ASSIGN_OR_RETURN(Parts parts, Split(token));
    ASSIGN_OR_RETURN(std::string header_json, DecodePart(parts.header));
    Json header = Json::parse(header_json, nullptr, false);
    // json::value() throws on a type mismatch; look fields up by hand.
    auto field = [&](const char* name) -> std::string {
      auto it = header.is_object() ? header.find(name) : header.end();
      return it != header.end() && it->is_string() ? it->get<std::string>() : "";
    };
    if (field("alg") != "EdDSA") return Unauthenticated("alg must be EdDSA");
    std::string kid = field("kid");
    auto k = keys_->by_id.find(kid);
    if (k == keys_->by_id.end()) return Unauthenticated("unknown key id");
    ASSIGN_OR_RETURN(std::string sig, DecodePart(parts.signature));
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    bool valid = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, k->second.pkey.get()) == 1 &&
                 EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                  reinterpret_cast<const unsigned char*>(parts.signing_input.data()),
                                  parts.signing_input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!valid) return Unauthenticated("bad signature");
    ASSIGN_OR_RETURN(std::string payload, DecodePart(parts.payload));
    ASSIGN_OR_RETURN(Claims claims, ParseClaims(payload));
    if (claims.issuer != issuer_) return Unauthenticated("wrong issuer");
    RETURN_IF_ERROR(CheckKeyUse(k->second.use, claims));
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() >= cache_entries_) cache_.clear();
    cache_.emplace(key, claims);
    cached = std::move(claims);
  }
  if (now > cached->expires_at + leeway) return Unauthenticated("expired");
  if (now + leeway < cached->issued_at) return Unauthenticated("not yet valid");
  return *std::move(cached);
}

absl::StatusOr<Claims> DecodeUnverified(std::string_view token) {
  ASSIGN_OR_RETURN(Parts parts, Split(token));
  ASSIGN_OR_RETURN(std::string payload, Base64UrlDecode(parts.payload));
  return ParseClaims(payload);
}

}  // namespace mailgrid::auth
