// Argon2id (RFC 9106, version 0x13) for one lane, computing into working
// memory that the caller keeps between hashes.
//
// Why not only libsodium: crypto_pwhash maps m KiB afresh for every hash and
// unmaps it after, so the kernel faults in and zeroes 4,864 pages for each
// password check at m = 19 MiB: 8-9 ms of a ~30 ms check on our machines.
// Reusing the memory removes that cost and nothing else changes: the same
// parameters, the same tags, the same PHC strings (argon2id_test checks the
// output byte for byte against libsodium over random inputs and parameters).
// Debian's libargon2 could reuse memory through allocate_cbk, but its
// portable build costs more than libsodium's page faults (48 vs 30+10 ms).
//
// Scope: x86-64 with AVX2 (runtime check), one lane (p = 1, what identityd
// writes and Dovecot/libsodium's crypto_pwhash_str write), tags of 16..64
// bytes, salts of at least 8 bytes. Anything else returns false and the
// caller uses libsodium. BLAKE2b is libsodium's (crypto_generichash_blake2b).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mailgrid::identity::argon2 {

// The working memory of one hash: 1 KiB blocks, mapped once and kept. Not
// thread-safe; one hash at a time. Excluded from core dumps (it holds
// password-derived blocks until overwritten by the next hash or unmapped).
class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // At least `blocks` KiB of 64-byte aligned memory; nullptr if mapping fails.
  void* Blocks(size_t blocks);
  size_t bytes() const { return bytes_; }

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
};

// True when Hash can run here (the CPU has AVX2).
bool Available();

// The raw Argon2id tag of `out_len` bytes of `password` and `salt` with
// t passes over m_kib KiB, one lane, no secret or associated data: what
// libsodium's crypto_pwhash(..., crypto_pwhash_ALG_ARGON2ID13) computes with
// memlimit = m_kib * 1024. False (nothing written) when outside the scope
// above or the parameters are invalid (t < 1, m_kib < 8).
bool Hash(std::string_view password, std::string_view salt, uint32_t t, uint32_t m_kib,
          uint8_t* out, size_t out_len, Scratch& scratch);

}  // namespace mailgrid::identity::argon2
