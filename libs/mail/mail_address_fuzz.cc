// Fuzz target: address lists. Traps when a parsed part carries CR, LF or
// NUL, a decoded name is not UTF-8, or what we format does not parse back to
// the same mailboxes.
#include <cstdint>
#include <string>
#include <string_view>

#include "libs/mail/address.h"
#include "libs/mail/charset.h"
#include "libs/mail/envelope.h"
#include "libs/mail/fuzz_checks.h"
#include "libs/mail/imap_format.h"

namespace {

using namespace mailgrid::mail;
using fuzz::Check;
using fuzz::Clean;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view value(reinterpret_cast<const char*>(data), size);
  AddressList list = ParseAddressList(value);
  for (const Address& a : list.items) {
    Check(Clean(a.raw_name) && Clean(a.local_part) && Clean(a.domain) && Clean(a.route));
    Check(IsValidUtf8(a.name) && Clean(a.name));
  }
  Envelope e;
  e.from = list;
  e.to = list;
  FormatEnvelope(e);
  // Our own output must read back as the same mailboxes (names are encoded
  // from their decoded form, so compare the address parts).
  std::string formatted = FormatAddressList(list);
  AddressList again = ParseAddressList(formatted);
  auto before = list.Mailboxes();
  auto after = again.Mailboxes();
  size_t expected = 0;
  for (const Address* a : before) expected += a->local_part.empty() && a->domain.empty() ? 0 : 1;
  if (!list.malformed && IsValidUtf8(value)) {
    Check(after.size() == expected);
  }
  return 0;
}
