#include "services/tenant/directory_store.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/kv/keys.h"
#include "services/tenant/errors.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

namespace dkeys {
namespace {
kv::KeyBuilder T(std::string_view t) { return kv::KeyBuilder(kv::TenantPrefix(t)); }
}  // namespace

std::string Address(std::string_view k) {
  return kv::KeyBuilder(kv::GlobalPrefix("addr")).Str(k).Build();
}
std::string Object(std::string_view id) {
  return kv::KeyBuilder(kv::GlobalPrefix("obj")).Str(id).Build();
}
std::string ShardLoad(uint32_t shard) {
  return kv::KeyBuilder(kv::GlobalPrefix("shardload")).U64(shard).Build();
}
std::string User(std::string_view t, std::string_view id) {
  return T(t).Str("user").Str(id).Build();
}
std::string UserPrefix(std::string_view t) { return T(t).Str("user").Build(); }
std::string Dept(std::string_view t, std::string_view id) {
  return T(t).Str("dept").Str(id).Build();
}
std::string DeptRecordPrefix(std::string_view t) { return T(t).Str("dept").Build(); }
std::string DeptChild(std::string_view t, std::string_view parent, std::string_view name_key) {
  return T(t).Str("deptchild").Str(parent).Str(name_key).Build();
}
std::string DeptChildAllPrefix(std::string_view t) { return T(t).Str("deptchild").Build(); }
std::string DeptChildPrefix(std::string_view t, std::string_view parent) {
  return T(t).Str("deptchild").Str(parent).Build();
}
std::string DeptMember(std::string_view t, std::string_view d, std::string_view u) {
  return T(t).Str("deptmember").Str(d).Str(u).Build();
}
std::string DeptMemberPrefix(std::string_view t, std::string_view d) {
  return T(t).Str("deptmember").Str(d).Build();
}
std::string DeptMemberAllPrefix(std::string_view t) { return T(t).Str("deptmember").Build(); }
std::string Group(std::string_view t, std::string_view id) {
  return T(t).Str("group").Str(id).Build();
}
std::string GroupPrefix(std::string_view t) { return T(t).Str("group").Build(); }
std::string MemberOf(std::string_view t, std::string_view m, std::string_view g) {
  return T(t).Str("memberof").Str(m).Str(g).Build();
}
std::string MemberOfPrefix(std::string_view t, std::string_view m) {
  return T(t).Str("memberof").Str(m).Build();
}
std::string Shared(std::string_view t, std::string_view id) {
  return T(t).Str("shared").Str(id).Build();
}
std::string SharedPrefix(std::string_view t) { return T(t).Str("shared").Build(); }
std::string Seat(std::string_view t, std::string_view s, std::string_view u) {
  return T(t).Str("seat").Str(s).Str(u).Build();
}
std::string SeatPrefix(std::string_view t, std::string_view s) {
  return T(t).Str("seat").Str(s).Build();
}
std::string UserSeat(std::string_view t, std::string_view u, std::string_view s) {
  return T(t).Str("userseat").Str(u).Str(s).Build();
}
std::string UserSeatPrefix(std::string_view t, std::string_view u) {
  return T(t).Str("userseat").Str(u).Build();
}
std::string Alias(std::string_view t, std::string_view k) {
  return T(t).Str("alias").Str(k).Build();
}
std::string AliasPrefix(std::string_view t) { return T(t).Str("alias").Build(); }
std::string MailSettings(std::string_view t, std::string_view d) {
  return T(t).Str("mailsettings").Str(d).Build();
}
std::string MailSettingsPrefix(std::string_view t) { return T(t).Str("mailsettings").Build(); }
std::string DirGen(std::string_view t) { return T(t).Str("dirgen").Build(); }
std::string MemGen(std::string_view t) { return T(t).Str("memgen").Build(); }
std::string DeptGen(std::string_view t, std::string_view dept) {
  return T(t).Str("deptgen").Str(dept).Build();
}
std::string DeptGenPrefix(std::string_view t) { return T(t).Str("deptgen").Build(); }
std::string DeptGenAll(std::string_view t) { return T(t).Str("deptgenall").Build(); }
std::string AuditPolicy(std::string_view t) { return T(t).Str("auditpolicy").Build(); }
std::string MonitoringPolicy(std::string_view t) { return T(t).Str("monitorpolicy").Build(); }
std::string Sieve(std::string_view t, std::string_view u) {
  return T(t).Str("sieve").Str(u).Build();
}
std::string PeerWork(std::string_view kind, std::string_view t, std::string_view u) {
  return kv::KeyBuilder(kv::GlobalPrefix("peerwork")).Str(kind).Str(t).Str(u).Build();
}
std::string PeerWorkEvent(std::string_view kind, std::string_view t, std::string_view u,
                          std::string_view event_id) {
  return kv::KeyBuilder(kv::GlobalPrefix("peerwork")).Str(kind).Str(t).Str(u).Str(event_id).Build();
}
std::string PeerWorkPrefix(std::string_view kind) {
  return kv::KeyBuilder(kv::GlobalPrefix("peerwork")).Str(kind).Build();
}
std::string PendingMailbox(std::string_view t, std::string_view u) {
  return kv::KeyBuilder(kv::GlobalPrefix("pendingmbx")).Str(t).Str(u).Build();
}
std::string PendingMailboxPrefix() { return kv::GlobalPrefix("pendingmbx"); }
std::string Purge(absl::Time after, std::string_view t, std::string_view u) {
  return kv::KeyBuilder(kv::GlobalPrefix("purge"))
      .I64(absl::ToUnixMicros(after))
      .Str(t)
      .Str(u)
      .Build();
}
std::string PurgePrefix() { return kv::GlobalPrefix("purge"); }
}  // namespace dkeys

std::string ComponentAfter(std::string_view key, std::string_view prefix) {
  kv::KeyReader r(key);
  if (!r.ConsumePrefix(prefix)) return "";
  auto s = r.Str();
  return s.ok() ? *s : "";
}

absl::StatusOr<ParsedAddress> ParseAddress(std::string_view input, std::string_view field) {
  ASSIGN_OR_RETURN(std::string normalized, NormalizeEmail(input, field));
  size_t at = normalized.rfind('@');
  // NFC of the local part: NFD and NFC spellings are one address.
  ASSIGN_OR_RETURN(std::string local, ValidateName(normalized.substr(0, at), field, 64));
  ParsedAddress a;
  a.local = local;
  a.domain = normalized.substr(at + 1);
  a.address = absl::StrCat(a.local, "@", a.domain);
  a.key = AddressKey(a.local, a.domain);
  return a;
}

std::string AddressKey(std::string_view local, std::string_view domain) {
  return absl::StrCat(NameKey(local), "@", std::string(domain));
}

bool AsciiAddressKey(std::string_view input, std::string* key) {
  const size_t at = input.find('@');
  if (at == 0 || at == std::string_view::npos || at > 64 || at + 1 >= input.size()) return false;
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  std::string out;
  out.reserve(input.size());
  char prev = '.';  // no leading dot, no "..", in either part
  for (size_t i = 0; i < input.size(); ++i) {
    const char c = input[i];
    if (i == at) {
      if (prev == '.') return false;
      out.push_back('@');
      prev = '.';
      continue;
    }
    // Domain labels neither start nor end with '-'.
    const bool domain = i > at;
    const bool ok = alnum(c) || (c == '-' && !(domain && prev == '.')) ||
                    (c == '.' && prev != '.' && !(domain && prev == '-')) ||
                    (!domain && (c == '_' || c == '+'));
    if (!ok) return false;
    out.push_back(lower(c));
    prev = c;
  }
  if (prev == '.' || prev == '-') return false;
  *key = std::move(out);
  return true;
}

std::string TouchDirectory(Batch& batch, const std::string& tenant_id, bool memberships) {
  std::string stamp = RandomBytes(12);
  batch.PutRaw(dkeys::DirGen(tenant_id), stamp);
  if (memberships) batch.PutRaw(dkeys::MemGen(tenant_id), RandomBytes(12));
  NoteDeptChanges(batch, tenant_id);
  return stamp;
}

void NoteDeptChanges(Batch& batch, const std::string& tenant_id) {
  const std::string prefixes[] = {dkeys::DeptChildAllPrefix(tenant_id),
                                  dkeys::DeptMemberAllPrefix(tenant_id)};
  std::set<std::string> touched;
  bool all = false;
  // The department a key of either index belongs to (false: neither).
  auto dept_of = [&](std::string_view key, std::string* dept) {
    for (const auto& p : prefixes) {
      if (!absl::StartsWith(ToAbsl(key), p)) continue;
      kv::KeyReader r(key);
      if (!r.ConsumePrefix(p)) continue;
      auto d = r.Str();
      if (!d.ok()) continue;
      *dept = *d;
      return true;
    }
    return false;
  };
  // Departments whose record this write deletes (and does not put back):
  // their deptgen is deleted with them rather than rewritten, so the keys do
  // not outlive the departments. The model reads a deptgen that disappeared
  // as a change too (UpdateDeptModel), so it still re-reads their lists.
  const std::string record_prefix =
      kv::KeyBuilder(kv::TenantPrefix(tenant_id)).Str("dept").Build();
  std::set<std::string> records_deleted, records_put;
  auto record_of = [&](std::string_view key, std::set<std::string>& into) {
    if (!absl::StartsWith(ToAbsl(key), record_prefix)) return;
    kv::KeyReader r(key);
    if (!r.ConsumePrefix(record_prefix)) return;
    auto d = r.Str();
    if (d.ok() && r.done()) into.insert(*d);
  };
  for (const auto& op : batch.request().ops()) {
    std::string dept;
    if (op.has_put()) record_of(op.put().key(), records_put);
    if (op.has_delete_()) record_of(op.delete_().key(), records_deleted);
    if (op.has_put() && dept_of(op.put().key(), &dept)) {
      touched.insert(dept);
    } else if (op.has_delete_() && dept_of(op.delete_().key(), &dept)) {
      touched.insert(dept);
    } else if (op.has_delete_range()) {
      const auto& r = op.delete_range();
      // One department's keys (DeletePrefix of its members or children)?
      if (dept_of(r.start(), &dept)) {
        bool one = false;
        for (const auto& p : {dkeys::DeptChildPrefix(tenant_id, dept),
                              dkeys::DeptMemberPrefix(tenant_id, dept)}) {
          kv::KeyRange own = kv::PrefixRange(p);
          one |= own.start == r.start() && own.end == r.end();
        }
        if (one) {
          touched.insert(dept);
          continue;
        }
      }
      for (const auto& p : prefixes) {
        kv::KeyRange space = kv::PrefixRange(p);
        const bool overlaps = (r.end().empty() || space.start < r.end()) &&
                              (space.end.empty() || r.start() < space.end);
        all |= overlaps;
      }
    }
  }
  for (const auto& d : records_deleted) {
    if (records_put.contains(d)) continue;
    touched.erase(d);
    batch.Delete(dkeys::DeptGen(tenant_id, d));
  }
  for (const auto& d : touched) batch.PutRaw(dkeys::DeptGen(tenant_id, d), RandomBytes(12));
  if (all) batch.PutRaw(dkeys::DeptGenAll(tenant_id), RandomBytes(12));
}

std::string GeneratePassword() {
  static constexpr char kAlphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  constexpr size_t kSize = sizeof(kAlphabet) - 1;
  std::string out;
  while (out.size() < 16) {
    for (char b : RandomBytes(32)) {
      unsigned v = static_cast<unsigned char>(b);
      if (v >= 256 - 256 % kSize) continue;  // no modulo bias
      out.push_back(kAlphabet[v % kSize]);
      if (out.size() == 16) break;
    }
  }
  return out;
}

namespace {
template <typename M>
absl::StatusOr<Versioned<M>> ReadOr404(TenantStore& s, const std::string& key,
                                       std::string_view kind, const std::string& id) {
  ASSIGN_OR_RETURN(auto v, s.Read<M>(key));
  if (!v.found()) return NotFound(kind, id);
  return v;
}
}  // namespace

absl::StatusOr<Versioned<storage::UserRecord>> ReadUser(TenantStore& s, const std::string& t,
                                                        const std::string& id) {
  return ReadOr404<storage::UserRecord>(s, dkeys::User(t, id), "user", id);
}
absl::StatusOr<Versioned<tenant::v1::Department>> ReadDept(TenantStore& s, const std::string& t,
                                                           const std::string& id) {
  return ReadOr404<tenant::v1::Department>(s, dkeys::Dept(t, id), "department", id);
}
absl::StatusOr<Versioned<storage::GroupRecord>> ReadGroup(TenantStore& s, const std::string& t,
                                                          const std::string& id) {
  return ReadOr404<storage::GroupRecord>(s, dkeys::Group(t, id), "group", id);
}
absl::StatusOr<Versioned<storage::SharedMailboxRecord>> ReadShared(TenantStore& s,
                                                                   const std::string& t,
                                                                   const std::string& id) {
  return ReadOr404<storage::SharedMailboxRecord>(s, dkeys::Shared(t, id), "shared mailbox", id);
}

absl::StatusOr<std::string> TenantOfObject(TenantStore& s, std::string_view kind,
                                           const std::string& id) {
  if (id.empty()) return InvalidField(absl::StrCat(std::string(kind), "_id"), "EMPTY",
                                      "must not be empty");
  ASSIGN_OR_RETURN(auto t, s.GetRaw(dkeys::Object(id)));
  if (!t.has_value()) return NotFound(kind, id);
  return *t;
}

absl::StatusOr<std::vector<std::string>> IdsUnder(TenantStore& s, const std::string& prefix) {
  ASSIGN_OR_RETURN(auto entries, s.ScanAll(prefix, /*keys_only=*/true));
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const auto& e : entries) out.push_back(ComponentAfter(e.key(), prefix));
  return out;
}

namespace {
bool OnDomain(const std::string& address, const std::string& domain) {
  return absl::EndsWith(address, absl::StrCat("@", domain));
}
}  // namespace

std::string DomainUse::Describe() const {
  std::vector<std::string> parts;
  auto add = [&](int64_t n, const char* what) {
    if (n > 0) parts.push_back(absl::StrCat(n, " ", what));
  };
  add(users, "user(s)");
  add(aliases, "alias(es)");
  add(group_addresses, "group address(es)");
  add(shared_mailboxes, "shared mailbox(es)");
  std::string out = absl::StrCat(addresses(), " address(es)");
  if (!parts.empty()) absl::StrAppend(&out, " (", absl::StrJoin(parts, ", "), ")");
  if (alias_domains > 0) absl::StrAppend(&out, " and ", alias_domains, " alias domain(s)");
  return out;
}

absl::StatusOr<DomainUse> UsesOfDomain(TenantStore& s, const std::string& tid,
                                       const std::string& domain) {
  DomainUse use;
  ASSIGN_OR_RETURN(auto users, s.ScanAll(dkeys::UserPrefix(tid)));
  for (const auto& e : users) {
    storage::UserRecord r;
    if (r.ParseFromString(e.value()) && OnDomain(r.user().address(), domain)) ++use.users;
  }
  ASSIGN_OR_RETURN(auto aliases, s.ScanAll(dkeys::AliasPrefix(tid)));
  for (const auto& e : aliases) {
    tenant::v1::Alias a;
    if (a.ParseFromString(e.value()) && OnDomain(a.address(), domain)) ++use.aliases;
  }
  ASSIGN_OR_RETURN(auto groups, s.ScanAll(dkeys::GroupPrefix(tid)));
  for (const auto& e : groups) {
    storage::GroupRecord g;
    if (!g.ParseFromString(e.value())) continue;
    for (const auto& a : g.group().addresses()) use.group_addresses += OnDomain(a, domain);
  }
  ASSIGN_OR_RETURN(auto shared, s.ScanAll(dkeys::SharedPrefix(tid)));
  for (const auto& e : shared) {
    storage::SharedMailboxRecord m;
    if (m.ParseFromString(e.value()) && !m.mailbox().has_purge_after() &&
        OnDomain(m.mailbox().address(), domain))
      ++use.shared_mailboxes;
  }
  ASSIGN_OR_RETURN(auto settings, s.ScanAll(dkeys::MailSettingsPrefix(tid)));
  for (const auto& e : settings) {
    tenant::v1::DomainMailSettings m;
    if (m.ParseFromString(e.value()) && m.alias_of() == domain) ++use.alias_domains;
  }
  return use;
}

}  // namespace mailgrid::tenant
