// The directory's persistence (issue 5): keys, address canonical forms and
// the record reads every DirectoryService file shares. Same store, same
// conventions as tenant_store.h (conditional writes, Transact).
//
// KEY LAYOUT (T = TenantPrefix(tenant_id), G(x) = GlobalPrefix(x)):
//
//   G("addr") / address key                  -> AddressRecord  every address on the platform
//                                               (one key: uniqueness AND Resolve's first read)
//   G("obj") / object id                     -> tenant_id  (user, group, department, shared
//                                               mailbox: calls that name only an id)
//   G("shardload") / u64 shard               -> decimal count of mailboxes placed there
//   T / "user" / user_id                     -> UserRecord
//   T / "dept" / department_id               -> tenant.v1.Department (id, name, parent_id,
//                                               created_at; path/depth/counts computed on read)
//   T / "deptchild" / parent_id / NameKey    -> department_id  (parent "" = top level):
//                                               sibling uniqueness, children, path lookup
//   T / "deptmember" / department_id / user  -> ""  direct members
//   T / "group" / group_id                   -> GroupRecord
//   T / "memberof" / member_id / group_id    -> ""  groups naming a member directly (cycle
//                                               checks, clean-up when the member goes)
//   T / "shared" / shared_mailbox_id         -> SharedMailboxRecord
//   T / "seat" / shared_mailbox_id / user_id -> tenant.v1.Seat
//   T / "userseat" / user_id / shared_id     -> ""  seats of one user
//   T / "alias" / address key                -> tenant.v1.Alias (ListAliases)
//   T / "mailsettings" / a-label             -> tenant.v1.DomainMailSettings
//   G("pendingmbx") / tenant / user_id      -> ""  mailbox still to create at mailstored
//   G("purge") / i64 micros / tenant / id    -> ""  a DELETED user's or shared mailbox's purge time
//   T / "dirgen"                             -> random bytes, rewritten by every directory
//                                               change: the Resolve cache's validity stamp
//   T / "memgen"                             -> random bytes, rewritten (with dirgen) by every
//                                               change that writes T/deptchild or
//                                               T/deptmember: the department model's stamp
//   T / "deptgen" / department_id            -> random bytes, rewritten (in the same write) by
//                                               every write of T/deptchild/<id>/… or
//                                               T/deptmember/<id>/…: which departments the
//                                               model must re-read after memgen moved;
//                                               deleted with the department (same write)
//   T / "deptgenall"                         -> random bytes, rewritten by a range delete over
//                                               several departments' keys: reload everything
//   T / "auditpolicy"                        -> tenant.v1.AuditPolicy (absent: none, version 0)
//   T / "monitorpolicy"                      -> tenant.v1.MonitoringPolicy
//   T / "sieve" / user_id                    -> tenant.v1.SieveScript (the user record keeps
//                                               its version too: Recipient.sieve_version)
//   G("peerwork") / kind / tenant / user_id  -> ""  work at a peer still to do: "welcome"
//                                               (notice via relayd), "quota" (SetQuota at
//                                               mailstored), "sessions" (end them at
//                                               identityd); the background loop retries
//   G("peerwork") / "recovery" / tenant / user_id / event_id
//                                            -> identity.v1.NotifyRecoveryEmailChangedRequest
//                                               (a changed recovery address still to announce
//                                               at identityd: one per change, with the OLD
//                                               address, which the user record no longer has)
//
// ADDRESS KEY: NFC + full case folding of the local part, "@", the domain
// in lower-case A-labels. "Ünal@ACME.cn", its NFD spelling and
// "ünal@acme.cn" share one key, so they collide as the proto demands.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/directory.pb.h"
#include "services/tenant/tenant_storage.pb.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {

namespace dkeys {
std::string Address(std::string_view address_key);
std::string Object(std::string_view id);
std::string ShardLoad(uint32_t shard);
std::string User(std::string_view t, std::string_view user_id);
std::string UserPrefix(std::string_view t);
std::string Dept(std::string_view t, std::string_view id);
std::string DeptRecordPrefix(std::string_view t);  // every department record
std::string DeptChild(std::string_view t, std::string_view parent, std::string_view name_key);
std::string DeptChildPrefix(std::string_view t, std::string_view parent);
std::string DeptChildAllPrefix(std::string_view t);  // every department's child index
std::string DeptMember(std::string_view t, std::string_view dept, std::string_view user);
std::string DeptMemberPrefix(std::string_view t, std::string_view dept);
std::string DeptMemberAllPrefix(std::string_view t);  // every department's members
std::string Group(std::string_view t, std::string_view id);
std::string GroupPrefix(std::string_view t);
std::string MemberOf(std::string_view t, std::string_view member, std::string_view group);
std::string MemberOfPrefix(std::string_view t, std::string_view member);
std::string Shared(std::string_view t, std::string_view id);
std::string SharedPrefix(std::string_view t);
std::string Seat(std::string_view t, std::string_view shared, std::string_view user);
std::string SeatPrefix(std::string_view t, std::string_view shared);
std::string UserSeat(std::string_view t, std::string_view user, std::string_view shared);
std::string UserSeatPrefix(std::string_view t, std::string_view user);
std::string Alias(std::string_view t, std::string_view address_key);
std::string AliasPrefix(std::string_view t);
std::string MailSettings(std::string_view t, std::string_view domain);
std::string MailSettingsPrefix(std::string_view t);
std::string DirGen(std::string_view t);
std::string MemGen(std::string_view t);
std::string DeptGen(std::string_view t, std::string_view dept);
std::string DeptGenPrefix(std::string_view t);
std::string DeptGenAll(std::string_view t);
std::string AuditPolicy(std::string_view t);
std::string MonitoringPolicy(std::string_view t);
std::string Sieve(std::string_view t, std::string_view user_id);
// Work at a peer still to do for a user (kinds in directory_notices.cc).
std::string PeerWork(std::string_view kind, std::string_view t, std::string_view user_id);
std::string PeerWorkPrefix(std::string_view kind);
// One change's work (kinds whose every change counts, not only the user's latest state).
std::string PeerWorkEvent(std::string_view kind, std::string_view t, std::string_view user_id,
                          std::string_view event_id);
// Work for the background loop (global, so one scan finds it):
std::string PendingMailbox(std::string_view t, std::string_view user_id);
std::string PendingMailboxPrefix();
// A deleted user's or shared mailbox's purge (the id's prefix says which).
std::string Purge(absl::Time after, std::string_view t, std::string_view id);
std::string PurgePrefix();
}  // namespace dkeys

// The string component right after `prefix` in `key` (ids in index keys).
std::string ComponentAfter(std::string_view key, std::string_view prefix);

// An address checked and in canonical form.
struct ParsedAddress {
  std::string address;  // shown: NFC local part as typed, "@", A-label domain
  std::string key;      // compared: case-folded local part, "@", domain
  std::string local;    // NFC local part
  std::string domain;   // A-labels
};
// INVALID_ARGUMENT `field` BAD_ADDRESS (or EMPTY/BAD_UTF8) when not an address.
absl::StatusOr<ParsedAddress> ParseAddress(std::string_view input, std::string_view field);
// The key of a local part alone (for plus-addressing splits).
std::string AddressKey(std::string_view local, std::string_view domain);
// ParseAddress(input).key without libidn2/libunistring, for the plain
// ASCII addresses nearly every RCPT is (letters, digits, "._+-" before the
// "@", letters, digits, "." and "-" after, no leading/trailing dot): their
// NFC case-folded key is their lower case. False for anything else (then
// call ParseAddress). Resolve's index lookups use it: NFC + IDNA were a
// tenth of a hit's CPU.
bool AsciiAddressKey(std::string_view input, std::string* key);

// Rewrites the tenant's directory stamp in `batch`: every change that can
// alter a Resolve answer calls it (cached answers of the tenant go stale).
// Returns the new stamp (ResolveCache::Invalidate waits for it).
// `memberships`: the change may also alter the department tree's shape
// (create, move, delete), who is in a department, or a member's Recipient
// (any write of T/deptchild or T/deptmember): then T/"memgen", the stamp
// of the in-memory department model (directory_dept_model.cc), moves too.
// When in doubt, true.
std::string TouchDirectory(Batch& batch, const std::string& tenant_id, bool memberships = true);
// Rewrites T/deptgen/<d> for every department d whose T/deptchild/<d>/… or
// T/deptmember/<d>/… keys `batch` writes (T/deptgenall for a range delete
// spanning several departments); deletes T/deptgen/<d> instead when `batch`
// deletes the department's record T/dept/<d>. TouchDirectory calls it; a batch that
// writes those keys without TouchDirectory (an import's departments, its
// roll-back) must call it itself, or the department model misses the
// change. Call it after the batch's last op.
void NoteDeptChanges(Batch& batch, const std::string& tenant_id);

// A random initial password: 16 characters from an unambiguous alphabet.
std::string GeneratePassword();

// Reads: NOT_FOUND (uniform words) when absent.
absl::StatusOr<Versioned<storage::UserRecord>> ReadUser(TenantStore& s, const std::string& t,
                                                        const std::string& id);
absl::StatusOr<Versioned<tenant::v1::Department>> ReadDept(TenantStore& s, const std::string& t,
                                                           const std::string& id);
absl::StatusOr<Versioned<storage::GroupRecord>> ReadGroup(TenantStore& s, const std::string& t,
                                                          const std::string& id);
absl::StatusOr<Versioned<storage::SharedMailboxRecord>> ReadShared(TenantStore& s,
                                                                   const std::string& t,
                                                                   const std::string& id);
// The tenant owning object `id` (G("obj")); NOT_FOUND `kind` `id` when unknown.
absl::StatusOr<std::string> TenantOfObject(TenantStore& s, std::string_view kind,
                                           const std::string& id);

// What still uses a domain of tenant `tid`: addresses (of users, including
// deleted ones awaiting purge, aliases, groups, shared mailboxes) and the
// tenant's domains that are aliases of it. (RemoveDomain, SetDomainMailSettings.)
struct DomainUse {
  int64_t users = 0, aliases = 0, group_addresses = 0, shared_mailboxes = 0, alias_domains = 0;
  int64_t addresses() const { return users + aliases + group_addresses + shared_mailboxes; }
  // "3 address(es) (2 users, 1 alias)".
  std::string Describe() const;
};
absl::StatusOr<DomainUse> UsesOfDomain(TenantStore& s, const std::string& tid,
                                       const std::string& domain);

// Every id under a prefix of "" values (last key component).
absl::StatusOr<std::vector<std::string>> IdsUnder(TenantStore& s, const std::string& prefix);

}  // namespace mailgrid::tenant
