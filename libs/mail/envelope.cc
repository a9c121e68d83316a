#include "libs/mail/envelope.h"

namespace mailgrid::mail {
namespace {

std::optional<std::string> Text(const Header& header, std::string_view name) {
  std::optional<std::string_view> v = header.Value(name);
  if (!v) return std::nullopt;
  return std::string(*v);
}

std::optional<AddressList> Addresses(const Header& header, std::string_view name,
                                     const AddressOptions& options) {
  std::optional<std::string_view> v = header.Value(name);
  if (!v) return std::nullopt;
  return ParseAddressList(*v, options);
}

}  // namespace

Envelope BuildEnvelope(const Header& header, const AddressOptions& options) {
  Envelope e;
  e.date = Text(header, "Date");
  e.subject = Text(header, "Subject");
  e.in_reply_to = Text(header, "In-Reply-To");
  e.message_id = Text(header, "Message-ID");
  e.from = Addresses(header, "From", options);
  e.sender = Addresses(header, "Sender", options);
  e.reply_to = Addresses(header, "Reply-To", options);
  e.to = Addresses(header, "To", options);
  e.cc = Addresses(header, "Cc", options);
  e.bcc = Addresses(header, "Bcc", options);
  return e;
}

}  // namespace mailgrid::mail
