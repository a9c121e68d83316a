#include "libs/replica/kv_scope.h"

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "libs/base/log.h"
#include "libs/kv/keys.h"
#include "libs/rpc/peer_acl.h"
#include "libs/rpc/service_main.h"

namespace mailgrid::replica {
namespace {

absl::StatusOr<std::string> ParsePrefix(absl::string_view text) {
  if (absl::ConsumePrefix(&text, "global:")) {
    bool family = absl::ConsumeSuffix(&text, "*");
    if (text.empty()) return absl::InvalidArgumentError("empty global space");
    std::string prefix = kv::GlobalPrefix(std::string(text));
    // GlobalPrefix ends with the string terminator "\0\x01"; without it the
    // prefix covers every space whose name starts with `text`.
    if (family) prefix.resize(prefix.size() - 2);
    return prefix;
  }
  if (absl::ConsumePrefix(&text, "tenant:")) {
    if (text.empty()) return absl::InvalidArgumentError("empty tenant id");
    return kv::TenantPrefix(std::string(text));
  }
  if (absl::ConsumePrefix(&text, "hex:")) {
    if (text.empty() || text.size() % 2 != 0 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isxdigit(c); }))
      return absl::InvalidArgumentError("hex: needs an even number of hex digits");
    return absl::HexStringToBytes(text);
  }
  return absl::InvalidArgumentError(
      "a prefix is global:SPACE, global:SPACE*, tenant:ID or hex:BYTES");
}

bool KeyIn(const std::vector<std::string>& prefixes, const std::string& key) {
  for (const std::string& p : prefixes)
    if (absl::StartsWith(key, p)) return true;
  return false;
}

// [start, end) (end "" = unbounded) inside the keys of one prefix, i.e.
// inside [p, PrefixEnd(p)).
bool RangeIn(const std::vector<std::string>& prefixes, const std::string& start,
             const std::string& end) {
  if (!end.empty() && end <= start) return true;  // empty range: reads nothing
  for (const std::string& p : prefixes) {
    if (start < p) continue;
    std::string limit = kv::PrefixEnd(p);
    if (limit.empty() || (!end.empty() && end <= limit)) return true;
  }
  return false;
}

// Keys are binary; logs and errors show them escaped and bounded.
std::string Printable(const std::string& key) {
  return absl::CEscape(key.size() > 64 ? key.substr(0, 64) + "..." : key);
}

absl::Mutex scope_mu(absl::kConstInit);
std::shared_ptr<const KvScope>* process_scope ABSL_GUARDED_BY(scope_mu) = nullptr;

std::shared_ptr<const KvScope> ProcessScope() {
  absl::MutexLock lock(&scope_mu);
  return process_scope == nullptr ? nullptr : *process_scope;
}

template <typename Request>
grpc::Status Check(const grpc::ServerContextBase& ctx, const Request& req) {
  std::shared_ptr<const KvScope> scope = ProcessScope();
  if (scope == nullptr || scope->empty()) return grpc::Status::OK;
  auto auth = ctx.auth_context();
  std::vector<std::string> names;
  if (auth != nullptr) names = rpc::PeerCertificateNames(*auth);
  std::string bad;
  if (scope->Allows(names, req, &bad)) return grpc::Status::OK;
  std::string who = names.empty() ? "(no certificate)" : names.front();
  log::Warn("KV call outside the peer's --kv-scope refused",
            {{"peer", absl::StrJoin(names, ",")}, {"key", bad}});
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      absl::StrCat("certificate ", who, " may not use key ", bad));
}

// --kv-scope from the common flags: rpc::RunService calls this (registered
// below, so only daemons that serve KvService accept the flag).
absl::Status InstallFromFlags(const rpc::CommonConfig& common) {
  if (common.kv_scope.empty()) return absl::OkStatus();
  // The spec first: a typo is reported as such, whatever else is missing.
  absl::StatusOr<KvScope> scope = KvScope::Parse(common.kv_scope);
  if (!scope.ok()) return scope.status();
  if (common.tls_client_ca.empty())
    return absl::InvalidArgumentError(
        "--kv-scope needs mTLS (--tls-client-ca): without client certificates there is no peer "
        "name to scope");
  SetProcessKvScope(*std::move(scope));
  return absl::OkStatus();
}

template <typename Request>
grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx, const Request& req) {
  grpc::Status status = Check(*ctx, req);
  if (status.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

[[maybe_unused]] const bool registered = (rpc::SetKvScopeInstaller(&InstallFromFlags), true);

}  // namespace

absl::StatusOr<KvScope> KvScope::Parse(std::string_view spec) {
  KvScope scope;
  for (absl::string_view rule :
       absl::StrSplit(absl::string_view(spec.data(), spec.size()), ';', absl::SkipWhitespace())) {
    rule = absl::StripAsciiWhitespace(rule);
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kv-scope \"", rule, "\": ", why, " (expected NAME=PREFIX,PREFIX;...)"));
    };
    std::vector<absl::string_view> parts = absl::StrSplit(rule, absl::MaxSplits('=', 1));
    if (parts.size() != 2) return bad("no '='");
    std::string name(absl::StripAsciiWhitespace(parts[0]));
    if (name.empty()) return bad("empty certificate name");
    if (scope.prefixes_.count(name) > 0) return bad("name given twice");
    std::vector<std::string>& prefixes = scope.prefixes_[name];
    for (absl::string_view p : absl::StrSplit(parts[1], ',', absl::SkipWhitespace())) {
      absl::StatusOr<std::string> prefix = ParsePrefix(absl::StripAsciiWhitespace(p));
      if (!prefix.ok()) return bad(prefix.status().message());
      prefixes.push_back(*std::move(prefix));
    }
    if (prefixes.empty()) return bad("no prefix");
  }
  return scope;
}

std::vector<std::string> KvScope::PrefixesFor(const std::vector<std::string>& names,
                                              bool* scoped) const {
  *scoped = false;
  std::vector<std::string> out;
  for (const std::string& name : names) {
    auto it = prefixes_.find(name);
    if (it == prefixes_.end()) continue;
    *scoped = true;
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return out;
}

bool KvScope::Allows(const std::vector<std::string>& names, const kv::v1::GetRequest& req,
                     std::string* bad) const {
  bool scoped;
  std::vector<std::string> prefixes = PrefixesFor(names, &scoped);
  if (!scoped || KeyIn(prefixes, req.key())) return true;
  *bad = Printable(req.key());
  return false;
}

bool KvScope::Allows(const std::vector<std::string>& names, const kv::v1::ScanRequest& req,
                     std::string* bad) const {
  bool scoped;
  std::vector<std::string> prefixes = PrefixesFor(names, &scoped);
  if (!scoped) return true;
  if (req.has_key_range()) {
    if (RangeIn(prefixes, req.key_range().start(), req.key_range().end())) return true;
    *bad = absl::StrCat("[", Printable(req.key_range().start()), ", ",
                        Printable(req.key_range().end()), ")");
    return false;
  }
  // A prefix scan (also the default: an unset range is the empty prefix,
  // the whole store) stays inside p when it starts with p.
  if (KeyIn(prefixes, req.prefix())) return true;
  *bad = absl::StrCat(Printable(req.prefix()), "*");
  return false;
}

bool KvScope::Allows(const std::vector<std::string>& names, const kv::v1::WriteRequest& req,
                     std::string* bad) const {
  bool scoped;
  std::vector<std::string> prefixes = PrefixesFor(names, &scoped);
  if (!scoped) return true;
  // Conditions read keys too: a condition outside the scope would leak
  // whether a key exists and its value (ConditionFailed carries it).
  for (const kv::v1::Condition& c : req.conditions()) {
    if (!KeyIn(prefixes, c.key())) {
      *bad = Printable(c.key());
      return false;
    }
  }
  for (const kv::v1::Op& op : req.ops()) {
    if (op.has_put() && !KeyIn(prefixes, op.put().key())) {
      *bad = Printable(op.put().key());
      return false;
    }
    if (op.has_delete_() && !KeyIn(prefixes, op.delete_().key())) {
      *bad = Printable(op.delete_().key());
      return false;
    }
    if (op.has_delete_range() &&
        (op.delete_range().end().empty() ||
         !RangeIn(prefixes, op.delete_range().start(), op.delete_range().end()))) {
      *bad = absl::StrCat("[", Printable(op.delete_range().start()), ", ",
                          Printable(op.delete_range().end()), ")");
      return false;
    }
  }
  return true;
}

void SetProcessKvScope(KvScope scope) {
  auto next = std::make_unique<std::shared_ptr<const KvScope>>(
      std::make_shared<const KvScope>(std::move(scope)));
  absl::MutexLock lock(&scope_mu);
  // The holder is leaked on purpose: it lives for the process, like flags.
  process_scope = next.release();
}

grpc::Status CheckKvScope(const grpc::ServerContextBase& ctx, const kv::v1::GetRequest& req) {
  return Check(ctx, req);
}
grpc::Status CheckKvScope(const grpc::ServerContextBase& ctx, const kv::v1::ScanRequest& req) {
  return Check(ctx, req);
}
grpc::Status CheckKvScope(const grpc::ServerContextBase& ctx, const kv::v1::WriteRequest& req) {
  return Check(ctx, req);
}

grpc::ServerUnaryReactor* RefuseOutsideKvScope(grpc::CallbackServerContext* ctx,
                                               const kv::v1::GetRequest& req) {
  return Refuse(ctx, req);
}
grpc::ServerUnaryReactor* RefuseOutsideKvScope(grpc::CallbackServerContext* ctx,
                                               const kv::v1::ScanRequest& req) {
  return Refuse(ctx, req);
}
grpc::ServerUnaryReactor* RefuseOutsideKvScope(grpc::CallbackServerContext* ctx,
                                               const kv::v1::WriteRequest& req) {
  return Refuse(ctx, req);
}

}  // namespace mailgrid::replica
