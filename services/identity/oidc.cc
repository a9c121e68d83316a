#include "services/identity/oidc.h"

#include <netdb.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/auth/base64url.h"
#include "libs/base/status.h"

namespace mailgrid::identity {
namespace {

using Json = nlohmann::json;

absl::Status Bad(std::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat("id token: ", absl::string_view(why.data(), why.size())));
}

std::shared_ptr<void> Wrap(EVP_PKEY* k) {
  return std::shared_ptr<void>(k, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
}

std::string Field(const Json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

absl::StatusOr<EVP_PKEY*> FromData(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* key = nullptr;
  bool ok = params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("jwks: bad ", type, " key"));
  return key;
}

absl::StatusOr<EVP_PKEY*> RsaKey(const Json& jwk) {
  auto n = auth::Base64UrlDecode(Field(jwk, "n"));
  auto e = auth::Base64UrlDecode(Field(jwk, "e"));
  if (!n.ok() || !e.ok() || n->size() < 256)
    return absl::InvalidArgumentError("jwks: RSA key needs n (>= 2048 bits) and e");
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                           static_cast<int>(n->size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                           static_cast<int>(e->size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e);
  auto key = FromData("RSA", bld);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  return key;
}

absl::StatusOr<EVP_PKEY*> EcKey(const Json& jwk) {
  if (Field(jwk, "crv") != "P-256") return absl::InvalidArgumentError("jwks: only P-256 EC keys");
  auto x = auth::Base64UrlDecode(Field(jwk, "x"));
  auto y = auth::Base64UrlDecode(Field(jwk, "y"));
  if (!x.ok() || !y.ok() || x->size() != 32 || y->size() != 32)
    return absl::InvalidArgumentError("jwks: EC key needs 32-byte x and y");
  std::string point = std::string(1, '\x04') + *x + *y;
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  auto key = FromData("EC", bld);
  OSSL_PARAM_BLD_free(bld);
  return key;
}

// JWS ES256 signatures are r||s (RFC 7518 §3.4); OpenSSL wants DER.
std::optional<std::string> EcdsaRawToDer(const std::string& raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  ECDSA_SIG_set0(sig, r, s);
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

absl::StatusOr<Jwks> Jwks::Parse(std::string_view json) {
  Json j = Json::parse(json.begin(), json.end(), nullptr, false);
  if (!j.is_object() || !j.contains("keys") || !j["keys"].is_array())
    return absl::InvalidArgumentError("jwks: not a JWK set ({\"keys\": [...]})");
  Jwks out;
  for (const auto& jwk : j["keys"]) {
    if (!jwk.is_object()) return absl::InvalidArgumentError("jwks: a key is not an object");
    std::string use = Field(jwk, "use");
    if (!use.empty() && use != "sig") continue;
    std::string kty = Field(jwk, "kty");
    absl::StatusOr<EVP_PKEY*> key;
    if (kty == "RSA")
      key = RsaKey(jwk);
    else if (kty == "EC")
      key = EcKey(jwk);
    else
      continue;  // other key types cannot verify RS256/ES256
    RETURN_IF_ERROR(key.status());
    out.keys_.push_back(Key{Field(jwk, "kid"), kty, Wrap(*key)});
  }
  if (out.keys_.empty())
    return absl::InvalidArgumentError("jwks: no usable RSA or P-256 signing key");
  return out;
}

const Jwks::Key* Jwks::Find(const std::string& kid, const std::string& kty) const {
  const Key* only = nullptr;
  int count = 0;
  for (const auto& k : keys_) {
    if (k.kty != kty) continue;
    if (!kid.empty() && k.kid == kid) return &k;
    only = &k;
    ++count;
  }
  return kid.empty() && count == 1 ? only : nullptr;
}

absl::StatusOr<Json> VerifyIdToken(std::string_view token, const Jwks& jwks,
                                   const IdTokenCheck& check) {
  if (token.size() > 16384) return Bad("too long");
  size_t a = token.find('.');
  size_t b = a == std::string_view::npos ? a : token.find('.', a + 1);
  if (b == std::string_view::npos || token.find('.', b + 1) != std::string_view::npos)
    return Bad("not a compact JWS");
  auto header_bytes = auth::Base64UrlDecode(token.substr(0, a));
  auto payload_bytes = auth::Base64UrlDecode(token.substr(a + 1, b - a - 1));
  auto sig = auth::Base64UrlDecode(token.substr(b + 1));
  if (!header_bytes.ok() || !payload_bytes.ok() || !sig.ok()) return Bad("malformed base64url");
  Json header = Json::parse(*header_bytes, nullptr, false);
  if (!header.is_object()) return Bad("header is not JSON");
  std::string alg = Field(header, "alg");
  std::string kty = alg == "RS256" ? "RSA" : alg == "ES256" ? "EC" : "";
  if (kty.empty()) return Bad("alg must be RS256 or ES256");
  const Jwks::Key* key = jwks.Find(Field(header, "kid"), kty);
  if (key == nullptr) return Bad("no key for kid");
  std::string signature = *sig;
  if (kty == "EC") {
    auto der = EcdsaRawToDer(signature);
    if (!der) return Bad("bad ES256 signature length");
    signature = *der;
  }
  std::string_view input = token.substr(0, b);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool valid = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr,
                                    static_cast<EVP_PKEY*>(key->pkey.get())) == 1 &&
               EVP_DigestVerify(
                   ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                   reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!valid) return Bad("bad signature");
  Json claims = Json::parse(*payload_bytes, nullptr, false);
  if (!claims.is_object()) return Bad("claims are not JSON");
  if (Field(claims, "iss") != check.issuer) return Bad("wrong iss");
  auto aud = claims.find("aud");
  bool aud_ok = false;
  int audiences = 0;
  if (aud != claims.end() && aud->is_string()) {
    aud_ok = aud->get<std::string>() == check.audience;
    audiences = 1;
  } else if (aud != claims.end() && aud->is_array()) {
    for (const auto& v : *aud) {
      ++audiences;
      if (v.is_string() && v.get<std::string>() == check.audience) aud_ok = true;
    }
  }
  if (!aud_ok) return Bad("wrong aud");
  // OIDC Core §3.1.3.7: with several audiences, azp must be us.
  if (audiences > 1 && Field(claims, "azp") != check.audience) return Bad("wrong azp");
  auto number = [&](const char* name) -> std::optional<int64_t> {
    auto it = claims.find(name);
    if (it == claims.end() || !it->is_number()) return std::nullopt;
    return it->get<int64_t>();
  };
  auto exp = number("exp");
  if (!exp) return Bad("no exp");
  if (absl::FromUnixSeconds(*exp) + check.leeway < check.now) return Bad("expired");
  auto nbf = number("nbf");
  if (nbf && absl::FromUnixSeconds(*nbf) - check.leeway > check.now) return Bad("not yet valid");
  if (!check.nonce.empty() && Field(claims, "nonce") != check.nonce) return Bad("nonce mismatch");
  return claims;
}

bool AcceptableIssuer(const std::string& url) {
  if (absl::StartsWith(url, "https://") && url.size() > 8) return true;
  for (const char* loopback : {"http://127.0.0.1", "http://localhost", "http://[::1]"}) {
    if (absl::StartsWith(url, loopback)) {
      char next = url.size() > strlen(loopback) ? url[strlen(loopback)] : '\0';
      if (next == '\0' || next == ':' || next == '/') return true;
    }
  }
  return false;
}

namespace {

struct Url {
  bool tls = false;
  std::string host, port, hostport, path;
};

absl::StatusOr<Url> ParseUrl(const std::string& url) {
  Url u;
  std::string rest;
  if (absl::StartsWith(url, "https://")) {
    u.tls = true;
    u.port = "443";
    rest = url.substr(8);
  } else if (absl::StartsWith(url, "http://")) {
    u.port = "80";
    rest = url.substr(7);
  } else {
    return absl::InvalidArgumentError("not an http(s) URL");
  }
  size_t slash = rest.find('/');
  u.hostport = rest.substr(0, slash);
  u.path = slash == std::string::npos ? "/" : rest.substr(slash);
  u.host = u.hostport;
  if (!u.hostport.empty() && u.hostport[0] == '[') {
    size_t close = u.hostport.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("bad URL host");
    u.host = u.hostport.substr(1, close - 1);
    if (close + 1 < u.hostport.size() && u.hostport[close + 1] == ':')
      u.port = u.hostport.substr(close + 2);
  } else if (size_t colon = u.hostport.rfind(':'); colon != std::string::npos) {
    u.host = u.hostport.substr(0, colon);
    u.port = u.hostport.substr(colon + 1);
  }
  if (u.host.empty()) return absl::InvalidArgumentError("URL without a host");
  return u;
}

absl::StatusOr<std::string> Body(const std::string& url, const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos)
    return absl::UnavailableError(absl::StrCat("no HTTP response from ", url));
  std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos)
    return absl::UnavailableError(absl::StrCat(url, ": ", status_line));
  return response.substr(end + 4);
}

absl::StatusOr<std::string> ExchangeTls(const Url& u, const std::string& request,
                                        absl::Duration timeout) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("TLS context");
  SSL_CTX_set_default_verify_paths(ctx);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  BIO* bio = BIO_new_ssl_connect(ctx);
  SSL* ssl = nullptr;
  BIO_get_ssl(bio, &ssl);
  SSL_set_tlsext_host_name(ssl, u.host.c_str());
  SSL_set1_host(ssl, u.host.c_str());
  std::string target = absl::StrCat(u.host, ":", u.port);
  BIO_set_conn_hostname(bio, target.c_str());
  std::string response;
  absl::Status status = absl::OkStatus();
  absl::Time deadline = absl::Now() + timeout;
  if (BIO_do_connect(bio) <= 0 || BIO_do_handshake(bio) <= 0) {
    status = absl::UnavailableError(
        absl::StrCat("TLS to ", target, " failed (certificate or connection)"));
  } else if (BIO_write(bio, request.data(), static_cast<int>(request.size())) !=
             static_cast<int>(request.size())) {
    status = absl::UnavailableError(absl::StrCat("TLS write to ", target, " failed"));
  } else {
    char buf[8192];
    for (;;) {
      int n = BIO_read(bio, buf, sizeof(buf));
      if (n <= 0) break;
      response.append(buf, static_cast<size_t>(n));
      if (response.size() > (1 << 20) || absl::Now() > deadline) {
        status = absl::ResourceExhaustedError("response too large or too slow");
        break;
      }
    }
  }
  BIO_free_all(bio);
  SSL_CTX_free(ctx);
  RETURN_IF_ERROR(status);
  return response;
}

absl::StatusOr<std::string> ExchangePlain(const Url& u, const std::string& request,
                                          absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res) != 0 || res == nullptr)
    return absl::UnavailableError(absl::StrCat("cannot resolve ", u.host));
  int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  timeval tv{};
  tv.tv_sec = std::max<int64_t>(1, absl::ToInt64Seconds(timeout));
  bool connected = false;
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    connected = connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  }
  freeaddrinfo(res);
  if (!connected) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", u.hostport));
  }
  bool sent = send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(request.size());
  std::string response;
  char buf[8192];
  while (sent) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
    if (response.size() > (1 << 20)) {
      close(fd);
      return absl::ResourceExhaustedError("response over 1 MiB");
    }
  }
  close(fd);
  return response;
}

absl::StatusOr<std::string> Exchange(const std::string& url, const std::string& method,
                                     const std::string& form, const std::string& basic_auth,
                                     absl::Duration timeout) {
  ASSIGN_OR_RETURN(Url u, ParseUrl(url));
  std::string request = absl::StrCat(method, " ", u.path, " HTTP/1.0\r\nHost: ", u.hostport,
                                     "\r\nAccept: application/json\r\nConnection: close\r\n");
  if (!basic_auth.empty()) absl::StrAppend(&request, "Authorization: Basic ", basic_auth, "\r\n");
  if (method == "POST")
    absl::StrAppend(&request, "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ",
                    form.size(), "\r\n");
  absl::StrAppend(&request, "\r\n", form);
  ASSIGN_OR_RETURN(std::string response,
                   u.tls ? ExchangeTls(u, request, timeout) : ExchangePlain(u, request, timeout));
  return Body(url, response);
}

}  // namespace

absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout) {
  return Exchange(url, "GET", "", "", timeout);
}

absl::StatusOr<std::string> HttpPostForm(const std::string& url, const std::string& form,
                                         const std::string& basic_auth, absl::Duration timeout) {
  return Exchange(url, "POST", form, basic_auth, timeout);
}

}  // namespace mailgrid::identity
