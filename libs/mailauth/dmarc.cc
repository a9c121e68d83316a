// DMARC policy discovery, alignment and disposition (RFC 7489 §3, §6).
#include "libs/mailauth/dmarc.h"

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"
#include "libs/mail/address.h"
#include "libs/mail/header.h"
#include "libs/mailauth/tag_list.h"

namespace mailgrid::mailauth {
namespace {

std::optional<DmarcPolicy> PolicyOf(std::string_view v) {
  std::string s = absl::AsciiStrToLower(ToAbsl(v));
  if (s == "none") return DmarcPolicy::kNone;
  if (s == "quarantine") return DmarcPolicy::kQuarantine;
  if (s == "reject") return DmarcPolicy::kReject;
  return std::nullopt;
}

std::vector<std::string> UriList(std::string_view v) {
  std::vector<std::string> out;
  for (absl::string_view u : absl::StrSplit(ToAbsl(v), ',', absl::SkipWhitespace()))
    out.emplace_back(absl::StripAsciiWhitespace(u));
  return out;
}

bool IsDmarcRecord(std::string_view txt) {
  absl::string_view t = absl::StripLeadingAsciiWhitespace(ToAbsl(txt));
  if (!absl::StartsWith(t, "v")) return false;
  t.remove_prefix(1);
  t = absl::StripLeadingAsciiWhitespace(t);
  if (!absl::StartsWith(t, "=")) return false;
  t = absl::StripLeadingAsciiWhitespace(t.substr(1));
  if (!absl::StartsWith(t, "DMARC1")) return false;
  t.remove_prefix(6);
  t = absl::StripLeadingAsciiWhitespace(t);
  return t.empty() || t[0] == ';';
}

int Roll(const DmarcOptions& o) {
  if (o.pct_roll) return *o.pct_roll;
  thread_local std::mt19937 rng{std::random_device{}()};
  return static_cast<int>(rng() % 100);
}

}  // namespace

std::string_view DmarcPolicyName(DmarcPolicy p) {
  switch (p) {
    case DmarcPolicy::kNone:
      return "none";
    case DmarcPolicy::kQuarantine:
      return "quarantine";
    case DmarcPolicy::kReject:
      return "reject";
  }
  return "?";
}

std::string_view DmarcResultName(DmarcResult r) {
  switch (r) {
    case DmarcResult::kNone:
      return "none";
    case DmarcResult::kPass:
      return "pass";
    case DmarcResult::kFail:
      return "fail";
    case DmarcResult::kTempError:
      return "temperror";
    case DmarcResult::kPermError:
      return "permerror";
  }
  return "?";
}

absl::StatusOr<DmarcRecord> ParseDmarcRecord(std::string_view txt) {
  auto tags = ParseTagList(txt);
  if (!tags.ok()) return tags.status();
  if (tags->tags.empty() || tags->tags[0].first != "v" || tags->tags[0].second != "DMARC1")
    return absl::InvalidArgumentError("a DMARC record starts with v=DMARC1");
  DmarcRecord rec;
  if (auto rua = tags->Get("rua")) rec.rua = UriList(*rua);
  if (auto ruf = tags->Get("ruf")) rec.ruf = UriList(*ruf);
  auto p = tags->Get("p");
  std::optional<DmarcPolicy> policy = p ? PolicyOf(*p) : std::nullopt;
  if (!policy) {
    // §6.6.3 step 6: a record with a valid rua= but no usable p= is p=none.
    if (rec.rua.empty()) return absl::InvalidArgumentError("DMARC record without a valid p=");
    policy = DmarcPolicy::kNone;
  }
  rec.policy = *policy;
  if (auto sp = tags->Get("sp")) {
    rec.subdomain_policy = PolicyOf(*sp);
    if (!rec.subdomain_policy) return absl::InvalidArgumentError("bad sp=");
  }
  for (const char* tag : {"adkim", "aspf"}) {
    auto v = tags->Get(tag);
    if (!v) continue;
    std::string s = absl::AsciiStrToLower(ToAbsl(*v));
    if (s != "r" && s != "s") return absl::InvalidArgumentError(absl::StrCat("bad ", tag, "="));
    (std::string_view(tag) == "adkim" ? rec.strict_dkim : rec.strict_spf) = s == "s";
  }
  if (auto pct = tags->Get("pct")) {
    int n = 0;
    if (!absl::SimpleAtoi(ToAbsl(*pct), &n) || n < 0 || n > 100)
      return absl::InvalidArgumentError("bad pct=");
    rec.pct = n;
  }
  return rec;
}

bool DmarcAligned(std::string_view a, std::string_view b, bool strict,
                  const PublicSuffixList& psl) {
  std::string x = CanonicalDnsName(a), y = CanonicalDnsName(b);
  if (x.empty() || y.empty()) return false;
  if (x == y) return true;
  return !strict && psl.OrganizationalDomain(x) == psl.OrganizationalDomain(y);
}

DmarcVerdict DmarcCheck(const DmarcInput& in, Resolver& dns, const DmarcOptions& o) {
  const PublicSuffixList& psl = o.psl != nullptr ? *o.psl : PublicSuffixList::Default();
  DmarcVerdict v;
  v.from_domain = CanonicalDnsName(in.from_domain);
  if (v.from_domain.empty()) {
    v.result = DmarcResult::kPermError;
    v.reason = "no From domain";
    return v;
  }
  // §6.6.3: _dmarc.<From domain>, then _dmarc.<organizational domain>.
  std::string org = psl.OrganizationalDomain(v.from_domain);
  std::vector<std::string> candidates = {v.from_domain};
  if (org != v.from_domain) candidates.push_back(org);
  std::vector<std::string> records;
  for (const std::string& d : candidates) {
    DnsResult r = dns.Lookup(absl::StrCat("_dmarc.", d), RrType::kTxt);
    if (r.status == DnsStatus::kTempError) {
      v.result = DmarcResult::kTempError;
      v.reason = absl::StrCat("DNS error for _dmarc.", d, ": ", r.error);
      return v;
    }
    records.clear();
    for (const std::string& t : r.values) {
      if (IsDmarcRecord(t)) records.push_back(t);
    }
    if (!records.empty()) {
      v.record_domain = d;
      break;
    }
  }
  if (records.empty()) {
    v.reason = "no DMARC record";
    return v;
  }
  if (records.size() > 1) {
    v.reason = absl::StrCat("more than one DMARC record at _dmarc.", v.record_domain);
    v.record_domain.clear();
    return v;  // §6.6.3 step 5: DMARC does not apply
  }
  auto rec = ParseDmarcRecord(records[0]);
  if (!rec.ok()) {
    v.result = DmarcResult::kPermError;
    v.reason = std::string(rec.status().message());
    return v;
  }
  bool subdomain = v.record_domain != v.from_domain;
  v.policy = subdomain && rec->subdomain_policy ? *rec->subdomain_policy : rec->policy;
  v.spf_aligned = in.spf == SpfResult::kPass &&
                  DmarcAligned(in.spf_domain, v.from_domain, rec->strict_spf, psl);
  for (const DkimVerdict& d : in.dkim) {
    if (d.result == DkimResult::kPass &&
        DmarcAligned(d.domain, v.from_domain, rec->strict_dkim, psl))
      v.dkim_aligned = true;
  }
  if (v.spf_aligned || v.dkim_aligned) {
    v.result = DmarcResult::kPass;
    return v;
  }
  v.result = DmarcResult::kFail;
  v.reason = "neither SPF nor DKIM passed aligned with the From domain";
  v.disposition = v.policy;
  if (rec->pct < 100 && Roll(o) >= rec->pct) {
    // §6.6.4: outside the sample, apply the next less strict policy.
    v.disposition =
        v.policy == DmarcPolicy::kReject ? DmarcPolicy::kQuarantine : DmarcPolicy::kNone;
  }
  return v;
}

absl::StatusOr<std::string> FromDomain(std::string_view message) {
  mail::Header header = mail::ParseHeaderLenient(message);
  std::vector<const mail::HeaderField*> from = header.All("From");
  if (from.size() != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("the message has ", from.size(), " From fields"));
  mail::AddressList list = mail::ParseAddressList(from[0]->value);
  std::vector<const mail::Address*> boxes = list.Mailboxes();
  if (boxes.size() != 1)
    return absl::InvalidArgumentError(absl::StrCat("From holds ", boxes.size(), " mailboxes"));
  std::string domain = boxes[0]->NormalizedDomain();
  if (domain.empty() || domain[0] == '[')
    return absl::InvalidArgumentError("From has no domain name");
  return CanonicalDnsName(domain);
}

}  // namespace mailgrid::mailauth
