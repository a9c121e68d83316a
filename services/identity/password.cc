#include "services/identity/password.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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

PasswordHasher::PasswordHasher(HashParams params, int max_concurrent, absl::Duration keep_scratch)
    : params_(params),
      max_concurrent_(max_concurrent < 1 ? 1 : max_concurrent),
      keep_scratch_(keep_scratch) {
  if (sodium_init() < 0) abort();  // libsodium cannot work without its RNG
  auto dummy = Hash("mailgrid equal-work dummy password");
  dummy_phc_ = dummy.ok() ? *dummy : "";
  if (argon2::Available()) trimmer_ = std::thread([this] { TrimLoop(); });
}

PasswordHasher::~PasswordHasher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (trimmer_.joinable()) trimmer_.join();
}

std::unique_ptr<argon2::Scratch> PasswordHasher::Acquire() {
  absl::MutexLock lock(&mu_);
  auto free_slot = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return running_ < max_concurrent_; };
  mu_.Await(absl::Condition(&free_slot));
  ++running_;
  if (idle_scratch_.empty()) return std::make_unique<argon2::Scratch>();  // mapped on first use
  auto scratch = std::move(idle_scratch_.back());
  idle_scratch_.pop_back();
  return scratch;
}

void PasswordHasher::Release(std::unique_ptr<argon2::Scratch> scratch) {
  absl::MutexLock lock(&mu_);
  --running_;
  last_release_ = absl::Now();
  if (scratch != nullptr && scratch->bytes() > 0) idle_scratch_.push_back(std::move(scratch));
}

// Unmaps the kept working memory once no hash has run for keep_scratch_.
void PasswordHasher::TrimLoop() {
  const absl::Duration tick = std::min(keep_scratch_, absl::Milliseconds(250));
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), tick);
    if (stopping_ || idle_scratch_.empty() || running_ > 0) continue;
    if (absl::Now() - last_release_ < keep_scratch_) continue;
    std::vector<std::unique_ptr<argon2::Scratch>> drop;
    drop.swap(idle_scratch_);
    mu_.Unlock();
    drop.clear();  // munmap outside the lock
    mu_.Lock();
  }
}

int PasswordHasher::in_flight() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

size_t PasswordHasher::kept_scratch_bytes() const {
  absl::MutexLock lock(&mu_);
  size_t total = 0;
  for (const auto& s : idle_scratch_) total += s->bytes();
  return total;
}

namespace {

constexpr size_t kSaltBytes = crypto_pwhash_SALTBYTES;  // what libsodium writes
constexpr size_t kTagBytes = 32;                        // crypto_pwhash_str's tag

std::string B64(const uint8_t* data, size_t n) {
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), data, n, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// Strict decoding: the whole text, and it must encode back to itself.
bool UnB64(const std::string& text, std::vector<uint8_t>* out) {
  out->assign(text.size(), 0);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out->data(), out->size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
      end != text.data() + text.size())
    return false;
  out->resize(len);
  return B64(out->data(), out->size()) == text;
}

std::string EncodePhc(uint64_t m, uint64_t t, const std::string& salt_b64,
                      const std::string& tag_b64) {
  return absl::StrCat("$argon2id$v=19$m=", m, ",t=", t, ",p=1$", salt_b64, "$", tag_b64);
}

}  // namespace

absl::StatusOr<std::string> PasswordHasher::Hash(std::string_view password) {
  if (argon2::Available() && params_.ops_limit <= 0xffffffffu && params_.mem_kib <= 0xffffffffu) {
    uint8_t salt[kSaltBytes], tag[kTagBytes];
    randombytes_buf(salt, sizeof salt);
    auto scratch = Acquire();
    bool ok =
        argon2::Hash(password, std::string_view(reinterpret_cast<const char*>(salt), sizeof salt),
                     static_cast<uint32_t>(params_.ops_limit),
                     static_cast<uint32_t>(params_.mem_kib), tag, sizeof tag, *scratch);
    Release(std::move(scratch));
    if (ok)
      return EncodePhc(params_.mem_kib, params_.ops_limit, B64(salt, sizeof salt),
                       B64(tag, sizeof tag));
  }
  char out[crypto_pwhash_STRBYTES];
  auto slot = Acquire();
  int rc = crypto_pwhash_str_alg(out, password.data(), password.size(), params_.ops_limit,
                                 static_cast<size_t>(params_.mem_kib) * 1024,
                                 crypto_pwhash_ALG_ARGON2ID13);
  Release(std::move(slot));
  if (rc != 0) return absl::ResourceExhaustedError("argon2id: out of memory");
  return std::string(out);
}

bool PasswordHasher::FastVerify(const std::string& normal, std::string_view password, bool* match) {
  if (!argon2::Available()) return false;
  auto phc = ParsePhc(normal);
  if (!phc.ok() || phc->algorithm != "argon2id" || phc->version != 19 || phc->lanes != 1 ||
      phc->ops < 1 || phc->ops > 0xffffffffu || phc->mem_kib < 8 || phc->mem_kib > 0xffffffffu)
    return false;
  // Only the canonical spelling: anything libsodium might read differently
  // (leading zeros, padding, stray bits) stays libsodium's to judge.
  if (EncodePhc(phc->mem_kib, phc->ops, phc->salt_b64, phc->hash_b64) != normal) return false;
  std::vector<uint8_t> salt, want;
  if (!UnB64(phc->salt_b64, &salt) || !UnB64(phc->hash_b64, &want)) return false;
  if (salt.size() < 8 || want.size() < 16 || want.size() > 64) return false;
  std::vector<uint8_t> got(want.size());
  auto scratch = Acquire();
  bool ok = argon2::Hash(password,
                         std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()),
                         static_cast<uint32_t>(phc->ops), static_cast<uint32_t>(phc->mem_kib),
                         got.data(), got.size(), *scratch);
  Release(std::move(scratch));
  if (!ok) return false;
  *match = sodium_memcmp(got.data(), want.data(), want.size()) == 0;
  sodium_memzero(got.data(), got.size());
  return true;
}

bool PasswordHasher::Verify(std::string_view phc, std::string_view password) {
  std::string normal = NormalisePhc(phc);
  if (!ParsePhc(normal).ok() || normal.size() >= crypto_pwhash_STRBYTES) {
    EqualWork(password);
    return false;
  }
  bool match = false;
  if (FastVerify(normal, password, &match)) return match;
  auto slot = Acquire();
  int rc = crypto_pwhash_str_verify(normal.c_str(), password.data(), password.size());
  Release(std::move(slot));
  return rc == 0;
}

void PasswordHasher::EqualWork(std::string_view password) {
  bool match = false;
  if (FastVerify(dummy_phc_, password, &match)) return;
  auto slot = Acquire();
  int rc = crypto_pwhash_str_verify(dummy_phc_.c_str(), password.data(), password.size());
  Release(std::move(slot));
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
