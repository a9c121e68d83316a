// DKIM parsing and canonicalization (RFC 6376 §3.2-3.6).
#include "libs/mailauth/dkim.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"
#include "libs/mailauth/dkim_crypto.h"
#include "libs/mailauth/dkim_internal.h"
#include "libs/mailauth/tag_list.h"

namespace mailgrid::mailauth {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

std::string Lower(std::string_view s) { return absl::AsciiStrToLower(ToAbsl(s)); }

absl::StatusOr<std::string> DecodeBase64(std::string_view tag, std::string_view value) {
  std::string clean = StripFws(value);
  std::string out;
  if (!absl::Base64Unescape(clean, &out))
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(tag), "= is not base64"));
  return out;
}

// Digits only, at most 12 of them (§3.5: "MUST NOT exceed 12 digits" for t/x,
// and l= is "76 bits" in practice); no sign, no white space inside.
std::optional<uint64_t> Number(std::string_view v) {
  if (v.empty() || v.size() > 12) return std::nullopt;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

// d= and s= go into a DNS name: letters, digits, '-', '_' and dots between
// non-empty labels.
bool ValidDnsLabelSequence(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    bool ok =
        absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

// RFC 6376 §3.5 i=: [local-part] "@" domain, the domain d= or a subdomain.
bool IdentityInDomain(std::string_view identity, std::string_view domain) {
  size_t at = identity.rfind('@');
  if (at == std::string_view::npos) return false;
  std::string host = Lower(identity.substr(at + 1));
  if (host == domain) return true;
  return host.size() > domain.size() + 1 && absl::EndsWith(host, absl::StrCat(".", ToAbsl(domain)));
}

}  // namespace

std::string_view DkimAlgorithmName(DkimAlgorithm a) {
  switch (a) {
    case DkimAlgorithm::kRsaSha256:
      return "rsa-sha256";
    case DkimAlgorithm::kEd25519Sha256:
      return "ed25519-sha256";
    case DkimAlgorithm::kRsaSha1:
      return "rsa-sha1";
  }
  return "?";
}

std::string_view DkimResultName(DkimResult r) {
  switch (r) {
    case DkimResult::kNone:
      return "none";
    case DkimResult::kPass:
      return "pass";
    case DkimResult::kFail:
      return "fail";
    case DkimResult::kNeutral:
      return "neutral";
    case DkimResult::kPolicy:
      return "policy";
    case DkimResult::kTempError:
      return "temperror";
    case DkimResult::kPermError:
      return "permerror";
  }
  return "?";
}

absl::StatusOr<DkimSignature> ParseDkimSignature(std::string_view value) {
  auto tags = ParseTagList(value);
  if (!tags.ok()) return tags.status();
  for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"}) {
    if (!tags->Has(required))
      return absl::InvalidArgumentError(absl::StrCat("missing required tag ", required, "="));
  }
  DkimSignature sig;
  if (*tags->Get("v") != "1")
    return absl::InvalidArgumentError("unsupported version (v= is not 1)");
  std::string a = Lower(*tags->Get("a"));
  if (a == "rsa-sha256") {
    sig.algorithm = DkimAlgorithm::kRsaSha256;
  } else if (a == "ed25519-sha256") {
    sig.algorithm = DkimAlgorithm::kEd25519Sha256;
  } else if (a == "rsa-sha1") {
    sig.algorithm = DkimAlgorithm::kRsaSha1;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported algorithm a=", a));
  }
  sig.b_base64 = StripFws(*tags->Get("b"));
  auto b = DecodeBase64("b", *tags->Get("b"));
  if (!b.ok()) return b.status();
  sig.signature = *std::move(b);
  auto bh = DecodeBase64("bh", *tags->Get("bh"));
  if (!bh.ok()) return bh.status();
  sig.body_hash = *std::move(bh);
  if (auto c = tags->Get("c")) {
    std::string canon = Lower(StripFws(*c));
    std::pair<std::string, std::string> hb = absl::StrSplit(canon, absl::MaxSplits('/', 1));
    auto parse = [](const std::string& s, DkimCanon* out) {
      if (s == "simple")
        *out = DkimCanon::kSimple;
      else if (s == "relaxed")
        *out = DkimCanon::kRelaxed;
      else
        return false;
      return true;
    };
    if (!parse(hb.first, &sig.header_canon) ||
        (!hb.second.empty() && !parse(hb.second, &sig.body_canon)) ||
        (hb.second.empty() && canon.find('/') != std::string::npos)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown canonicalization c=", canon));
    }
  }
  sig.domain = Lower(StripFws(*tags->Get("d")));
  if (!ValidDnsLabelSequence(sig.domain))
    return absl::InvalidArgumentError("d= is not a domain name");
  sig.selector = Lower(StripFws(*tags->Get("s")));
  if (!ValidDnsLabelSequence(sig.selector))
    return absl::InvalidArgumentError("s= is not a selector");
  for (absl::string_view h : absl::StrSplit(StripFws(*tags->Get("h")), ':')) {
    if (h.empty()) return absl::InvalidArgumentError("empty header name in h=");
    sig.headers.emplace_back(h);
  }
  bool has_from = false;
  for (const auto& h : sig.headers) has_from |= absl::EqualsIgnoreCase(h, "from");
  if (!has_from) return absl::InvalidArgumentError("From is not signed (h= lacks From)");
  if (auto i = tags->Get("i")) {
    sig.identity = std::string(*i);
    if (!IdentityInDomain(sig.identity, sig.domain))
      return absl::InvalidArgumentError("i= is not in d= or a subdomain of it");
  } else {
    sig.identity = absl::StrCat("@", sig.domain);
  }
  if (auto l = tags->Get("l")) {
    sig.body_length = Number(*l);
    if (!sig.body_length) return absl::InvalidArgumentError("l= is not a number");
  }
  if (auto q = tags->Get("q")) {
    bool dns = false;
    for (absl::string_view m : absl::StrSplit(StripFws(*q), ':')) dns |= m == "dns/txt";
    if (!dns) return absl::InvalidArgumentError("q= offers no dns/txt");
  }
  if (auto t = tags->Get("t")) {
    sig.timestamp = Number(*t);
    if (!sig.timestamp) return absl::InvalidArgumentError("t= is not a number");
  }
  if (auto x = tags->Get("x")) {
    sig.expiration = Number(*x);
    if (!sig.expiration) return absl::InvalidArgumentError("x= is not a number");
    if (sig.timestamp && *sig.expiration < *sig.timestamp)
      return absl::InvalidArgumentError("x= is before t=");
  }
  return sig;
}

absl::StatusOr<DkimKeyRecord> ParseDkimKeyRecord(std::string_view txt) {
  auto tags = ParseTagList(txt);
  if (!tags.ok()) return tags.status();
  if (!tags->tags.empty() && tags->tags.front().first == "v" &&
      tags->tags.front().second != "DKIM1")
    return absl::InvalidArgumentError("key record v= is not DKIM1");
  for (size_t i = 1; i < tags->tags.size(); ++i) {
    if (tags->tags[i].first == "v") return absl::InvalidArgumentError("v= must be the first tag");
  }
  DkimKeyRecord key;
  auto p = tags->Get("p");
  if (!p) return absl::InvalidArgumentError("key record has no p=");
  auto pk = DecodeBase64("p", *p);
  if (!pk.ok()) return pk.status();
  key.public_key = *std::move(pk);
  if (auto k = tags->Get("k")) key.key_type = Lower(StripFws(*k));
  if (key.key_type != "rsa" && key.key_type != "ed25519")
    return absl::InvalidArgumentError(absl::StrCat("unknown key type k=", key.key_type));
  if (auto h = tags->Get("h")) {
    for (absl::string_view a : absl::StrSplit(StripFws(*h), ':', absl::SkipEmpty()))
      key.hash_algos.push_back(Lower(ToStd(a)));
  }
  if (auto s = tags->Get("s")) {
    for (absl::string_view a : absl::StrSplit(StripFws(*s), ':', absl::SkipEmpty()))
      key.services.push_back(Lower(ToStd(a)));
  }
  if (auto t = tags->Get("t")) {
    for (absl::string_view f : absl::StrSplit(StripFws(*t), ':', absl::SkipEmpty())) {
      if (f == "y") key.testing = true;
      if (f == "s") key.strict_identity = true;
    }
  }
  return key;
}

namespace internal {

std::string CanonHeaderLine(DkimCanon canon, std::string_view line) {
  if (canon == DkimCanon::kSimple) {
    // Byte for byte; only a bare LF (which never went over SMTP) becomes CRLF.
    std::string out;
    out.reserve(line.size() + 2);
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\n' && (i == 0 || line[i - 1] != '\r')) out.push_back('\r');
      out.push_back(line[i]);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    out += "\r\n";
    return out;
  }
  size_t colon = line.find(':');
  std::string_view name = line.substr(0, colon == std::string_view::npos ? line.size() : colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  std::string out = Lower(name);
  out.push_back(':');
  // Unfold, collapse WSP runs to one SP, drop WSP at both ends of the value.
  bool pending_space = false;
  bool started = false;
  for (char c : value) {
    if (c == '\r' || c == '\n') continue;
    if (IsWsp(c)) {
      pending_space = true;
      continue;
    }
    if (pending_space && started) out.push_back(' ');
    pending_space = false;
    started = true;
    out.push_back(c);
  }
  out += "\r\n";
  return out;
}

std::string StripSignatureValue(std::string_view line) {
  // Find "b=" as a tag name (not "bh=") after the colon and drop its value
  // up to the next ';' or the end of the field; the line ending stays.
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return std::string(line);
  size_t pos = colon + 1;
  while (pos < line.size()) {
    size_t semi = line.find(';', pos);
    size_t end = semi == std::string_view::npos ? line.size() : semi;
    std::string_view spec = line.substr(pos, end - pos);
    size_t eq = spec.find('=');
    if (eq != std::string_view::npos) {
      std::string name = StripFws(spec.substr(0, eq));
      if (name == "b") {
        size_t value_start = pos + eq + 1;
        size_t value_end = end;
        // Keep the field's final line ending out of the deleted value.
        std::string_view tail = line.substr(value_start, value_end - value_start);
        size_t keep = 0;
        while (keep < tail.size() &&
               (tail[tail.size() - 1 - keep] == '\n' || tail[tail.size() - 1 - keep] == '\r'))
          ++keep;
        if (semi != std::string_view::npos) keep = 0;
        return absl::StrCat(ToAbsl(line.substr(0, value_start)),
                            ToAbsl(line.substr(value_end - keep)));
      }
    }
    if (semi == std::string_view::npos) break;
    pos = semi + 1;
  }
  return std::string(line);
}

}  // namespace internal

std::string CanonicalizeHeader(DkimCanon canon, std::string_view name, std::string_view raw_value) {
  return internal::CanonHeaderLine(canon, absl::StrCat(ToAbsl(name), ":", ToAbsl(raw_value)));
}

std::string CanonicalizeBody(DkimCanon canon, std::string_view body) {
  // One pass straight into `out` (no string per line): this runs over the
  // whole body once per signature made or checked.
  std::string out;
  out.reserve(body.size() + 2);
  size_t pending_empty = 0;  // empty lines held back until a non-empty line follows
  size_t pos = 0;
  while (pos < body.size()) {
    size_t lf = body.find('\n', pos);
    std::string_view line =
        body.substr(pos, lf == std::string_view::npos ? std::string_view::npos : lf - pos);
    pos = lf == std::string_view::npos ? body.size() : lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (canon == DkimCanon::kRelaxed) {
      // Runs of WSP become one SP; WSP at the end of the line goes.
      size_t first = 0;
      while (first < line.size() && IsWsp(line[first])) ++first;
      if (first == line.size()) {
        ++pending_empty;
        continue;
      }
      for (; pending_empty > 0; --pending_empty) out += "\r\n";
      if (first > 0) out.push_back(' ');
      size_t i = first;
      while (i < line.size()) {
        size_t run = i;
        while (run < line.size() && !IsWsp(line[run])) ++run;
        out.append(line.data() + i, run - i);
        i = run;
        while (i < line.size() && IsWsp(line[i])) ++i;
        if (i > run && i < line.size()) out.push_back(' ');
      }
    } else {
      if (line.empty()) {
        ++pending_empty;
        continue;
      }
      for (; pending_empty > 0; --pending_empty) out += "\r\n";
      out.append(line.data(), line.size());
    }
    out += "\r\n";
  }
  if (out.empty() && canon == DkimCanon::kSimple) out = "\r\n";
  return out;
}

const std::vector<std::string>& DefaultSignedHeaders() {
  static const auto* headers = new std::vector<std::string>{
      "From",     "To",           "Cc",           "Subject",     "Date",      "Message-ID",
      "Reply-To", "MIME-Version", "Content-Type", "In-Reply-To", "References"};
  return *headers;
}

absl::StatusOr<DkimPrivateKey> DkimPrivateKey::FromPem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::InternalError("BIO_new_mem_buf");
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (raw == nullptr) return absl::InvalidArgumentError("the DKIM private key PEM does not parse");
  DkimPrivateKey key;
  key.pkey_ = std::shared_ptr<void>(raw, [](void* k) { EVP_PKEY_free(static_cast<EVP_PKEY*>(k)); });
  int id = EVP_PKEY_get_base_id(raw);
  if (id == EVP_PKEY_ED25519) {
    key.algorithm_ = DkimAlgorithm::kEd25519Sha256;
  } else if (id == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(raw) < 1024)
      return absl::InvalidArgumentError("RSA DKIM keys must have at least 1024 bits");
    key.algorithm_ = DkimAlgorithm::kRsaSha256;
  } else {
    return absl::InvalidArgumentError("DKIM keys must be RSA or Ed25519");
  }
  key.sign_template_ = internal::NewSignTemplate(raw, key.algorithm_);
  return key;
}

}  // namespace mailgrid::mailauth
