// DKIM (RFC 6376; Ed25519 per RFC 8463; RSA-SHA1 refused per RFC 8301):
// signature and key-record parsing, canonicalization, signing and
// verification. OpenSSL 3 (EVP) does the cryptography.
//
// SECURITY: the message and the DNS answers are hostile. Parsing never trusts
// lengths; the number of signatures verified per message is capped (each
// costs a DNS lookup and a public-key operation); RSA keys under 1024 bits
// are refused (RFC 8301 §3.2). l= is honoured only when it covers the whole
// body: a signature whose l= leaves body bytes unsigned verifies as `policy`,
// never `pass`, because the unsigned tail can be anything an attacker
// appended (RFC 6376 §8.2). We never emit l= when signing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/mailauth/dns.h"

namespace mailgrid::mailauth {

enum class DkimCanon : uint8_t { kSimple, kRelaxed };
enum class DkimAlgorithm : uint8_t { kRsaSha256, kEd25519Sha256, kRsaSha1 };
std::string_view DkimAlgorithmName(DkimAlgorithm a);  // "rsa-sha256", "ed25519-sha256", "rsa-sha1"

// A parsed DKIM-Signature header field (RFC 6376 §3.5).
struct DkimSignature {
  DkimAlgorithm algorithm = DkimAlgorithm::kRsaSha256;
  std::string signature;  // b=, decoded
  std::string b_base64;   // b= as written, white space removed (for header.b)
  std::string body_hash;  // bh=, decoded
  DkimCanon header_canon = DkimCanon::kSimple;
  DkimCanon body_canon = DkimCanon::kSimple;
  std::string domain;                   // d=, lower case
  std::vector<std::string> headers;     // h=, as written
  std::string identity;                 // i=, or "@" + d= when absent
  std::optional<uint64_t> body_length;  // l=
  std::string selector;                 // s=
  std::optional<uint64_t> timestamp;    // t=
  std::optional<uint64_t> expiration;   // x=
};

// PERMERROR-class failures as INVALID_ARGUMENT with the reason ("missing bh=",
// "i= is not in d=", "unsupported version"). `value` is the raw field value
// (after the colon, folding included).
absl::StatusOr<DkimSignature> ParseDkimSignature(std::string_view value);

// A DKIM key record (RFC 6376 §3.6.1).
struct DkimKeyRecord {
  std::string key_type = "rsa";         // k=
  std::vector<std::string> hash_algos;  // h=, empty = any
  std::string public_key;               // p=, decoded; empty = revoked
  std::vector<std::string> services;    // s=, empty = "*"
  bool testing = false;                 // t=y
  bool strict_identity = false;         // t=s
};
absl::StatusOr<DkimKeyRecord> ParseDkimKeyRecord(std::string_view txt);

// Canonicalization (RFC 6376 §3.4). A header field is passed as its name and
// its raw value (everything after the colon, folding included, final CRLF
// excluded); the result ends with CRLF. The body is everything after the
// blank line; bare LF is treated as CRLF.
std::string CanonicalizeHeader(DkimCanon canon, std::string_view name, std::string_view raw_value);
std::string CanonicalizeBody(DkimCanon canon, std::string_view body);

// A private key for signing, parsed once (PKCS#8 or traditional PEM, RSA of
// at least 1024 bits or Ed25519, as tenantd's GetDkimSigningKey returns).
class DkimPrivateKey {
 public:
  static absl::StatusOr<DkimPrivateKey> FromPem(std::string_view pem);
  DkimAlgorithm algorithm() const { return algorithm_; }
  // Internal: the EVP_PKEY, and a signing context set up once for it.
  void* pkey() const { return pkey_.get(); }
  void* sign_template() const { return sign_template_.get(); }

 private:
  DkimAlgorithm algorithm_ = DkimAlgorithm::kRsaSha256;
  std::shared_ptr<void> pkey_;
  std::shared_ptr<void> sign_template_;  // shared by copies; null: set up per signature
};

// The header fields we sign by default: From, To, Cc, Subject, Date,
// Message-ID, Reply-To, MIME-Version, Content-Type, In-Reply-To, References.
const std::vector<std::string>& DefaultSignedHeaders();

struct DkimSignOptions {
  std::string domain;    // d=
  std::string selector;  // s=
  std::vector<std::string> headers = DefaultSignedHeaders();
  // Each listed field is signed as many times as it occurs; these are signed
  // once more, so that adding one more instance breaks the signature
  // (RFC 6376 §8.15).
  std::vector<std::string> oversign = {"From"};
  DkimCanon header_canon = DkimCanon::kRelaxed;
  DkimCanon body_canon = DkimCanon::kRelaxed;
  std::optional<uint64_t> timestamp;   // t=, seconds since the epoch
  std::optional<uint64_t> expiration;  // x=
  std::string identity;                // i=, "" to omit
};

// Signs `message` (header and body, CRLF or bare LF) and returns the whole
// header field to prepend: "DKIM-Signature: v=1; a=...\r\n", folded at 78
// columns. INVALID_ARGUMENT when the message has no From (RFC 6376 §5.4
// requires it signed), the header is malformed past libs/mail's limits, or
// d=/s= are not valid names.
absl::StatusOr<std::string> DkimSign(std::string_view message, const DkimPrivateKey& key,
                                     const DkimSignOptions& options);

// The same as DkimSign(message, *keys[i], options[i]) for each i, in that
// order (each field covers the message without the others: prepend them
// all), but the header is parsed once and the body canonicalized and hashed
// once per body canonicalization rather than once per key: a submission
// signed Ed25519 + RSA, both relaxed/relaxed, hashes its body once.
// INVALID_ARGUMENT when the sizes differ or any one signature would fail;
// then nothing is returned.
absl::StatusOr<std::vector<std::string>> DkimSignAll(
    std::string_view message, const std::vector<const DkimPrivateKey*>& keys,
    const std::vector<DkimSignOptions>& options);

// RFC 6376 §6.1 results, plus RFC 8601's `policy` (see l= above) and
// `none` (no signature at all; DkimVerifyAll returns an empty list then).
enum class DkimResult : uint8_t { kNone, kPass, kFail, kNeutral, kPolicy, kTempError, kPermError };
std::string_view DkimResultName(DkimResult r);  // "pass", "permerror", ...

struct DkimVerdict {
  DkimResult result = DkimResult::kNone;
  std::string domain;     // d= (may be empty when the signature did not parse)
  std::string selector;   // s=
  std::string identity;   // i=
  std::string algorithm;  // a= as written
  std::string b_prefix;   // the first 8+ characters of b=, for header.b (RFC 6008)
  bool testing = false;   // the key record says t=y
  std::string reason;     // a human sentence for anything but pass
};

struct DkimVerifyOptions {
  uint64_t now = 0;           // seconds since the epoch, for x=; 0 = the clock
  size_t max_signatures = 8;  // more are reported permerror without lookups
  size_t min_rsa_bits = 1024;
  // When true, a signature whose l= leaves part of the body unsigned passes
  // (the RFC's behaviour); when false (default) it is reported `policy`.
  bool accept_partial_body = false;
};

// Verifies every DKIM-Signature in `message`, in header order. Keys are
// fetched as TXT <s>._domainkey.<d>.
std::vector<DkimVerdict> DkimVerifyAll(std::string_view message, Resolver& dns,
                                       const DkimVerifyOptions& options = {});

}  // namespace mailgrid::mailauth
