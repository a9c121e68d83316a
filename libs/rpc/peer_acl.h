// Which certificate may call which gRPC methods: mTLS proves a caller holds
// a certificate from the cluster CA, not that it is the right service. A
// peer ACL restricts method prefixes (fully qualified method names, e.g.
// "mailgrid.raft.v1." or "mailgrid.kv.v1.KvService/") to peers whose
// certificate names one of the allowed identities (its subject CN or a
// subjectAltName; the chart issues each component a certificate with
// CN=<component>). Methods no rule covers stay open to any CA-signed peer.
//
// Spec (the --peer-acl flag): rules separated by ';', each
// "PREFIX=NAME,NAME,..."; the longest matching prefix decides. Example:
//   mailgrid.raft.v1.=tenantd;mailgrid.kv.v1.=tenantd,relayd
// A refused call fails PERMISSION_DENIED before the handler runs (checked by
// an AuthMetadataProcessor, i.e. in gRPC's server auth filter).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace mailgrid::rpc {

struct PeerAclRule {
  std::string method_prefix;  // without the leading '/'
  std::vector<std::string> allowed_names;
};

absl::StatusOr<std::vector<PeerAclRule>> ParsePeerAcl(std::string_view spec);

// The rule deciding `method` ("/pkg.Service/Method" or without '/'), or
// nullptr when no rule covers it.
const PeerAclRule* MatchingRule(const std::vector<PeerAclRule>& rules, std::string_view method);

// Pure decision: may a peer with these certificate names call `method`?
bool PeerAllowed(const std::vector<PeerAclRule>& rules, std::string_view method,
                 const std::vector<std::string>& peer_names);

// The names a TLS peer's certificate carries (x509_common_name and every
// x509_subject_alternative_name of the auth context).
std::vector<std::string> PeerCertificateNames(const grpc::AuthContext& context);

// Refusals are logged and counted in
// mailgrid_rpc_peer_acl_denied_total{method_prefix} (the rule's prefix, so
// the label set is bounded by the flag; every rule's series exists from
// start at 0, so rate() and increase() alerts see the first denial).
class PeerAclProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // `registry` may be null (no metric).
  explicit PeerAclProcessor(std::vector<PeerAclRule> rules,
                            prometheus::Registry* registry = nullptr);
  // Cheap and non-blocking: runs on gRPC's own thread.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  std::vector<PeerAclRule> rules_;
  // Parallel to rules_ (nullptr without a registry).
  std::vector<prometheus::Counter*> denied_;
};

}  // namespace mailgrid::rpc
