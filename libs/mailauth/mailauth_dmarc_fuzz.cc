// Fuzz target: DMARC records, the From domain, the public suffix walk and
// the Authentication-Results we render from hostile strings. Traps when the
// rendered header is not exactly one well-formed field.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libs/mail/header.h"
#include "libs/mailauth/auth_results.h"
#include "libs/mailauth/dmarc.h"

namespace {

using namespace mailgrid::mailauth;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  (void)ParseDmarcRecord(in);
  auto from = FromDomain(in);
  static const PublicSuffixList psl =
      PublicSuffixList::FromString("com\nuk\nco.uk\n*.ck\n!www.ck\n");
  std::string org = psl.OrganizationalDomain(in);
  Check(org.size() <= in.size());
  (void)AuthResultsClaims(in, "mx.example");

  AuthVerdicts v;
  v.spf.result = SpfResult::kPermError;
  v.spf.reason = in;
  v.spf.sender = in;
  v.helo = in;
  DkimVerdict d;
  d.result = DkimResult::kFail;
  d.domain = in;
  d.selector = in;
  d.reason = in;
  d.b_prefix = in.substr(0, 8);
  v.dkim.push_back(d);
  v.dmarc.from_domain = from.ok() ? *from : in;
  v.dmarc.reason = in;
  std::string h = RenderAuthenticationResults(in, v);
  auto parsed = mailgrid::mail::ParseHeader(h + "\r\n");
  Check(parsed.ok() && parsed->fields.size() == 1 && parsed->malformed.empty());
  return 0;
}
