// Password hashing: argon2id through libsodium's crypto_pwhash, stored as
// PHC strings ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>") so the
// parameters travel with each hash, Dovecot-style "{ARGON2ID}$argon2id$..."
// hashes import as they are, and a hash made under weaker parameters is
// recognised (NeedsRehash) and upgraded at the next successful login.
//
// Memory under a login storm: each hash takes m KiB of memory, so at most
// `max_concurrent` hashes run at once (a counting semaphore); other callers
// wait their turn. That bounds the hashing memory to m * max_concurrent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

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
  PasswordHasher(HashParams params, int max_concurrent);

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

 private:
  void Acquire();
  void Release();

  HashParams params_;
  std::string dummy_phc_;
  int max_concurrent_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mailgrid::identity
