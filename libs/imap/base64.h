// Strict base64 (RFC 4648 §4) for SASL exchanges (RFC 3501 §6.2.2, RFC 4959):
// the alphabet only, padding required, no whitespace, zero padding bits. A
// client line that is not exactly this is answered BAD (RFC 3501 requires
// rejecting invalid BASE64 during AUTHENTICATE).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::imap {

absl::StatusOr<std::string> DecodeBase64(std::string_view in);
std::string EncodeBase64(std::string_view in);

}  // namespace mailgrid::imap
