// The DNS records a tenant publishes for a domain, generated from the
// domain's state and the cluster's configuration. Pure; unit-tested.
//
//   <domain>                      MX    one per --mx-hosts entry, with its priority   (required)
//   <domain>                      TXT   v=spf1 mx include:<spf-include> ~all
//   <selector>._domainkey.<domain> TXT  v=DKIM1; k=ed25519|rsa; p=...  (PUBLISHED/ACTIVE/RETIRING
//   keys) _dmarc.<domain>               TXT   v=DMARC1; p=quarantine; rua=mailto:<tenant admin>;
//   ... _mailgrid-verification.<domain> TXT mailgrid-verification=<token> (required)
//   mail.|autoconfig.|autodiscover.<domain> CNAME <cluster-hostname>
#pragma once

#include <string>
#include <vector>

#include "mailgrid/tenant/v1/domain.pb.h"
#include "services/tenant/config.h"

namespace mailgrid::tenant {

struct RecordConfig {
  std::vector<MxHost> mx_hosts;
  std::string cluster_hostname;
  std::string spf_include;
  uint32_t ttl = 3600;
};

inline constexpr char kVerificationLabel[] = "_mailgrid-verification";
inline constexpr char kVerificationPrefix[] = "mailgrid-verification=";

// The records for `domain` (A-label). `keys` are all of the domain's DKIM
// keys; RETIRED ones are left out. `dmarc_rua` is the aggregate-report
// address (the tenant admin; the registration contact until one exists).
std::vector<tenant::v1::DnsRecord> GenerateRecords(const std::string& domain,
                                                   const RecordConfig& config,
                                                   const std::string& verification_token,
                                                   const std::vector<tenant::v1::DkimKey>& keys,
                                                   const std::string& dmarc_rua);

// Identifies a record across regenerations (its check result is kept under
// this key): purpose, owner name and value.
std::string RecordId(const tenant::v1::DnsRecord& record);

// A fresh verification token (random, 32 characters of base32).
std::string NewVerificationToken();

}  // namespace mailgrid::tenant
