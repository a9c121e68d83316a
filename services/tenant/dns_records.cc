#include "services/tenant/dns_records.h"

#include "absl/strings/str_cat.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {
namespace {

v1::DnsRecord Record(std::string name, v1::DnsRecordType type, std::string value, uint32_t priority,
                     uint32_t ttl, v1::DnsRecordPurpose purpose, bool required) {
  v1::DnsRecord r;
  r.set_name(std::move(name));
  r.set_type(type);
  r.set_value(std::move(value));
  r.set_priority(priority);
  r.set_ttl(ttl);
  r.set_purpose(purpose);
  r.set_required_for_verification(required);
  r.mutable_check()->set_status(v1::RECORD_CHECK_STATUS_UNCHECKED);
  return r;
}

}  // namespace

std::vector<v1::DnsRecord> GenerateRecords(const std::string& domain, const RecordConfig& c,
                                           const std::string& token,
                                           const std::vector<v1::DkimKey>& keys,
                                           const std::string& dmarc_rua) {
  std::vector<v1::DnsRecord> out;
  for (const MxHost& mx : c.mx_hosts) {
    out.push_back(Record(domain, v1::DNS_RECORD_TYPE_MX, mx.host, mx.priority, c.ttl,
                         v1::DNS_RECORD_PURPOSE_MX, true));
  }
  out.push_back(Record(domain, v1::DNS_RECORD_TYPE_TXT,
                       absl::StrCat("v=spf1 mx include:", c.spf_include, " ~all"), 0, c.ttl,
                       v1::DNS_RECORD_PURPOSE_SPF, false));
  for (const v1::DkimKey& k : keys) {
    if (k.state() == v1::DKIM_KEY_STATE_RETIRED || k.state() == v1::DKIM_KEY_STATE_UNSPECIFIED)
      continue;
    out.push_back(Record(absl::StrCat(k.selector(), "._domainkey.", domain),
                         v1::DNS_RECORD_TYPE_TXT, k.txt_value(), 0, c.ttl,
                         v1::DNS_RECORD_PURPOSE_DKIM, false));
  }
  // p=quarantine by default (issue 4); relaxed alignment so mail. and other
  // subdomains of the tenant still align.
  std::string dmarc = "v=DMARC1; p=quarantine";
  if (!dmarc_rua.empty()) absl::StrAppend(&dmarc, "; rua=mailto:", dmarc_rua);
  absl::StrAppend(&dmarc, "; adkim=r; aspf=r");
  out.push_back(Record(absl::StrCat("_dmarc.", domain), v1::DNS_RECORD_TYPE_TXT, dmarc, 0, c.ttl,
                       v1::DNS_RECORD_PURPOSE_DMARC, false));
  out.push_back(Record(absl::StrCat(kVerificationLabel, ".", domain), v1::DNS_RECORD_TYPE_TXT,
                       absl::StrCat(kVerificationPrefix, token), 0, c.ttl,
                       v1::DNS_RECORD_PURPOSE_VERIFICATION, true));
  const std::pair<const char*, v1::DnsRecordPurpose> cnames[] = {
      {"mail.", v1::DNS_RECORD_PURPOSE_CNAME_MAIL},
      {"autoconfig.", v1::DNS_RECORD_PURPOSE_CNAME_AUTOCONFIG},
      {"autodiscover.", v1::DNS_RECORD_PURPOSE_CNAME_AUTODISCOVER},
  };
  for (const auto& [label, purpose] : cnames) {
    out.push_back(Record(absl::StrCat(label, domain), v1::DNS_RECORD_TYPE_CNAME, c.cluster_hostname,
                         0, c.ttl, purpose, false));
  }
  return out;
}

std::string RecordId(const v1::DnsRecord& r) {
  return absl::StrCat(static_cast<int>(r.purpose()), "|", r.name(), "|", r.value());
}

std::string NewVerificationToken() { return NewId("") + NewId("").substr(0, 12); }

}  // namespace mailgrid::tenant
