// DirectoryService.ImportUsers: a CSV of employees, all or nothing.
//
// Every row is validated first (the same checks as CreateUser, plus
// duplicates inside the file); if any row is bad, the response lists every
// bad row by line and nothing is written. Then the initial passwords go to
// identityd in one batched call and the mailboxes are created at
// mailstored, and only then is the directory written: departments named by
// path and missing are created in the same write as the users.
//
// A store write holds at most 1,000 conditions and 10,000 ops (kv.proto),
// so departments and users are committed in chunks (kDeptChunk, kChunk).
// An import of up to kChunk rows (and kDeptChunk new departments) is one
// atomic write. A larger one was validated completely before the first
// chunk, so only a store failure or a concurrent change between chunks can
// stop it part way; what was written is then removed again (RollBackImport,
// best effort, logged and audited) and the mailboxes made at mailstored are
// deleted, so the import stays all or nothing.
#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include <unistr.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "absl/synchronization/mutex.h"
#include "libs/base/strings.h"
#include "libs/kv/keys.h"
#include "services/tenant/csv.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

namespace {

constexpr size_t kMaxBytes = 16 << 20;
constexpr size_t kMaxRows = 100000;
// kv.proto limits a write to 1,000 conditions and 10,000 ops: a user costs
// 2 conditions and about 6 ops, a department 1 and 4.
constexpr size_t kChunk = 400;
constexpr size_t kDeptChunk = 400;

const std::vector<std::string> kColumns = {"address", "name",           "department",
                                           "phone",   "password",       "title",
                                           "recovery_email", "role",    "quota_mb"};

v1::ImportRowError RowError(int64_t line, const absl::Status& s) {
  v1::ImportRowError e;
  e.set_line(line);
  auto d = ErrorDetailOf(s);
  if (d.has_value()) {
    e.set_column(d->field());
    e.set_reason(d->reason());
  } else {
    e.set_reason(std::string(absl::StatusCodeToString(s.code())));
  }
  e.set_message(std::string(s.message()));
  return e;
}

v1::ImportRowError RowError(int64_t line, const std::string& column, const std::string& reason,
                            const std::string& message) {
  v1::ImportRowError e;
  e.set_line(line);
  e.set_column(column);
  e.set_reason(reason);
  e.set_message(message);
  return e;
}

// Which of `keys` exist, read with up to 16 calls in flight (an import of
// 10,000 rows would otherwise wait for 10,000 linearizable reads in turn).
absl::StatusOr<std::vector<bool>> ExistAll(TenantStore& store,
                                           const std::vector<std::string>& keys) {
  std::vector<bool> out(keys.size());
  std::vector<char> found(keys.size(), 0);
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto work = [&] {
    for (size_t i = next++; i < keys.size(); i = next++) {
      auto v = store.GetRaw(keys[i]);
      if (!v.ok()) {
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = v.status();
        return;
      }
      found[i] = v->has_value();
    }
  };
  const size_t threads = std::min<size_t>(16, keys.size() / 32 + 1);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  RETURN_IF_ERROR(first_error);
  for (size_t i = 0; i < keys.size(); ++i) out[i] = found[i] != 0;
  return out;
}

}  // namespace

grpc::Status DirectoryServiceImpl::ImportUsers(Ctx* ctx, const v1::ImportUsersRequest* req,
                                               v1::ImportUsersResponse* resp) {
  return Serve(*auth_, ctx, "ImportUsers", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeTenant(p, req->tenant_id(), {.tenant_admin = true}));
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    const std::string& csv = req->csv();
    if (csv.size() > kMaxBytes) return InvalidField("csv", "TOO_LARGE", "over 16 MiB");
    if (u8_check(reinterpret_cast<const uint8_t*>(csv.data()), csv.size()) != nullptr)
      return InvalidField("csv", "NOT_UTF8", "the file is not UTF-8");
    auto parsed = ParseCsv(csv);
    if (!parsed.ok()) return InvalidField("csv", "BAD_CSV", ToStd(parsed.status().message()));
    std::vector<CsvRow>& rows = *parsed;
    if (rows.empty()) return InvalidField("csv", "NO_HEADER", "the file is empty");
    if (rows.size() - 1 > kMaxRows)
      return InvalidField("csv", "TOO_LARGE", absl::StrCat("more than ", kMaxRows, " rows"));
    std::map<std::string, size_t> col;
    for (size_t i = 0; i < rows[0].fields.size(); ++i) {
      std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(rows[0].fields[i]));
      if (std::find(kColumns.begin(), kColumns.end(), name) == kColumns.end())
        return InvalidField("csv", "UNKNOWN_COLUMN",
                            absl::StrCat("unknown column \"", name, "\" (known: ",
                                         absl::StrJoin(kColumns, ", "), ")"));
      col[name] = i;
    }
    for (const char* required : {"address", "name"}) {
      if (!col.count(required))
        return InvalidField("csv", "MISSING_COLUMN",
                            absl::StrCat("the header has no \"", required, "\" column"));
    }
    resp->set_rows(static_cast<int64_t>(rows.size() - 1));

    // Departments by path: existing ones resolved, missing ones planned.
    // The tenant's whole child index is read once (a scan, not a read per
    // path component: a 6-level tree has thousands).
    std::map<std::pair<std::string, std::string>, std::string> children;  // (parent, NameKey)
    {
      const std::string all = dkeys::DeptChildAllPrefix(tid);
      ASSIGN_OR_RETURN(auto entries, store_->ScanAll(all));
      for (const auto& e : entries) {
        kv::KeyReader r(e.key());
        r.ConsumePrefix(all);
        auto parent = r.Str();
        auto name = r.Str();
        if (parent.ok() && name.ok()) children[{*parent, *name}] = e.value();
      }
    }
    std::map<std::string, std::string> dept_ids;  // NameKey path -> id
    std::vector<v1::Department> new_depts;
    auto dept_of = [&](const std::string& path, int64_t line) -> absl::StatusOr<std::string> {
      std::string parent, key;
      for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipWhitespace())) {
        auto name = ValidateName(ToStd(part), "department", 100);
        if (!name.ok()) return name.status();
        key = absl::StrCat(key, "/", NameKey(*name));
        auto it = dept_ids.find(key);
        if (it == dept_ids.end()) {
          std::string id;
          auto existing = children.find({parent, NameKey(*name)});
          if (existing != children.end()) {
            id = existing->second;
          } else {
            v1::Department d;
            d.set_department_id(NewId("d-"));
            d.set_tenant_id(tid);
            d.set_name(*name);
            d.set_parent_id(parent);
            *d.mutable_created_at() = ToProto(absl::Now());
            id = d.department_id();
            new_depts.push_back(d);
          }
          it = dept_ids.emplace(key, id).first;
        }
        parent = it->second;
      }
      (void)line;
      return parent;
    };

    std::vector<NewUser> users;
    std::vector<int64_t> lines;
    std::map<std::string, int64_t> seen;  // address key -> first line
    DomainChecks domain_checks;
    for (size_t r = 1; r < rows.size(); ++r) {
      const CsvRow& row = rows[r];
      if (row.fields.size() != rows[0].fields.size()) {
        *resp->add_errors() = RowError(row.line, "", "BAD_ROW",
                                       absl::StrCat(row.fields.size(), " fields, the header has ",
                                                    rows[0].fields.size()));
        continue;
      }
      auto get = [&](const char* name) -> std::string {
        auto it = col.find(name);
        return it == col.end() ? "" : std::string(absl::StripAsciiWhitespace(row.fields[it->second]));
      };
      UserInput in;
      in.address = get("address");
      in.display_name = get("name");
      in.phone = get("phone");
      // A password is taken as typed (spaces may be part of it).
      if (auto pw = col.find("password"); pw != col.end()) in.password = row.fields[pw->second];
      in.title = get("title");
      in.recovery_email = get("recovery_email");
      std::string role = absl::AsciiStrToLower(get("role"));
      if (role == "tenant_admin") {
        in.roles.push_back(common::v1::ROLE_TENANT_ADMIN);
      } else if (role == "auditor") {
        in.roles.push_back(common::v1::ROLE_AUDITOR);
      } else if (!role.empty() && role != "user") {
        *resp->add_errors() = RowError(row.line, "role", "UNKNOWN_ROLE",
                                       "role: user, tenant_admin or auditor");
        continue;
      }
      std::string quota = get("quota_mb");
      if (!quota.empty()) {
        int64_t mb = 0;
        if (!absl::SimpleAtoi(quota, &mb) || mb <= 0 || mb > (int64_t{1} << 30)) {
          *resp->add_errors() = RowError(row.line, "quota_mb", "NOT_A_NUMBER",
                                         "quota_mb: a positive whole number of MiB");
          continue;
        }
        in.has_quota = true;
        in.quota.mutable_bytes()->set_value(mb << 20);
        in.quota.mutable_messages()->set_unlimited(true);
      }
      // Taken addresses are looked up below, all rows at once.
      auto nu = ValidateNewUser(t, in, FieldNames::Csv(), /*check_taken=*/false, &domain_checks);
      if (!nu.ok()) {
        *resp->add_errors() = RowError(row.line, nu.status());
        continue;
      }
      const std::string key = KeyOfAddress(nu->record.user().address());
      auto [it, fresh] = seen.emplace(key, row.line);
      if (!fresh) {
        *resp->add_errors() = RowError(
            row.line, "address", "DUPLICATE_IN_FILE",
            absl::StrCat("address ", nu->record.user().address(), " is on line ", it->second,
                         " already (compared ignoring case and Unicode normalisation)"));
        continue;
      }
      std::string path = get("department");
      if (!path.empty()) {
        auto d = dept_of(path, row.line);
        if (!d.ok()) {
          *resp->add_errors() = RowError(row.line, d.status());
          continue;
        }
        if (!d->empty()) nu->record.mutable_user()->add_department_ids(*d);
      }
      users.push_back(std::move(*nu));
      lines.push_back(row.line);
    }
    // Addresses already in use, every row's at once (parallel point reads).
    std::vector<std::string> address_keys;
    for (const auto& u : users)
      address_keys.push_back(dkeys::Address(KeyOfAddress(u.record.user().address())));
    ASSIGN_OR_RETURN(std::vector<bool> taken, ExistAll(*store_, address_keys));
    for (size_t i = 0; i < users.size(); ++i) {
      if (taken[i])
        *resp->add_errors() =
            RowError(lines[i], AddressTaken("address", users[i].record.user().address()));
    }
    if (resp->errors_size() > 0) {
      std::stable_sort(resp->mutable_errors()->begin(), resp->mutable_errors()->end(),
                       [](const v1::ImportRowError& a, const v1::ImportRowError& b) {
                         return a.line() < b.line();
                       });
      return absl::OkStatus();  // nothing created
    }
    RETURN_IF_ERROR(MailboxLimit(t, static_cast<int64_t>(users.size()), nullptr));
    if (req->dry_run() || users.empty()) return absl::OkStatus();

    std::vector<std::pair<uint64_t, int64_t>> loads;
    ASSIGN_OR_RETURN(auto shards, PickShards(users.size(), &loads));
    for (size_t i = 0; i < users.size(); ++i) users[i].record.mutable_user()->set_shard(shards[i]);
    absl::Status provisioned = ProvisionAtPeers(users);
    if (absl::IsInvalidArgument(provisioned)) {
      // identityd refused passwords ("entries[i].password"): report the row.
      auto d = ErrorDetailOf(provisioned);
      std::string f = d.has_value() ? d->field() : "";
      size_t lb = f.find('['), rb = f.find(']');
      size_t i = 0;
      if (lb != std::string::npos && rb != std::string::npos && rb > lb &&
          absl::SimpleAtoi(f.substr(lb + 1, rb - lb - 1), &i) && i < users.size()) {
        *resp->add_errors() =
            RowError(lines[i], "password", d->reason(), std::string(provisioned.message()));
        return absl::OkStatus();
      }
      return provisioned;
    }
    RETURN_IF_ERROR(provisioned);

    // Departments first (a user's department must exist), then the users,
    // each in writes within the store's per-write limits.
    size_t depts_done = 0, users_done = 0;
    absl::Status s;
    for (size_t start = 0; s.ok() && start < new_depts.size(); start += kDeptChunk) {
      size_t end = std::min(new_depts.size(), start + kDeptChunk);
      s = store_->Transact([&]() -> absl::StatusOr<Batch> {
        Batch batch;
        for (size_t i = start; i < end; ++i) {
          const v1::Department& d = new_depts[i];
          const std::string child = dkeys::DeptChild(tid, d.parent_id(), NameKey(d.name()));
          batch.ExpectAbsent(child)
              .PutRaw(child, d.department_id())
              .Put(dkeys::Dept(tid, d.department_id()), d)
              .PutRaw(dkeys::Object(d.department_id()), tid);
          AddAudit(batch, tid, p, "department.create", "department", d.department_id(),
                   absl::StrCat("department \"", d.name(), "\" created by an import"), "",
                   absl::Now());
        }
        NoteDeptChanges(batch, tid);  // the users' batch moves memgen
        return batch;
      });
      if (s.ok()) depts_done = end;
    }
    for (size_t start = 0; s.ok() && start < users.size(); start += kChunk) {
      size_t end = std::min(users.size(), start + kChunk);
      s = store_->Transact([&]() -> absl::StatusOr<Batch> {
        Batch batch;
        RETURN_IF_ERROR(MailboxLimit(t, static_cast<int64_t>(end - start), &batch));
        std::vector<uint32_t> placed;
        for (size_t i = start; i < end; ++i) {
          const v1::User& u = users[i].record.user();
          placed.push_back(u.shard());
          PutNewUser(batch, users[i].record);
          // Sent by the background loop (a big import is not held up by relayd).
          if (!req->skip_welcome_mail()) QueueWelcome(batch, u);
          AddAudit(batch, tid, p, "user.create", "user", u.user_id(),
                   absl::StrCat("user ", u.address(), " created by an import (line ", lines[i],
                                ")"),
                   "", absl::Now());
        }
        RETURN_IF_ERROR(CountPlacements(placed, &batch, +1));
        cache_.Invalidate(tid, TouchDirectory(batch, tid));
        return batch;
      });
      if (s.ok()) users_done = end;
    }
    if (!s.ok()) {
      // Undo what went in, so the import stays all or nothing.
      log::Warn("import failed part way; rolling back",
                {{"tenant", tid}, {"users", users_done}, {"departments", depts_done}, {"status", s}});
      RollBackImport(p, t, new_depts, depts_done, users, users_done);
      UnprovisionMailboxes(users);
      if (absl::IsAborted(s) || absl::IsAlreadyExists(s))
        return absl::AbortedError(
            "the directory changed during the import (an address or department was created "
            "meanwhile); nothing was created, run it again");
      return s;
    }
    // Paths of the new departments from memory (parents come first in
    // new_depts); only an existing parent of a new subtree is read, once.
    // (DeptView per department walked up the tree with a linearizable read
    // per ancestor: most of a 6-level import's time.)
    std::map<std::string, std::pair<std::string, int>> paths;  // id -> (path, depth)
    for (const auto& d : new_depts) {
      v1::Department view = d;
      if (d.parent_id().empty()) {
        paths[d.department_id()] = {d.name(), 0};
      } else {
        auto parent = paths.find(d.parent_id());
        if (parent == paths.end()) {
          int depth = 0;
          std::string path;
          auto pd = ReadDept(*store_, tid, d.parent_id());
          if (pd.ok()) {
            auto p = DeptPath(tid, pd->value, &depth);
            if (p.ok()) path = *p;
          }
          parent = paths.emplace(d.parent_id(), std::make_pair(path, depth)).first;
        }
        paths[d.department_id()] = {absl::StrCat(parent->second.first, "/", d.name()),
                                    parent->second.second + 1};
      }
      view.set_path(paths[d.department_id()].first);
      view.set_depth(paths[d.department_id()].second);
      *resp->add_departments_created() = std::move(view);
    }
    for (size_t i = 0; i < users.size(); ++i) {
      auto* c = resp->add_created();
      c->set_line(lines[i]);
      *c->mutable_user() = users[i].record.user();
      c->set_initial_password(users[i].password);
    }
    log::Info("users imported", {{"tenant", tid}, {"users", users.size()},
                                 {"departments", new_depts.size()}});
    return absl::OkStatus();
  });
}

void DirectoryServiceImpl::RollBackImport(const Principal& p, const TenantCtx& t,
                                          const std::vector<v1::Department>& depts,
                                          size_t depts_done, const std::vector<NewUser>& users,
                                          size_t users_done) {
  const std::string& tid = t.tenant_id;
  for (size_t start = 0; start < users_done; start += kChunk) {
    size_t end = std::min(users_done, start + kChunk);
    absl::Status s = store_->Transact([&]() -> absl::StatusOr<Batch> {
      Batch batch;
      std::vector<uint32_t> placed;
      for (size_t i = start; i < end; ++i) {
        const v1::User& u = users[i].record.user();
        placed.push_back(u.shard());
        batch.Delete(dkeys::User(tid, u.user_id()))
            .Delete(dkeys::Object(u.user_id()))
            .Delete(dkeys::Address(KeyOfAddress(u.address())))
            .Delete(dkeys::PendingMailbox(tid, u.user_id()))
            .Delete(dkeys::PeerWork("welcome", tid, u.user_id()));
        for (const auto& d : u.department_ids()) batch.Delete(dkeys::DeptMember(tid, d, u.user_id()));
      }
      RETURN_IF_ERROR(MailboxLimit(t, -static_cast<int64_t>(end - start), &batch));
      RETURN_IF_ERROR(CountPlacements(placed, &batch, -1));
      NoteDeptChanges(batch, tid);  // the closing Changed() moves memgen
      return batch;
    });
    if (!s.ok()) log::Error("import roll-back failed", {{"tenant", tid}, {"status", s}});
  }
  for (size_t start = 0; start < depts_done; start += kDeptChunk) {
    size_t end = std::min(depts_done, start + kDeptChunk);
    Batch batch;
    for (size_t i = start; i < end; ++i) {
      const v1::Department& d = depts[i];
      batch.Delete(dkeys::Dept(tid, d.department_id()))
          .Delete(dkeys::Object(d.department_id()))
          .Delete(dkeys::DeptChild(tid, d.parent_id(), NameKey(d.name())));
    }
    NoteDeptChanges(batch, tid);
    auto s = store_->Commit(std::move(batch));
    if (!s.ok()) log::Error("import roll-back failed", {{"tenant", tid}, {"status", s.status()}});
  }
  Batch batch;
  Changed(batch, tid, p, "user.import.rollback", "tenant", tid,
          absl::StrCat("an import failed part way; ", users_done, " user(s) and ", depts_done,
                       " department(s) written were removed again"));
  (void)store_->Commit(std::move(batch));
}

}  // namespace mailgrid::tenant
