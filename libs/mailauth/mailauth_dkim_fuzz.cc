// Fuzz target: DKIM parsing, canonicalization and verification of a hostile
// message. The input's first line (up to '\n') is served as the TXT key
// record of every selector, the rest is the message. Traps when
// canonicalization is not idempotent or a verdict lacks its result or,
// when it passes, its d=/s=.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libs/mailauth/dkim.h"
#include "libs/mailauth/tag_list.h"

namespace {

using namespace mailgrid::mailauth;

void Check(bool ok) {
  if (!ok) std::abort();
}

class EchoResolver final : public Resolver {
 public:
  explicit EchoResolver(std::string txt) : txt_(std::move(txt)) {}
  DnsResult Lookup(std::string_view, RrType type) override {
    DnsResult r;
    r.status = DnsStatus::kOk;
    if (type == RrType::kTxt) r.values.push_back(txt_);
    return r;
  }

 private:
  std::string txt_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string key = std::string(in.substr(0, nl == std::string_view::npos ? 0 : nl));
  std::string_view message = nl == std::string_view::npos ? in : in.substr(nl + 1);

  (void)ParseTagList(message);
  (void)ParseDkimKeyRecord(key);
  auto sig = ParseDkimSignature(message);
  if (sig.ok()) Check(!sig->domain.empty() && !sig->selector.empty());
  for (DkimCanon c : {DkimCanon::kSimple, DkimCanon::kRelaxed}) {
    std::string once = CanonicalizeBody(c, message);
    Check(CanonicalizeBody(c, once) == once);
  }
  EchoResolver dns(key);
  DkimVerifyOptions o;
  o.now = 1800000000;
  for (const DkimVerdict& v : DkimVerifyAll(message, dns, o)) {
    Check(v.result != DkimResult::kNone);
    if (v.result == DkimResult::kPass) Check(!v.domain.empty() && !v.selector.empty());
  }
  return 0;
}
