// Internal to libs/mail: Content-* header fields into ContentInfo.
#pragma once

#include <cstdint>

#include "libs/mail/header.h"
#include "libs/mail/mime.h"

namespace mailgrid::mail {

// `digest_child`: the part is inside multipart/digest, so its default type is
// message/rfc822 (RFC 2046 §5.1.5). Problems (kInvalidContentType) are OR-ed
// into *problems.
ContentInfo ParseContentInfo(const Header& header, bool digest_child, const DecodeOptions& decode,
                             uint32_t* problems);

}  // namespace mailgrid::mail
