// Internal to libs/mailauth: pieces shared by signing and verification.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "libs/mail/header.h"
#include "libs/mailauth/dkim.h"

namespace mailgrid::mailauth::internal {

// One whole header field (name, colon, value, folding and its final line
// ending, as libs/mail's HeaderField::line spans it), canonicalized, ending
// with CRLF.
std::string CanonHeaderLine(DkimCanon canon, std::string_view line);

// The DKIM-Signature field with its b= value deleted (§3.7), line ending kept.
std::string StripSignatureValue(std::string_view line);

// The bytes §3.7 hashes for the header: the fields `names` selects (each name
// takes the last not-yet-used instance, from the bottom up; a name with none
// left contributes nothing), canonicalized, then the signature field itself
// with b= empty and no final CRLF.
std::string HeaderHashInput(std::string_view message, const mail::Header& header,
                            const std::vector<std::string>& names, DkimCanon canon,
                            std::string_view signature_line);

}  // namespace mailgrid::mailauth::internal
