// Base64url without padding (RFC 4648 §5), as JWS (RFC 7515) uses it.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::auth {

std::string Base64UrlEncode(std::string_view bytes);
// Strict: rejects padding, whitespace and characters outside the alphabet.
absl::StatusOr<std::string> Base64UrlDecode(std::string_view text);

}  // namespace mailgrid::auth
