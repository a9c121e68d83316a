// Fuzz target: SPF parsing, macro expansion and check_host() over a resolver
// that answers every TXT question with the input (so include:/redirect=
// recurse into the same record) and every A/MX question with something.
// Traps when the lookup limit is passed or a result has no name.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libs/mailauth/spf.h"

namespace {

using namespace mailgrid::mailauth;

void Check(bool ok) {
  if (!ok) std::abort();
}

class EchoResolver final : public Resolver {
 public:
  explicit EchoResolver(std::string txt) : txt_(std::move(txt)) {}
  DnsResult Lookup(std::string_view name, RrType type) override {
    ++lookups;
    DnsResult r;
    r.status = DnsStatus::kOk;
    if (type == RrType::kTxt) r.values.push_back(txt_);
    if (type == RrType::kA) r.values.push_back("192.0.2.1");
    if (type == RrType::kMx) {
      r.mx.push_back({10, "mx.example.com"});
      r.values.push_back("mx.example.com");
    }
    if (type == RrType::kPtr) r.values.push_back("host.example.com");
    if (name.size() % 7 == 0) r.status = DnsStatus::kNxDomain, r.values.clear(), r.mx.clear();
    return r;
  }
  int lookups = 0;

 private:
  std::string txt_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string txt(reinterpret_cast<const char*>(data), size);
  (void)ParseSpfRecord(txt);
  SpfRequest req;
  req.ip = *IpAddress::Parse(size % 2 ? "192.0.2.77" : "2001:db8::77");
  req.sender = "user@example.com";
  req.helo = "mx.example.com";
  req.now = 1800000000;
  (void)ExpandSpfMacros(txt, req, "example.com", size % 3 == 0, nullptr);
  EchoResolver dns("v=spf1 " + txt);
  SpfVerdict v = SpfCheck(req, dns);
  Check(v.dns_lookups <= 11);
  // One TXT per check_host, one per DNS term, at most 10 MX hosts or PTR names each.
  Check(dns.lookups <= 1 + 11 * 12 + 10);
  Check(!v.domain.empty());
  return 0;
}
