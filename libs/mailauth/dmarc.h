// DMARC (RFC 7489): record parsing, discovery at _dmarc.<From domain> with
// the organizational-domain fallback (§6.6.3), identifier alignment (§3.1)
// and the policy to apply (p=, sp=, pct=).
//
// The organizational domain comes from the Public Suffix List: Debian's
// `publicsuffix` package installs /usr/share/publicsuffix/public_suffix_list.dat,
// loaded when present; otherwise a built-in fallback treats the last label as
// the suffix (plus a handful of well-known two-label suffixes), which is
// wrong for many ccTLDs and is logged by the caller's choice of list.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/mailauth/dkim.h"
#include "libs/mailauth/dns.h"
#include "libs/mailauth/spf.h"

namespace mailgrid::mailauth {

class PublicSuffixList {
 public:
  // The list text in the publicsuffix.org format (comments, "*." and "!" rules).
  static PublicSuffixList FromString(std::string_view text);
  static absl::StatusOr<PublicSuffixList> Load(const std::string& path);
  // The Debian file if present, else the fallback described above. Loaded once.
  static const PublicSuffixList& Default();
  static constexpr const char* kDebianPath = "/usr/share/publicsuffix/public_suffix_list.dat";

  // The registrable ("organizational") domain: the public suffix plus one
  // label, lower case. A name that is itself a public suffix is returned as is.
  std::string OrganizationalDomain(std::string_view domain) const;
  bool loaded_from_file() const { return from_file_; }
  size_t size() const { return rules_.size() + wildcards_.size() + exceptions_.size(); }

 private:
  std::unordered_set<std::string> rules_, wildcards_, exceptions_;
  bool from_file_ = false;
};

enum class DmarcPolicy : uint8_t { kNone, kQuarantine, kReject };
std::string_view DmarcPolicyName(DmarcPolicy p);  // "none", "quarantine", "reject"

struct DmarcRecord {
  DmarcPolicy policy = DmarcPolicy::kNone;      // p=
  std::optional<DmarcPolicy> subdomain_policy;  // sp=
  bool strict_dkim = false;                     // adkim=s
  bool strict_spf = false;                      // aspf=s
  int pct = 100;                                // pct=
  std::vector<std::string> rua, ruf;            // as written
};

// "v=DMARC1; p=...". §6.3: v must be first and p present (else invalid);
// unknown tags ignored; a bad value of a known tag is INVALID_ARGUMENT,
// except as §6.6.3 allows: a missing or bad p= with a valid rua= is p=none.
absl::StatusOr<DmarcRecord> ParseDmarcRecord(std::string_view txt);

enum class DmarcResult : uint8_t { kNone, kPass, kFail, kTempError, kPermError };
std::string_view DmarcResultName(DmarcResult r);

struct DmarcInput {
  std::string from_domain;  // RFC5322.From domain (FromDomain())
  SpfResult spf = SpfResult::kNone;
  std::string spf_domain;  // the domain SPF checked (MAIL FROM's, or HELO's)
  std::vector<DkimVerdict> dkim;
};

struct DmarcVerdict {
  DmarcResult result = DmarcResult::kNone;
  std::string from_domain;
  std::string record_domain;                // where the record was found ("" for none)
  DmarcPolicy policy = DmarcPolicy::kNone;  // the policy that applies (p= or sp=)
  // What to do: `policy` when DMARC failed and the message fell inside pct=,
  // otherwise kNone (pct sampling can lower reject to quarantine, §6.6.4).
  DmarcPolicy disposition = DmarcPolicy::kNone;
  bool spf_aligned = false;
  bool dkim_aligned = false;
  std::string reason;
};

struct DmarcOptions {
  const PublicSuffixList* psl = nullptr;  // nullptr = PublicSuffixList::Default()
  // A number in [0, 100) compared with pct=; nullopt = random.
  std::optional<int> pct_roll;
};

// True when `a` and `b` are aligned: equal (strict), or with the same
// organizational domain (relaxed).
bool DmarcAligned(std::string_view a, std::string_view b, bool strict, const PublicSuffixList& psl);

DmarcVerdict DmarcCheck(const DmarcInput& input, Resolver& dns, const DmarcOptions& options = {});

// The RFC5322.From domain (§6.6.1): exactly one From field holding exactly
// one mailbox with a domain; otherwise INVALID_ARGUMENT (the caller should
// reject or treat the message as failing DMARC).
absl::StatusOr<std::string> FromDomain(std::string_view message);

}  // namespace mailgrid::mailauth
