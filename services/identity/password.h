// Password hashing: argon2id through libsodium's crypto_pwhash, stored as
// PHC strings ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>") so the
// parameters travel with each hash, Dovecot-style "{ARGON2ID}$argon2id$..."
// hashes import as they are, and a hash made under weaker parameters is
// recognised (NeedsRehash) and upgraded at the next successful login.
//
// Memory under a login storm: each hash takes m KiB of memory, so at most
// `max_concurrent` hashes run at once (a counting semaphore); other callers
// wait their turn. That bounds the hashing memory to m * max_concurrent.
//
// Where the CPU has AVX2, one-lane argon2id hashes (ours, Dovecot's,
// libsodium's strings) run through argon2id.h in working memory kept between
// hashes (argon2::Scratch, one per running hash), which saves the kernel's
// faulting and zeroing of m KiB per hash (8-9 ms of ~30 at 19 MiB). The
// kept memory is unmapped once no hash has run for `keep_scratch`, so an
// idle identityd holds none of it; under load it holds what libsodium would
// map anyway (m KiB per running hash). Anything else goes to libsodium.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/identity/argon2id.h"

namespace mailgrid::identity {

struct HashParams {
  uint64_t ops_limit = 2;        // t: passes
  uint64_t mem_kib = 19 * 1024;  // m: KiB (19 MiB, OWASP's argon2id minimum)
};

// The fields of a PHC argon2 string.
struct Phc {
  std::string algorithm;  // "argon2id", "argon2i"
  int version = 0;        // 19
  uint64_t mem_kib = 0;
  uint64_t ops = 0;
  uint64_t lanes = 0;
  std::string salt_b64;
  std::string hash_b64;
};

// Parses "$argon2id$v=19$m=..,t=..,p=..$salt$hash" (a leading "{ARGON2ID}"
// or "{ARGON2I}" scheme tag, as Dovecot writes, is accepted).
absl::StatusOr<Phc> ParsePhc(std::string_view text);
// Drops a Dovecot scheme tag so libsodium can verify the string.
std::string NormalisePhc(std::string_view text);

class PasswordHasher {
 public:
  PasswordHasher(HashParams params, int max_concurrent,
                 absl::Duration keep_scratch = absl::Seconds(1));
  ~PasswordHasher();
  PasswordHasher(const PasswordHasher&) = delete;
  PasswordHasher& operator=(const PasswordHasher&) = delete;

  // A fresh random salt each time.
  absl::StatusOr<std::string> Hash(std::string_view password);
  // True when `password` matches `phc`. A malformed phc is false, after the
  // same work as a real check (so it reveals nothing by timing).
  bool Verify(std::string_view phc, std::string_view password);
  // The same work as Verify against a real hash, with no account: what a
  // login for an unknown address costs.
  void EqualWork(std::string_view password);
  // True when `phc` was made with weaker parameters than the current ones.
  bool NeedsRehash(std::string_view phc) const;

  const HashParams& params() const { return params_; }
  // Hashes running now (for metrics and tests).
  int in_flight() const;
  // Bytes of working memory kept for the next hashes (for tests).
  size_t kept_scratch_bytes() const;

 private:
  // A slot of the semaphore and the working memory that goes with it.
  std::unique_ptr<argon2::Scratch> Acquire();
  void Release(std::unique_ptr<argon2::Scratch> scratch);
  // The fast path; false when `normal` is not a canonical one-lane argon2id
  // string it covers (the caller then asks libsodium).
  bool FastVerify(const std::string& normal, std::string_view password, bool* match);
  void TrimLoop();

  HashParams params_;
  std::string dummy_phc_;
  int max_concurrent_;
  absl::Duration keep_scratch_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<argon2::Scratch>> idle_scratch_ ABSL_GUARDED_BY(mu_);
  absl::Time last_release_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread trimmer_;
};

}  // namespace mailgrid::identity
