#include "services/relay/route_store.h"

#include <openssl/rand.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "libs/outbound/time_util.h"
#include "libs/rpc/errors.h"

namespace mailgrid::relay {
namespace {

std::string Prefix() { return kv::GlobalPrefix("outq_route"); }
std::string Key(const std::string& id) { return kv::KeyBuilder(Prefix()).Str(id).Build(); }
absl::Time Deadline() { return absl::Now() + absl::Seconds(10); }

bool ValidLabelChars(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') return false;
  }
  return s.front() != '.' && s.back() != '.' && s.find("..") == std::string_view::npos;
}

bool SameMatch(const v1::Route& a, const v1::Route& b) {
  return a.match().SerializeAsString() == b.match().SerializeAsString() &&
         a.priority() == b.priority();
}

}  // namespace

absl::Status RouteStore::Validate(const v1::Route& r) {
  if (r.match().has_domain_pattern()) {
    std::string p = r.match().domain_pattern();
    std::string rest = absl::StartsWith(p, "*.") ? p.substr(2) : p;
    if (p != "*" && !ValidLabelChars(rest)) {
      return rpc::InvalidField("match.domain_pattern", "BAD_PATTERN", "not a domain pattern");
    }
  } else if (r.match().has_region()) {
    const std::string& cc = r.match().region();
    if (cc.size() != 2 || !absl::ascii_isalpha(static_cast<unsigned char>(cc[0])) ||
        !absl::ascii_isalpha(static_cast<unsigned char>(cc[1]))) {
      return rpc::InvalidField("match.region", "BAD_REGION", "an ISO 3166-1 alpha-2 code");
    }
  } else {
    return rpc::InvalidField("match", "EMPTY", "a domain pattern or a region is required");
  }
  if (r.concurrency_limit() > 1000) {
    return rpc::InvalidField("concurrency_limit", "OUT_OF_RANGE",
                             "at most 1000 (0: relayd's --destination-concurrency)");
  }
  if (!r.direct() && r.smart_hosts_size() == 0) {
    return rpc::InvalidField("smart_hosts", "EMPTY", "smart hosts are required unless direct");
  }
  for (int i = 0; i < r.smart_hosts_size(); ++i) {
    const v1::SmartHost& h = r.smart_hosts(i);
    if (!ValidLabelChars(h.host()) && !absl::StrContains(h.host(), ':')) {
      return rpc::InvalidField(absl::StrCat("smart_hosts[", i, "].host"), "BAD_HOST",
                               "not a host name or IP literal");
    }
    if (!h.credentials_ref().empty()) {
      const std::string& ref = h.credentials_ref();
      if (ref.size() > 200 || ref[0] == '.' ||
          ref.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
              std::string::npos) {
        return rpc::InvalidField(absl::StrCat("smart_hosts[", i, "].credentials_ref"), "BAD_REF",
                                 "the name of a secret file, not a path");
      }
      // AUTH never crosses the network in clear unless the operator says so.
      if (h.tls() == v1::TLS_MODE_NONE && !h.allow_plaintext_auth()) {
        return rpc::InvalidField(absl::StrCat("smart_hosts[", i, "].credentials_ref"),
                                 "PLAINTEXT_AUTH",
                                 "credentials with TLS_MODE_NONE need allow_plaintext_auth");
      }
    }
    if (h.port() > 65535) {
      return rpc::InvalidField(absl::StrCat("smart_hosts[", i, "].port"), "OUT_OF_RANGE",
                               "port out of range");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Route>> RouteStore::List() {
  kv::v1::ScanRequest scan;
  scan.set_prefix(Prefix());
  scan.set_limit(10000);
  ASSIGN_OR_RETURN(kv::v1::ScanResponse resp, store_->Scan(scan, Deadline()));
  std::vector<v1::Route> out;
  for (const auto& e : resp.entries()) {
    v1::Route r;
    if (r.ParseFromString(e.value())) out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<v1::Route> RouteStore::Set(v1::Route route, absl::Time now) {
  if (route.match().has_domain_pattern()) {
    route.mutable_match()->set_domain_pattern(
        absl::AsciiStrToLower(route.match().domain_pattern()));
  } else if (route.match().has_region()) {
    route.mutable_match()->set_region(absl::AsciiStrToUpper(route.match().region()));
  }
  RETURN_IF_ERROR(Validate(route));
  ASSIGN_OR_RETURN(std::vector<v1::Route> existing, List());
  bool found = route.route_id().empty();
  for (const v1::Route& e : existing) {
    if (e.route_id() == route.route_id())
      found = true;
    else if (SameMatch(e, route))
      return rpc::AlreadyExists("route.match", "ROUTE_EXISTS",
                                absl::StrCat("route ", e.route_id(), " has the same match"));
  }
  if (!found) return rpc::NotFound("route", route.route_id());
  if (route.route_id().empty()) {
    uint32_t random = 0;
    RAND_bytes(reinterpret_cast<unsigned char*>(&random), sizeof(random));
    route.set_route_id(absl::StrFormat("r-%08x", random));
  }
  outbound::ToProto(now, route.mutable_updated_at());
  kv::v1::WriteRequest w;
  auto* put = w.add_ops()->mutable_put();
  put->set_key(Key(route.route_id()));
  put->set_value(route.SerializeAsString());
  ASSIGN_OR_RETURN(auto resp, store_->Write(w, Deadline()));
  (void)resp;
  Refresh(absl::ZeroDuration());
  return route;
}

absl::Status RouteStore::Delete(const std::string& route_id) {
  kv::v1::GetRequest get;
  get.set_key(Key(route_id));
  ASSIGN_OR_RETURN(kv::v1::GetResponse g, store_->Get(get, Deadline()));
  if (!g.found()) return rpc::NotFound("route", route_id);
  kv::v1::WriteRequest w;
  w.add_ops()->mutable_delete_()->set_key(Key(route_id));
  ASSIGN_OR_RETURN(auto resp, store_->Write(w, Deadline()));
  (void)resp;
  Refresh(absl::ZeroDuration());
  return absl::OkStatus();
}

void RouteStore::Refresh(absl::Duration max_age) {
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    if (max_age > absl::ZeroDuration() && now - loaded_at_ < max_age) return;
    loaded_at_ = now;
  }
  absl::StatusOr<std::vector<v1::Route>> routes = List();
  if (!routes.ok()) {
    // Keep the table we have: routing on stale routes beats not delivering.
    log::Warn("routes not reloaded", {{"status", routes.status()}});
    return;
  }
  table_.Set(*std::move(routes));
}

}  // namespace mailgrid::relay
