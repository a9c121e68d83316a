// libFuzzer target for the address parser: arbitrary bytes as a path.
// Invariants: no crash; a parsed address holds no control byte and only
// valid UTF-8; Mailbox() parses back to the same local part and domain.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "libs/smtp/path.h"

namespace {

bool Clean(const std::string& s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return mailgrid::smtp::IsValidUtf8(s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailgrid::smtp;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (PathKind kind : {PathKind::kForward, PathKind::kReverse}) {
    absl::StatusOr<Path> p = ParsePath(text, kind);
    if (!p.ok() || p->null || p->postmaster) continue;
    if (!Clean(p->local_part) || !Clean(p->domain)) abort();
    if (p->local_part.size() > kMaxLocalPartLength || p->domain.size() > kMaxDomainLength) abort();
    absl::StatusOr<Path> again = ParsePath("<" + p->Mailbox() + ">", kind);
    if (!again.ok() || again->local_part != p->local_part || again->domain != p->domain) abort();
  }
  absl::StatusOr<Path> m = ParseMailbox(text);
  if (m.ok() && (!Clean(m->local_part) || !Clean(m->domain))) abort();
  return 0;
}
