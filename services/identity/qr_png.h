// A QR code (libqrencode, error correction M) as a PNG image: 8-bit
// grayscale, `scale` pixels per module, a quiet zone of `margin` modules,
// deflated with zlib. For TOTP enrolment and QR-code login tickets.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::identity {

absl::StatusOr<std::string> QrPng(std::string_view text, int scale = 4, int margin = 4);

}  // namespace mailgrid::identity
