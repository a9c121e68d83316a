#include "services/identity/password.h"

#include <sodium.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"

namespace mailgrid::identity {
namespace {

std::string_view StripScheme(std::string_view text) {
  if (!text.empty() && text.front() == '{') {
    size_t close = text.find('}');
    if (close != std::string_view::npos) text.remove_prefix(close + 1);
  }
  return text;
}

bool ParseNumber(absl::string_view kv, absl::string_view name, uint64_t* out) {
  if (!absl::ConsumePrefix(&kv, name) || !absl::ConsumePrefix(&kv, "=")) return false;
  return absl::SimpleAtoi(kv, out);
}

}  // namespace

absl::StatusOr<Phc> ParsePhc(std::string_view text) {
  text = StripScheme(text);
  std::vector<absl::string_view> parts = absl::StrSplit(ToAbsl(text), '$');
  // "", alg, v=19, params, salt, hash
  if (parts.size() != 6 || !parts[0].empty()) return absl::InvalidArgumentError("not a PHC string");
  Phc phc;
  phc.algorithm = std::string(parts[1]);
  if (phc.algorithm != "argon2id" && phc.algorithm != "argon2i")
    return absl::InvalidArgumentError("unsupported PHC algorithm");
  uint64_t version = 0;
  if (!ParseNumber(parts[2], "v", &version)) return absl::InvalidArgumentError("bad PHC version");
  phc.version = static_cast<int>(version);
  std::vector<absl::string_view> params = absl::StrSplit(parts[3], ',');
  if (params.size() != 3 || !ParseNumber(params[0], "m", &phc.mem_kib) ||
      !ParseNumber(params[1], "t", &phc.ops) || !ParseNumber(params[2], "p", &phc.lanes))
    return absl::InvalidArgumentError("bad PHC parameters");
  if (parts[4].empty() || parts[5].empty()) return absl::InvalidArgumentError("bad PHC salt/hash");
  phc.salt_b64 = std::string(parts[4]);
  phc.hash_b64 = std::string(parts[5]);
  return phc;
}

std::string NormalisePhc(std::string_view text) { return std::string(StripScheme(text)); }

PasswordHasher::PasswordHasher(HashParams params, int max_concurrent)
    : params_(params), max_concurrent_(max_concurrent < 1 ? 1 : max_concurrent) {
  if (sodium_init() < 0) abort();  // libsodium cannot work without its RNG
  auto dummy = Hash("mailgrid equal-work dummy password");
  dummy_phc_ = dummy.ok() ? *dummy : "";
}

void PasswordHasher::Acquire() {
  absl::MutexLock lock(&mu_);
  auto free_slot = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return running_ < max_concurrent_; };
  mu_.Await(absl::Condition(&free_slot));
  ++running_;
}

void PasswordHasher::Release() {
  absl::MutexLock lock(&mu_);
  --running_;
}

int PasswordHasher::in_flight() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

absl::StatusOr<std::string> PasswordHasher::Hash(std::string_view password) {
  char out[crypto_pwhash_STRBYTES];
  Acquire();
  int rc = crypto_pwhash_str_alg(out, password.data(), password.size(), params_.ops_limit,
                                 static_cast<size_t>(params_.mem_kib) * 1024,
                                 crypto_pwhash_ALG_ARGON2ID13);
  Release();
  if (rc != 0) return absl::ResourceExhaustedError("argon2id: out of memory");
  return std::string(out);
}

bool PasswordHasher::Verify(std::string_view phc, std::string_view password) {
  std::string normal = NormalisePhc(phc);
  if (!ParsePhc(normal).ok() || normal.size() >= crypto_pwhash_STRBYTES) {
    EqualWork(password);
    return false;
  }
  Acquire();
  int rc = crypto_pwhash_str_verify(normal.c_str(), password.data(), password.size());
  Release();
  return rc == 0;
}

void PasswordHasher::EqualWork(std::string_view password) {
  Acquire();
  int rc = crypto_pwhash_str_verify(dummy_phc_.c_str(), password.data(), password.size());
  Release();
  (void)rc;
}

bool PasswordHasher::NeedsRehash(std::string_view phc) const {
  std::string normal = NormalisePhc(phc);
  auto parsed = ParsePhc(normal);
  if (!parsed.ok()) return true;
  if (parsed->algorithm != "argon2id") return true;
  // libsodium compares the stored parameters with ours (any difference,
  // weaker or stronger, asks for a rehash); we upgrade only when weaker.
  return parsed->mem_kib < params_.mem_kib || parsed->ops < params_.ops_limit;
}

}  // namespace mailgrid::identity
