// DKIM verification (RFC 6376 §6) of every signature in a message.
//
// Result mapping (RFC 6376 §6.1 PERMFAIL/TEMPFAIL onto RFC 8601 words):
//   signature does not parse, unknown a=/c=/v=, rsa-sha1, From unsigned,
//   no key record, key revoked (empty p=), key unusable or too small,
//   key h=/k=/s=/t=s forbids it             -> permerror
//   DNS did not answer                       -> temperror
//   body hash or signature mismatch, l= past the end of the body -> fail
//   expired (x= in the past), over the signature cap -> neutral
//   verified, but l= leaves body bytes unsigned -> policy (pass if allowed)
#include <ctime>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"
#include "libs/mail/header.h"
#include "libs/mailauth/dkim.h"
#include "libs/mailauth/dkim_crypto.h"
#include "libs/mailauth/dkim_internal.h"
#include "libs/mailauth/tag_list.h"

namespace mailgrid::mailauth {
namespace {

DkimVerdict Verdict(DkimResult r, std::string reason, DkimVerdict base) {
  base.result = r;
  base.reason = std::move(reason);
  return base;
}

// Best effort d=/s=/a= of a signature that did not parse, for the report.
DkimVerdict LooseFields(std::string_view value) {
  DkimVerdict v;
  auto tags = ParseTagList(value);
  if (!tags.ok()) return v;
  if (auto d = tags->Get("d")) v.domain = absl::AsciiStrToLower(StripFws(*d));
  if (auto s = tags->Get("s")) v.selector = StripFws(*s);
  if (auto a = tags->Get("a")) v.algorithm = StripFws(*a);
  if (auto b = tags->Get("b")) v.b_prefix = StripFws(*b).substr(0, 8);
  return v;
}

bool ListAllows(const std::vector<std::string>& list, std::string_view want) {
  if (list.empty()) return true;
  for (const auto& v : list) {
    if (v == want || v == "*") return true;
  }
  return false;
}

// The canonical body and its SHA-256 per canonicalization, made when a
// signature first needs them: a message signed twice alike (Ed25519 + RSA,
// as relayd signs) is canonicalized and hashed once.
class BodyHashes {
 public:
  explicit BodyHashes(std::string_view body) : body_(body) {}
  const std::string& Canonical(DkimCanon c) {
    Slot& s = slot(c);
    if (!s.canonical) s.canonical = CanonicalizeBody(c, body_);
    return *s.canonical;
  }
  // The hash of the first `length` canonical bytes (the whole when nullopt).
  std::string Hash(DkimCanon c, std::optional<uint64_t> length) {
    const std::string& canonical = Canonical(c);
    if (length && *length < canonical.size())
      return internal::Sha256(std::string_view(canonical).substr(0, *length));
    Slot& s = slot(c);
    if (!s.whole_hash) s.whole_hash = internal::Sha256(canonical);
    return *s.whole_hash;
  }

 private:
  struct Slot {
    std::optional<std::string> canonical;
    std::optional<std::string> whole_hash;
  };
  Slot& slot(DkimCanon c) { return slots_[c == DkimCanon::kSimple ? 0 : 1]; }
  std::string_view body_;
  Slot slots_[2];
};

DkimVerdict VerifyOne(std::string_view message, const mail::Header& header,
                      const mail::HeaderField& field, BodyHashes& body, Resolver& dns,
                      const DkimVerifyOptions& o, uint64_t now) {
  std::string_view value = field.raw_value.In(message);
  auto parsed = ParseDkimSignature(value);
  if (!parsed.ok()) {
    return Verdict(DkimResult::kPermError, std::string(parsed.status().message()),
                   LooseFields(value));
  }
  const DkimSignature& sig = *parsed;
  DkimVerdict base;
  base.domain = sig.domain;
  base.selector = sig.selector;
  base.identity = sig.identity;
  base.algorithm = std::string(DkimAlgorithmName(sig.algorithm));
  base.b_prefix = sig.b_base64.substr(0, 8);
  if (sig.algorithm == DkimAlgorithm::kRsaSha1)
    return Verdict(DkimResult::kPermError, "rsa-sha1 is not accepted (RFC 8301)", base);
  if (sig.expiration && *sig.expiration < now)
    return Verdict(DkimResult::kNeutral, "signature expired (x=)", base);

  std::string key_name = absl::StrCat(sig.selector, "._domainkey.", sig.domain);
  DnsResult answer = dns.Lookup(key_name, RrType::kTxt);
  if (answer.status == DnsStatus::kTempError)
    return Verdict(DkimResult::kTempError, absl::StrCat("key lookup failed: ", answer.error), base);
  if (answer.empty())
    return Verdict(DkimResult::kPermError, absl::StrCat("no key at ", key_name), base);
  absl::StatusOr<DkimKeyRecord> key = absl::InvalidArgumentError("no key record parses");
  for (const std::string& txt : answer.values) {
    key = ParseDkimKeyRecord(txt);
    if (key.ok()) break;
  }
  if (!key.ok())
    return Verdict(DkimResult::kPermError, absl::StrCat("key syntax: ", key.status().message()),
                   base);
  base.testing = key->testing;
  if (key->public_key.empty()) return Verdict(DkimResult::kPermError, "key revoked", base);
  if (!ListAllows(key->hash_algos, "sha256"))
    return Verdict(DkimResult::kPermError, "key h= does not allow sha256", base);
  if (!ListAllows(key->services, "email"))
    return Verdict(DkimResult::kPermError, "key s= is not for email", base);
  bool ed = sig.algorithm == DkimAlgorithm::kEd25519Sha256;
  if ((key->key_type == "ed25519") != ed)
    return Verdict(DkimResult::kPermError, "key k= does not match a=", base);
  if (key->strict_identity) {
    std::string_view host = std::string_view(sig.identity).substr(sig.identity.rfind('@') + 1);
    if (absl::AsciiStrToLower(ToAbsl(host)) != sig.domain)
      return Verdict(DkimResult::kPermError, "key t=s requires i= in d= exactly", base);
  }

  size_t canon_size = body.Canonical(sig.body_canon).size();
  bool partial = false;
  if (sig.body_length) {
    if (*sig.body_length > canon_size)
      return Verdict(DkimResult::kFail, "l= is longer than the body", base);
    partial = *sig.body_length < canon_size;
  }
  if (body.Hash(sig.body_canon, sig.body_length) != sig.body_hash)
    return Verdict(DkimResult::kFail, "body hash did not verify", base);
  std::string input = internal::HeaderHashInput(message, header, sig.headers, sig.header_canon,
                                                field.line.In(message));
  auto ok = internal::VerifyData(key->key_type, key->public_key, sig.algorithm, input,
                                 sig.signature, o.min_rsa_bits);
  if (!ok.ok()) return Verdict(DkimResult::kPermError, std::string(ok.status().message()), base);
  if (!*ok) return Verdict(DkimResult::kFail, "signature did not verify", base);
  if (partial && !o.accept_partial_body)
    return Verdict(DkimResult::kPolicy, "l= leaves part of the body unsigned", base);
  return Verdict(DkimResult::kPass, "", base);
}

}  // namespace

std::vector<DkimVerdict> DkimVerifyAll(std::string_view message, Resolver& dns,
                                       const DkimVerifyOptions& o) {
  std::vector<DkimVerdict> out;
  mail::Header header = mail::ParseHeaderLenient(message);
  BodyHashes body(header.missing_blank_line ? std::string_view()
                                            : message.substr(header.block.end()));
  uint64_t now = o.now != 0 ? o.now : static_cast<uint64_t>(std::time(nullptr));
  for (const mail::HeaderField* f : header.All("DKIM-Signature")) {
    if (out.size() >= o.max_signatures) {
      DkimVerdict v = LooseFields(f->raw_value.In(message));
      out.push_back(Verdict(DkimResult::kNeutral, "not verified: too many signatures", v));
      continue;
    }
    out.push_back(VerifyOne(message, header, *f, body, dns, o, now));
  }
  return out;
}

}  // namespace mailgrid::mailauth
