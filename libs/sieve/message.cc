// MessageContext from a raw RFC 5322 message, with libs/mail doing the
// parsing. The body is decoded only when a body test asks for it.
#include <memory>

#include "libs/mail/decode.h"
#include "libs/mail/header.h"
#include "libs/mail/mime.h"
#include "libs/sieve/sieve.h"

namespace mailgrid::sieve {

MessageContext MessageContextFromRaw(std::string_view raw, std::string_view envelope_from,
                                     std::string_view envelope_to) {
  MessageContext context;
  context.envelope_from = std::string(envelope_from);
  context.envelope_to = std::string(envelope_to);
  context.size = raw.size();
  mail::Header header = mail::ParseHeaderLenient(raw);
  context.headers.reserve(header.fields.size());
  for (const mail::HeaderField& f : header.fields) {
    context.headers.push_back({f.name, f.value});
  }
  // The accessors outlive this call (and `raw`), so they share a copy.
  auto copy = std::make_shared<const std::string>(raw);
  size_t body_offset = std::min(header.block.end(), raw.size());
  context.body_raw = [copy, body_offset] { return copy->substr(body_offset); };
  context.body_text = [copy] {
    absl::StatusOr<mail::Message> message = mail::ParseMessage(*copy);
    if (!message.ok()) return std::string();
    return mail::ExtractSearchText(*copy, *message).body;
  };
  return context;
}

}  // namespace mailgrid::sieve
