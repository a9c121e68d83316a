// DirectoryService (directory.proto): the company inside a tenant. One
// class, its methods split by topic:
//   directory_users.cc        users, their mailboxes and initial passwords, GetPrincipal
//   directory_import.cc       ImportUsers (CSV, all or nothing)
//   directory_departments.cc  the department tree
//   directory_groups.cc       groups, members, posting policy
//   directory_addresses.cc    aliases, domain mail settings, shared mailboxes and seats,
//                             the admin audit log
//   directory_resolve.cc      Resolve, CanSendAs, group expansion, the Resolve cache
//   directory_resolve_stream.cc  ResolveStream (Resolve over one bidirectional stream)
//
// Threads: gRPC's sync server threads (Resolve: its callback threads); the
// only state beyond the store is the Resolve index (resolve_cache.h, its
// own mutex) and its two threads (directory_resolve_index.cc). Concurrency between
// writers (and between replicas) is settled by conditional writes, as in
// the rest of tenantd; each write also rewrites the tenant's directory
// stamp so cached Resolve answers of that tenant go stale.
//
// Peers: CreateUser/ImportUsers call identityd and mailstored BEFORE the
// directory write, and the user record is the last write: if a peer fails,
// nothing is written (UNAVAILABLE); if the write then loses a race
// (address taken meanwhile), the fresh mailbox is deleted again
// (best effort; an orphan credential keyed by an unused user id is inert).
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "services/tenant/authz.h"
#include "services/tenant/config.h"
#include "services/tenant/directory_store.h"
#include "services/tenant/directory_users.h"
#include "services/tenant/peers.h"
#include "services/tenant/resolve_cache.h"
#include "services/tenant/resolve_freshness.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {

// Resolve, ResolveMany and ResolveStream are callback (reactor) methods:
// answered on gRPC's own threads from the in-memory index, without the sync
// server's thread hand-off.
class DirectoryServiceImpl final
    : public tenant::v1::DirectoryService::WithCallbackMethod_Resolve<
          tenant::v1::DirectoryService::WithCallbackMethod_ResolveMany<
              tenant::v1::DirectoryService::WithCallbackMethod_ResolveStream<
                  tenant::v1::DirectoryService::Service>>> {
 public:
  // `resolve_reads`: where Resolve reads (the local replica, STALE; null:
  // `store`). `freshness`: how current that replica is (null: always, one
  // store).
  DirectoryServiceImpl(TenantStore* store, const Authenticator* auth, const Options* options,
                       DirectoryPeers* peers, TenantStore* resolve_reads = nullptr,
                       ReplicaFreshness* freshness = nullptr);
  ~DirectoryServiceImpl() override;

  using Ctx = grpc::ServerContext;
  // Departments.
  grpc::Status CreateDepartment(Ctx*, const v1::CreateDepartmentRequest*,
                                v1::Department*) override;
  grpc::Status GetDepartment(Ctx*, const v1::GetDepartmentRequest*, v1::Department*) override;
  grpc::Status RenameDepartment(Ctx*, const v1::RenameDepartmentRequest*,
                                v1::Department*) override;
  grpc::Status MoveDepartment(Ctx*, const v1::MoveDepartmentRequest*, v1::Department*) override;
  grpc::Status DeleteDepartment(Ctx*, const v1::DeleteDepartmentRequest*,
                                v1::DeleteDepartmentResponse*) override;
  grpc::Status ListDepartments(Ctx*, const v1::ListDepartmentsRequest*,
                               v1::ListDepartmentsResponse*) override;
  grpc::Status ResolveDepartmentPath(Ctx*, const v1::ResolveDepartmentPathRequest*,
                                     v1::Department*) override;
  grpc::Status ListDepartmentMembers(Ctx*, const v1::ListDepartmentMembersRequest*,
                                     v1::ListDepartmentMembersResponse*) override;
  // Users.
  grpc::Status CreateUser(Ctx*, const v1::CreateUserRequest*, v1::CreateUserResponse*) override;
  grpc::Status ImportUsers(Ctx*, const v1::ImportUsersRequest*, v1::ImportUsersResponse*) override;
  grpc::Status GetUser(Ctx*, const v1::GetUserRequest*, v1::User*) override;
  grpc::Status ListUsers(Ctx*, const v1::ListUsersRequest*, v1::ListUsersResponse*) override;
  grpc::Status UpdateUser(Ctx*, const v1::UpdateUserRequest*, v1::User*) override;
  grpc::Status DisableUser(Ctx*, const v1::DisableUserRequest*, v1::User*) override;
  grpc::Status EnableUser(Ctx*, const v1::EnableUserRequest*, v1::User*) override;
  grpc::Status DeleteUser(Ctx*, const v1::DeleteUserRequest*, v1::User*) override;
  grpc::Status RenameUser(Ctx*, const v1::RenameUserRequest*, v1::User*) override;
  grpc::Status GetPrincipal(Ctx*, const v1::GetPrincipalRequest*, v1::Principal*) override;
  // Aliases and domain settings.
  grpc::Status AddAlias(Ctx*, const v1::AddAliasRequest*, v1::Alias*) override;
  grpc::Status RemoveAlias(Ctx*, const v1::RemoveAliasRequest*,
                           v1::RemoveAliasResponse*) override;
  grpc::Status ListAliases(Ctx*, const v1::ListAliasesRequest*, v1::ListAliasesResponse*) override;
  grpc::Status GetDomainMailSettings(Ctx*, const v1::GetDomainMailSettingsRequest*,
                                     v1::DomainMailSettings*) override;
  grpc::Status SetDomainMailSettings(Ctx*, const v1::SetDomainMailSettingsRequest*,
                                     v1::DomainMailSettings*) override;
  // Groups.
  grpc::Status CreateGroup(Ctx*, const v1::CreateGroupRequest*, v1::Group*) override;
  grpc::Status GetGroup(Ctx*, const v1::GetGroupRequest*, v1::Group*) override;
  grpc::Status ListGroups(Ctx*, const v1::ListGroupsRequest*, v1::ListGroupsResponse*) override;
  grpc::Status UpdateGroup(Ctx*, const v1::UpdateGroupRequest*, v1::Group*) override;
  grpc::Status DeleteGroup(Ctx*, const v1::DeleteGroupRequest*,
                           v1::DeleteGroupResponse*) override;
  grpc::Status AddGroupMember(Ctx*, const v1::AddGroupMemberRequest*, v1::Group*) override;
  grpc::Status RemoveGroupMember(Ctx*, const v1::RemoveGroupMemberRequest*, v1::Group*) override;
  grpc::Status ListGroupMembers(Ctx*, const v1::ListGroupMembersRequest*,
                                v1::ListGroupMembersResponse*) override;
  grpc::Status SetGroupPolicy(Ctx*, const v1::SetGroupPolicyRequest*, v1::Group*) override;
  grpc::Status AddGroupAddress(Ctx*, const v1::AddGroupAddressRequest*, v1::Group*) override;
  grpc::Status RemoveGroupAddress(Ctx*, const v1::RemoveGroupAddressRequest*,
                                  v1::Group*) override;
  // Shared mailboxes.
  grpc::Status CreateSharedMailbox(Ctx*, const v1::CreateSharedMailboxRequest*,
                                   v1::SharedMailbox*) override;
  grpc::Status GetSharedMailbox(Ctx*, const v1::GetSharedMailboxRequest*,
                                v1::SharedMailbox*) override;
  grpc::Status ListSharedMailboxes(Ctx*, const v1::ListSharedMailboxesRequest*,
                                   v1::ListSharedMailboxesResponse*) override;
  grpc::Status DeleteSharedMailbox(Ctx*, const v1::DeleteSharedMailboxRequest*,
                                   v1::DeleteSharedMailboxResponse*) override;
  grpc::Status AssignSeat(Ctx*, const v1::AssignSeatRequest*, v1::Seat*) override;
  grpc::Status UnassignSeat(Ctx*, const v1::UnassignSeatRequest*,
                            v1::UnassignSeatResponse*) override;
  grpc::Status ListSeats(Ctx*, const v1::ListSeatsRequest*, v1::ListSeatsResponse*) override;
  // Resolution.
  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext*, const v1::ResolveRequest*,
                                    v1::ResolveResponse*) override;
  grpc::ServerUnaryReactor* ResolveMany(grpc::CallbackServerContext*,
                                        const v1::ResolveManyRequest*,
                                        v1::ResolveManyResponse*) override;
  // One reactor per stream (directory_resolve_stream.cc).
  grpc::ServerBidiReactor<v1::ResolveStreamRequest, v1::ResolveStreamResponse>* ResolveStream(
      grpc::CallbackServerContext*) override;
  grpc::Status CanSendAs(Ctx*, const v1::CanSendAsRequest*, v1::CanSendAsResponse*) override;
  // Audit log.
  grpc::Status ListAdminAuditLog(Ctx*, const v1::ListAdminAuditLogRequest*,
                                 v1::ListAdminAuditLogResponse*) override;
  grpc::Status AppendAdminAuditLog(Ctx*, const v1::AppendAdminAuditLogRequest*,
                                   v1::AdminAuditEntry*) override;
  // Mail policies and inbox rules (directory_policies.cc).
  grpc::Status GetAuditPolicy(Ctx*, const v1::GetAuditPolicyRequest*, v1::AuditPolicy*) override;
  grpc::Status SetAuditPolicy(Ctx*, const v1::SetAuditPolicyRequest*, v1::AuditPolicy*) override;
  grpc::Status GetMonitoringPolicy(Ctx*, const v1::GetMonitoringPolicyRequest*,
                                   v1::MonitoringPolicy*) override;
  grpc::Status SetMonitoringPolicy(Ctx*, const v1::SetMonitoringPolicyRequest*,
                                   v1::MonitoringPolicy*) override;
  grpc::Status GetSieveScript(Ctx*, const v1::GetSieveScriptRequest*, v1::SieveScript*) override;
  grpc::Status SetSieveScript(Ctx*, const v1::SetSieveScriptRequest*, v1::SieveScript*) override;

  // Background: creates mailboxes left pending (mailstored was not
  // configured, or came back) and purges users and shared mailboxes whose
  // grace period ended.
  absl::Status BackgroundRound(absl::Time now);
  // Deletes T/deptgen/<d> keys whose department record is gone (left by
  // deletes made before the key was deleted with its department, stop 20).
  // Each delete is conditional on the record still being absent. Returns
  // how many went. BackgroundRound runs it once per process.
  absl::StatusOr<int> SweepOrphanDeptGens();

  // The Resolve logic without gRPC (tests and the benchmark's in-process mode).
  absl::StatusOr<v1::ResolveResponse> ResolveAddress(const v1::ResolveRequest& req);

  // The Resolve index's threads (directory_resolve_index.cc): freshness
  // probes, stamp refresh, warm-up. Stop is idempotent (the destructor calls it).
  void StartResolveIndex();
  void StopResolveIndex();
  // Answers every user's primary address of tenant `tid` in advance (only
  // the users changed since the last warm-up are rebuilt); returns how many
  // users' answers the index then holds for it (public for tests).
  absl::StatusOr<size_t> WarmTenant(const std::string& tid);
  ResolveCache& resolve_cache() { return cache_; }

  // The department model (directory_dept_model.cc): a tenant's department
  // tree and every department's direct members (what T/deptchild and
  // T/deptmember hold) in memory, so a group of whole departments expands
  // without reading the store. Valid while the tenant's T/"memgen" is the
  // one read before it was loaded: changes that do not touch memberships
  // (renames, groups, aliases, shared mailboxes, domain settings) keep it.
  // After a membership change only the departments whose T/deptgen moved
  // are read again (UpdateDeptModel); the others' lists are shared with
  // the previous model.
  struct DeptModel {
    std::string memgen;
    std::string allgen;  // T/deptgenall: when it moves, everything is read again
    // department id -> its T/deptgen as read BEFORE its lists below ("" none).
    absl::flat_hash_map<std::string, std::string> gens;
    // parent id ("" top level) -> child ids, sorted by id (the store
    // path expands in the same order, so both give the same answer).
    absl::flat_hash_map<std::string, std::shared_ptr<const std::vector<std::string>>> children;
    // department id -> its direct members, in key (user id) order, each a
    // serialized v1::Recipient (the stored value: a third of a parsed
    // message's memory; parsed when expanded).
    absl::flat_hash_map<std::string, std::shared_ptr<const std::vector<std::string>>> members;
    size_t member_count = 0;
    size_t reread = 0;  // departments read again by the update that made it (tests)
  };
  // Brings the tenant's model up to the local replica's memgen (loads it the
  // first time, else re-reads only the changed departments); returns the
  // model now held (public for tests).
  absl::StatusOr<std::shared_ptr<const DeptModel>> RefreshDeptModel(const std::string& tid);

 private:
  // ---- shared helpers (directory_users.cc) ----
  struct TenantCtx {
    std::string tenant_id;
    Versioned<storage::TenantRecord> tenant;
    v1::Plan plan;  // empty plan (all unlimited) when none is set
    bool has_plan = false;
  };
  absl::Status MailboxLimit(const TenantCtx& t, int64_t adding, Batch* batch);
  // The tenant, which must be ACTIVE (FAILED_PRECONDITION WRONG_STATE).
  absl::StatusOr<TenantCtx> ActiveTenant(const std::string& tenant_id);
  // The domain of a new address must be the tenant's (DOMAIN_NOT_IN_TENANT)
  // and VERIFIED (DOMAIN_NOT_VERIFIED).
  absl::Status CheckAddressDomain(const std::string& tenant_id, const ParsedAddress& a,
                                  const std::string& field);
  // A new address: parsed, domain checked, not taken (ALREADY_EXISTS).
  absl::StatusOr<ParsedAddress> NewAddress(const std::string& tenant_id, std::string_view input,
                                           const std::string& field);
  // Authorizes a call about object `id` of `kind` ("user", "group", ...):
  // its tenant, NOT_FOUND alike for absent and foreign objects.
  absl::StatusOr<std::string> AuthorizeObject(const Principal& p, std::string_view kind,
                                              const std::string& id, const Who& who);
  // Least-loaded shard choice for `n` new mailboxes (no write).
  absl::StatusOr<std::vector<uint32_t>> PickShards(size_t n,
                                                   std::vector<std::pair<uint64_t, int64_t>>* loads);
  // Adds the shard load changes (conditional) for mailboxes placed
  // (sign +1) or purged (-1) to `batch`.
  absl::Status CountPlacements(const std::vector<uint32_t>& shards, Batch* batch, int sign);
  // RESOURCE_EXHAUSTED (plan.mailboxes, LimitDetail) when `adding` more
  // mailboxes exceed the plan; with `batch`, adds the usage update.

  // The quota of a new mailbox under the plan (INVALID_ARGUMENT "quota" ABOVE_PLAN).
  absl::StatusOr<common::v1::QuotaLimit> QuotaFor(const TenantCtx& t,
                                                  const common::v1::QuotaLimit& requested,
                                                  bool has_requested, const std::string& field);
  // Records the change in the audit log and touches the directory stamp.
  void Changed(Batch& batch, const std::string& tenant_id, const Principal& p,
               const std::string& action, const std::string& kind, const std::string& id,
               const std::string& summary, const std::string& reason = "");
  // Creates the mailboxes and initial passwords of new users at the peers
  // (skipped, marked pending, when a peer is not configured).
  struct NewUser {
    storage::UserRecord record;
    std::string password;
    bool generated = false;
  };
  // Checks a user to create and fills the record (new ids, quota, roles);
  // `check_taken`: also refuse an address already in use.
  // `domains` (optional) remembers each domain's check across the rows of an import.
  using DomainChecks = std::map<std::string, absl::Status>;
  absl::StatusOr<NewUser> ValidateNewUser(const TenantCtx& t, const UserInput& in,
                                          const FieldNames& f, bool check_taken,
                                          DomainChecks* domains = nullptr);
  // Removes what a failed import wrote (best effort, logged).
  void RollBackImport(const Principal& p, const TenantCtx& t,
                      const std::vector<v1::Department>& depts, size_t depts_done,
                      const std::vector<NewUser>& users, size_t users_done);
  enum class ReadAccess { kFull, kReduced };
  // Who may read users of `tenant_id`: NOT_FOUND (empty message) for another tenant.
  absl::StatusOr<ReadAccess> AuthorizeUserRead(const Principal& p, const std::string& tenant_id);
  absl::Status ProvisionAtPeers(std::vector<NewUser>& users);
  void UnprovisionMailboxes(const std::vector<NewUser>& users);
  // Adds the keys of a new user (record, indexes, department membership).
  void PutNewUser(Batch& batch, const storage::UserRecord& rec);
  // The user as `p` may see it (full, or the reduced directory view).
  v1::User UserView(const Principal& p, const v1::User& user) const;
  absl::StatusOr<std::string> UserIdOfAddress(const std::string& address, const std::string& field);
  absl::StatusOr<v1::User> ChangeUserState(const Principal& p, const std::string& user_id,
                                           v1::UserState to, const std::string& action,
                                           const std::string& reason, absl::Duration grace);
  // Is `user_id` the last ACTIVE/DISABLED tenant admin?
  absl::StatusOr<bool> LastAdmin(const std::string& tenant_id, const std::string& user_id);

  // ---- departments (directory_departments.cc) ----
  absl::StatusOr<v1::Department> DeptView(const std::string& tenant_id, v1::Department d,
                                          bool counts = true);
  absl::StatusOr<std::string> DeptPath(const std::string& tenant_id, const v1::Department& d,
                                       int* depth);
  // Every department id in the subtree of `dept_id` (itself first).
  absl::StatusOr<std::vector<std::string>> Subtree(const std::string& tenant_id,
                                                   const std::string& dept_id);
  absl::StatusOr<std::string> FindDeptByPath(const std::string& tenant_id,
                                             const std::string& path);

  // ---- resolution (directory_resolve.cc) ----
  struct Expansion;
  // The tenant's model brought current for `s` (its memgen) by re-reading
  // the departments changed since the held one; null when none is held yet
  // (the warm thread is asked to load it) or a read fails
  // (directory_dept_model.cc).
  std::shared_ptr<const DeptModel> CurrentDeptModel(TenantStore& s, const std::string& tid);
  // `base` null: a full load. Else `base` updated to the store's memgen.
  absl::StatusOr<std::shared_ptr<const DeptModel>> UpdateDeptModel(
      TenantStore& s, const std::string& tid, std::shared_ptr<const DeptModel> base);
  // One department's children and members, into `m`.
  absl::Status ReadDeptLists(TenantStore& s, const std::string& tid, const std::string& dept,
                             DeptModel& m);
  // Each reads through `s`: the local replica (rs_) normally, the group
  // (store_) when this replica cannot show it is fresh.
  absl::Status ExpandGroup(TenantStore& s, const std::string& t, const std::string& group_id,
                           Expansion& x);
  absl::Status ExpandMember(TenantStore& s, const std::string& t, const v1::GroupMember& m,
                            Expansion& x);
  absl::Status ExpandDept(TenantStore& s, const std::string& t, const std::string& dept_id,
                          bool direct_only, Expansion& x);
  absl::Status AddUserRecipient(TenantStore& s, const std::string& t, const std::string& user_id,
                                Expansion& x);
  absl::Status AddSharedRecipient(TenantStore& s, const std::string& t, const std::string& id,
                                  Expansion& x);
  // The tenant's ACTIVE admins' mailboxes (postmaster@ without an address).
  absl::StatusOr<std::vector<v1::Recipient>> AdminRecipients(TenantStore& s, const std::string& t);
  // The answer computed from `s`, which is complete as of `as_of`.
  absl::StatusOr<std::shared_ptr<const ResolveCache::Entry>> ResolveUncached(
      TenantStore& s, const std::string& address, absl::Time as_of);
  // The index's answer for `address` (key: its canonical key).
  // `index_only`: never read the store; nullptr when the answer is not in
  // the index (or must be re-validated first).
  absl::StatusOr<std::shared_ptr<const ResolveCache::Entry>> LookupEntry(
      const std::string& address, const std::string& key, bool index_only = false);
  // The answer to `req` from an index entry (the per-sender posting decision).
  absl::StatusOr<v1::ResolveResponse> AnswerFrom(const ResolveCache::Entry& entry,
                                                 const v1::ResolveRequest& req);
  // Resolve for a service caller from the index alone (no store read);
  // nullopt when the store is needed, which the workers then do.
  std::optional<grpc::Status> ResolveFromIndex(const grpc::CallbackServerContext& ctx,
                                               const v1::ResolveRequest& req,
                                               v1::ResolveResponse* resp);
  grpc::Status ResolveWithStore(grpc::CallbackServerContext* ctx, const v1::ResolveRequest& req,
                                v1::ResolveResponse* resp);
  // Is the caller relayd (a service token, not an onboarding token)? Only
  // then may an answer come from the index on the callback thread.
  bool IndexCaller(const grpc::CallbackServerContext& ctx) const;
  // The index's answer to one request; nullopt when the store is needed.
  std::optional<absl::StatusOr<v1::ResolveResponse>> IndexAnswer(const v1::ResolveRequest& req);
  // UNAUTHENTICATED / PERMISSION_DENIED unless `p` may call Resolve;
  // `service`: relayd (any tenant) rather than a tenant admin (own tenant).
  absl::Status MayResolve(const Principal& p, bool* service) const;
  // Resolve's answer to one request for `p` (admins see only their tenant).
  absl::StatusOr<v1::ResolveResponse> ResolveFor(const Principal& p, bool service,
                                                 const v1::ResolveRequest& req);
  grpc::Status ResolveManyWithStore(grpc::CallbackServerContext* ctx,
                                    const v1::ResolveManyRequest& req,
                                    v1::ResolveManyResponse* resp);
  class ResolveStreamReactor;
  // Resolve work that reads the store runs on the "resolve" workers, never
  // on gRPC's callback threads: there are only a few of them (one per core)
  // and they also carry this process's other callback RPCs; blocking them
  // with reads (through the leader when this replica is not fresh) stalled
  // a whole replica at 100k users. Inline when the workers are not running.
  void RunResolveWork(std::function<void()> work);
  void ResolveWorkerLoop();
  // The tenant's directory stamp and record version.
  absl::StatusOr<ResolveCache::Stamp> ReadStamp(TenantStore& s, const std::string& tid);
  void IndexLoop();
  void WarmLoop();
  // The index thread's period when no Resolve came and nothing was applied
  // for a while (directory_resolve_index.cc).
  absl::Duration IdlePeriod() const;
  absl::Duration ActivePeriod() const;
  // A Resolve arrived (keeps the index thread at its short period).
  void NoteResolve(absl::Time now);
  // Does `from_group` contain `target_group` (itself or nested)? The
  // groups read are pinned in `pin` (when given).
  absl::StatusOr<bool> Reaches(const std::string& t, const std::string& from_group,
                               const std::string& target_group, Batch* pin);
  // The final mailboxes of a group (max 0: the server default bound).
  absl::StatusOr<std::vector<v1::Recipient>> ExpandGroupRecipients(const std::string& t,
                                                                   const std::string& group_id,
                                                                   int max);

  // ---- work at peers after a change (directory_notices.cc) ----
  // The welcome notice's pending key, written with the new user.
  void QueueWelcome(Batch& batch, const v1::User& u);
  // Sends it now (relayd) and clears the key; logs "welcome pending" if not.
  void WelcomeNow(const v1::User& u);
  absl::Status SendWelcome(const v1::User& u);
  // SetQuota at mailstored; leaves a pending key when it cannot.
  void PushQuota(const storage::UserRecord& rec);
  // LogoutEverywhere at identityd; leaves a pending key when it cannot.
  void EndSessions(const v1::User& u, const std::string& reason);
  // A changed recovery address (UpdateUser): the pending record of the
  // notice at identityd, written in the change's own batch; nullopt (and
  // nothing written) when the address did not change.
  std::optional<identity::v1::NotifyRecoveryEmailChangedRequest> QueueRecoveryNotice(
      Batch& batch, const Principal& p, const std::string& old_recovery, const v1::User& u);
  // Asks identityd now and clears the record; logs "pending" if not.
  void RecoveryNoticeNow(const identity::v1::NotifyRecoveryEmailChangedRequest& r);
  absl::Status SendRecoveryNotice(const identity::v1::NotifyRecoveryEmailChangedRequest& r);
  // Retries what the keys above still name (BackgroundRound).
  absl::Status PeerWorkRound();
  absl::Status RecoveryNoticeRound();

  // ---- purge after the grace period (directory_purge.cc) ----
  // Every purge key due at `now`, oldest first. A peer that refuses leaves
  // the key for the next round; a store error ends the round.
  absl::Status PurgeDue(absl::Time now);
  absl::Status PurgeUser(const std::string& tid, const std::string& uid,
                         const std::string& purge_key);
  absl::Status PurgeSharedMailbox(const std::string& tid, const std::string& id,
                                  const std::string& purge_key);

  // ---- policies (directory_policies.cc) ----
  // FAILED_PRECONDITION PLAN_FEATURE_MISSING unless the tenant's plan has `feature`.
  absl::Status RequireFeature(const TenantCtx& t, v1::PlanFeature feature, std::string_view what);
  // Checks a policy to store and fills what the server assigns (rule ids,
  // canonical addresses); INVALID_ARGUMENT naming the field otherwise.
  absl::Status CheckAuditPolicy(const std::string& tid, v1::AuditPolicy& policy);
  absl::Status CheckMonitoringPolicy(const std::string& tid, v1::MonitoringPolicy& policy);
  // The tenant of `user_id` when `p` may read (write) its Sieve script.
  absl::StatusOr<std::string> AuthorizeSieve(const Principal& p, const std::string& user_id,
                                             bool write);

  // ---- addresses (directory_addresses.cc) ----
  // (tenant, A-label) of a domain named in a request; NOT_FOUND alike.
  absl::StatusOr<std::pair<std::string, std::string>> DomainOfRequest(const Principal& p,
                                                                      const std::string& domain,
                                                                      const Who& who);
  // FAILED_PRECONDITION IN_USE when addresses exist on `domain`.
  absl::Status DomainInUse(const std::string& tid, const std::string& domain);
  absl::StatusOr<v1::SharedMailbox> SharedView(const std::string& tid,
                                               const storage::SharedMailboxRecord& r);

  // ---- groups (directory_groups.cc) ----
  // Removes member (`kind`, `member_id`) from every group of tenant `tid`
  // that lists it, and its member-of index keys (a deleted group, a purged
  // user or shared mailbox).
  absl::Status DropFromGroups(Batch& b, const std::string& tid, v1::MemberKind kind,
                              const std::string& member_id);
  // A member to add: exists in tenant `t`; display filled.
  absl::StatusOr<v1::GroupMember> CheckMember(const std::string& t, const v1::GroupMember& in,
                                              const std::string& field);
  // (tenant, group id) of a request naming a group by id or address.
  absl::StatusOr<std::pair<std::string, std::string>> GroupOfRequest(const Principal& p,
                                                                     const std::string& group_id,
                                                                     const std::string& address,
                                                                     const Who& who);
  absl::StatusOr<v1::Group> ChangeGroup(
      const Principal& p, const std::string& group_id, const std::string& action,
      const std::function<absl::StatusOr<std::string>(const std::string& tid,
                                                      storage::GroupRecord& rec, Batch& batch)>&
          change);

  TenantStore* store_;
  TenantStore* rs_;  // Resolve's reads
  const Authenticator* auth_;
  const Options* options_;
  DirectoryPeers* peers_;
  ResolveCache cache_;
  bool deptgens_swept_ = false;  // BackgroundRound's thread only
  std::unique_ptr<ReplicaFreshness> own_freshness_;  // when none was given
  ReplicaFreshness* freshness_;
  // The index threads' state.
  absl::Mutex index_mu_;
  bool index_stop_ ABSL_GUARDED_BY(index_mu_) = false;
  absl::flat_hash_map<std::string, ResolveCache::Stamp> warmed_ ABSL_GUARDED_BY(index_mu_);
  std::set<std::string> warm_pending_ ABSL_GUARDED_BY(index_mu_);
  // Tenants whose department model an expansion found missing or stale.
  std::set<std::string> model_pending_ ABSL_GUARDED_BY(index_mu_);
  absl::Mutex model_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const DeptModel>> models_
      ABSL_GUARDED_BY(model_mu_);
  // One model update at a time (callers racing for the same change share it).
  absl::Mutex model_update_mu_;
  std::thread index_thread_, warm_thread_;
  std::atomic<int64_t> last_resolve_us_{0};  // NoteResolve
  // What the last warm-up of a tenant saw, so the next one rebuilds only
  // the users whose record changed (its store version moved).
  struct WarmedTenant {
    struct User {
      uint64_t fingerprint = 0;  // the record's store version when its answer was built
      bool built = false;
      uint32_t round = 0;        // the last warm-up that saw it
      std::string key;           // the address key its answer is held under ("" none)
    };
    absl::flat_hash_map<std::string, User> users;  // by user record key
    absl::flat_hash_map<std::string, bool> plain_domains;
    uint32_t round = 0;
    size_t held = 0;
  };
  absl::StatusOr<size_t> WarmTenantLocked(const std::string& tid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(warm_run_mu_);
  absl::Mutex warm_run_mu_;  // one warm-up at a time (the thread, or a test)
  absl::flat_hash_map<std::string, WarmedTenant> warm_state_ ABSL_GUARDED_BY(warm_run_mu_);
  // The Resolve workers.
  absl::Mutex work_mu_;
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(work_mu_);
  bool work_running_ ABSL_GUARDED_BY(work_mu_) = false;
  std::vector<std::thread> workers_;
};

// The welcome notice (RFC 5322, UTF-8 text in base64): sign-in name, the
// IMAP/POP3/SMTP host and ports, that the initial password must be changed;
// never a password. Chinese when the user's locale is zh*, else English.
std::string BuildWelcomeMessage(const v1::User& u, const std::string& login_host, absl::Time now);

// A Sieve script to store: at most 64 KiB, UTF-8, and (when the build has
// libs/sieve) compilable; INVALID_ARGUMENT "script" TOO_LARGE, NOT_UTF8,
// SYNTAX or UNSUPPORTED_EXTENSION otherwise.
absl::Status ValidateSieveScript(std::string_view script);

// One address's answer as ResolveMany and ResolveStream carry it: the
// response, or Resolve's error (code, message, ErrorDetail) in `status`.
void SetResolveResult(absl::StatusOr<v1::ResolveResponse> out, v1::ResolveResult* r);

// Plan features of `plan`, for Principal.
bool PlanHas(const v1::Plan& plan, v1::PlanFeature feature);

// The dept-member index value: what Resolve needs of a user without
// reading the user record (mailbox, shard, address, state).
v1::Recipient RecipientOf(const v1::User& user);
// The same with the record's bookkeeping (the Sieve script's version).
v1::Recipient RecipientOf(const storage::UserRecord& rec);

}  // namespace mailgrid::tenant
