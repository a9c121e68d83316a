// The envelope of a message (RFC 3501 §7.4.2 ENVELOPE): the ten header
// fields IMAP clients list mail by, parsed once at append.
#pragma once

#include <optional>
#include <string>

#include "libs/mail/address.h"
#include "libs/mail/header.h"

namespace mailgrid::mail {

struct Envelope {
  // Unfolded values as written (encoded-words not decoded: IMAP clients
  // decode them); nullopt when the field is absent.
  std::optional<std::string> date;
  std::optional<std::string> subject;
  std::optional<std::string> in_reply_to;
  std::optional<std::string> message_id;
  // nullopt when the field is absent. IMAP's defaulting of Sender and
  // Reply-To to From is done when formatting, not here.
  std::optional<AddressList> from;
  std::optional<AddressList> sender;
  std::optional<AddressList> reply_to;
  std::optional<AddressList> to;
  std::optional<AddressList> cc;
  std::optional<AddressList> bcc;
};

// Builds the envelope from the first occurrence of each field.
Envelope BuildEnvelope(const Header& header, const AddressOptions& options = {});

}  // namespace mailgrid::mail
