#include "libs/rpc/peer_acl.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/log.h"

namespace mailgrid::rpc {

absl::StatusOr<std::vector<PeerAclRule>> ParsePeerAcl(std::string_view spec) {
  std::vector<PeerAclRule> rules;
  absl::string_view whole(spec.data(), spec.size());
  for (absl::string_view part : absl::StrSplit(whole, ';', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    std::vector<absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--peer-acl \"", part, "\": ", why, " (expected PREFIX=NAME,NAME;...)"));
    };
    if (kv.size() != 2) return bad("no '='");
    PeerAclRule rule;
    rule.method_prefix = std::string(absl::StripPrefix(absl::StripAsciiWhitespace(kv[0]), "/"));
    if (rule.method_prefix.empty()) return bad("empty method prefix");
    for (absl::string_view name : absl::StrSplit(kv[1], ',', absl::SkipWhitespace())) {
      rule.allowed_names.emplace_back(absl::StripAsciiWhitespace(name));
    }
    if (rule.allowed_names.empty()) return bad("no allowed certificate name");
    for (const PeerAclRule& r : rules) {
      if (r.method_prefix == rule.method_prefix) return bad("prefix given twice");
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

const PeerAclRule* MatchingRule(const std::vector<PeerAclRule>& rules, std::string_view method) {
  if (!method.empty() && method.front() == '/') method.remove_prefix(1);
  const PeerAclRule* best = nullptr;
  for (const PeerAclRule& r : rules) {
    if (method.substr(0, r.method_prefix.size()) != r.method_prefix) continue;
    if (best == nullptr || r.method_prefix.size() > best->method_prefix.size()) best = &r;
  }
  return best;
}

bool PeerAllowed(const std::vector<PeerAclRule>& rules, std::string_view method,
                 const std::vector<std::string>& peer_names) {
  const PeerAclRule* rule = MatchingRule(rules, method);
  if (rule == nullptr) return true;
  for (const std::string& name : peer_names) {
    if (std::find(rule->allowed_names.begin(), rule->allowed_names.end(), name) !=
        rule->allowed_names.end())
      return true;
  }
  return false;
}

std::vector<std::string> PeerCertificateNames(const grpc::AuthContext& context) {
  std::vector<std::string> names;
  for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
    for (const grpc::string_ref& value : context.FindPropertyValues(property)) {
      names.emplace_back(value.data(), value.size());
    }
  }
  return names;
}

PeerAclProcessor::PeerAclProcessor(std::vector<PeerAclRule> rules, prometheus::Registry* registry)
    : rules_(std::move(rules)), denied_(rules_.size(), nullptr) {
  if (registry == nullptr) return;
  auto& family = prometheus::BuildCounter()
                     .Name("mailgrid_rpc_peer_acl_denied_total")
                     .Help("gRPC calls refused by --peer-acl, by the rule's method prefix")
                     .Register(*registry);
  for (size_t i = 0; i < rules_.size(); ++i)
    denied_[i] = &family.Add({{"method_prefix", rules_[i].method_prefix}});
}

grpc::Status PeerAclProcessor::Process(const InputMetadata& auth_metadata,
                                       grpc::AuthContext* context, OutputMetadata*,
                                       OutputMetadata*) {
  auto path = auth_metadata.find(":path");
  // Every HTTP/2 gRPC call carries :path; refuse rather than guess.
  if (path == auth_metadata.end())
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no :path");
  std::string_view method(path->second.data(), path->second.size());
  const PeerAclRule* rule = MatchingRule(rules_, method);
  if (rule == nullptr) return grpc::Status::OK;
  std::vector<std::string> names = PeerCertificateNames(*context);
  if (PeerAllowed(rules_, method, names)) return grpc::Status::OK;
  if (prometheus::Counter* c = denied_[static_cast<size_t>(rule - rules_.data())]) c->Increment();
  std::string who = names.empty() ? "(no certificate)" : names.front();
  log::Warn("peer refused by --peer-acl",
            {{"method", std::string(method)}, {"peer", absl::StrJoin(names, ",")}});
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      absl::StrCat("certificate ", who, " may not call ", std::string(method)));
}

}  // namespace mailgrid::rpc
