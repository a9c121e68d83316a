// DKIM keys: generation (OpenSSL: Ed25519 per RFC 8463 and RSA-2048), the
// TXT value to publish, and sealing private keys at rest.
//
// SECURITY: private keys are stored only sealed with XChaCha20-Poly1305
// (libsodium) under a 32-byte master key that tenantd receives from a
// secret (--dkim-master-key-file or MAILGRID_DKIM_MASTER_KEY), never from
// the store. The additional data binds a sealed key to its domain and
// selector, so a sealed key copied onto another domain does not open.
// Decrypted keys leave tenantd only through GetDkimSigningKey (relayd).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "mailgrid/tenant/v1/domain.pb.h"

namespace mailgrid::tenant {

struct DkimKeyPair {
  tenant::v1::DkimAlgorithm algorithm = tenant::v1::DKIM_ALGORITHM_UNSPECIFIED;
  std::string private_pem;  // PKCS#8 PEM
  std::string public_b64;   // the p= value
};

absl::StatusOr<DkimKeyPair> GenerateDkimKey(tenant::v1::DkimAlgorithm algorithm);

// "v=DKIM1; k=ed25519; p=..." or "v=DKIM1; k=rsa; p=..." (RFC 6376 §3.6.1).
std::string DkimTxtValue(tenant::v1::DkimAlgorithm algorithm, std::string_view public_b64);

// The p= tag of a DKIM TXT value with white space removed, or "".
std::string DkimPublicKeyTag(std::string_view txt);

// Seals and opens private keys with the master key.
class KeySealer {
 public:
  // `master_key` must be 32 bytes.
  static absl::StatusOr<KeySealer> Create(std::string master_key);

  struct Sealed {
    std::string nonce;
    std::string ciphertext;
  };
  Sealed Seal(std::string_view plaintext, std::string_view associated_data) const;
  // DATA_LOSS when the ciphertext, nonce or associated data do not match.
  absl::StatusOr<std::string> Open(const Sealed& sealed, std::string_view associated_data) const;

  // First 8 bytes of BLAKE2b(master key): which key sealed a record.
  const std::string& key_id() const { return key_id_; }

 private:
  std::string key_;
  std::string key_id_;
};

// "example.com|mg20261127g1-ed": what a sealed key is bound to.
std::string SealContext(std::string_view domain, std::string_view selector);

}  // namespace mailgrid::tenant
