#include "services/mailstore/mailbox_service.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/rpc/status.h"
#include "services/mailstore/errors.h"

namespace mailgrid::mailstore {

// ---------------------------------------------------------------- WatchHub

std::shared_ptr<WatchHub::Feed> WatchHub::FeedOf(const std::string& mailbox) {
  absl::MutexLock lock(&mu_);
  auto& f = feeds_[mailbox];
  if (f == nullptr) f = std::make_shared<Feed>();
  return f;
}

void WatchHub::Notify(const std::string& mailbox) {
  std::shared_ptr<Feed> f = FeedOf(mailbox);
  absl::MutexLock lock(&f->mu);
  f->gen.fetch_add(1);
  f->moved.SignalAll();
}

uint64_t WatchHub::Generation(const std::string& mailbox) { return FeedOf(mailbox)->gen.load(); }

void WatchHub::Wait(const std::string& mailbox, uint64_t seen, absl::Duration timeout) {
  std::shared_ptr<Feed> f = FeedOf(mailbox);
  absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&f->mu);
  while (f->gen.load() == seen) {
    if (f->moved.WaitWithDeadline(&f->mu, deadline)) return;  // timed out
  }
}

absl::StatusOr<WatchHub::Events> WatchHub::Changes(const std::string& mailbox, uint64_t cursor,
                                                   uint64_t gen, absl::Time not_before,
                                                   const Fetch& fetch, uint64_t* current) {
  std::shared_ptr<Feed> f = FeedOf(mailbox);
  absl::MutexLock lock(&f->mu);
  for (;;) {
    auto it = f->reads.find(cursor);
    if (it == f->reads.end()) break;
    Read& r = it->second;
    if (r.reading) {
      f->done.Wait(&f->mu);  // someone reads this cursor: its answer may do
      continue;
    }
    if (r.gen < gen || r.at < not_before) break;  // older than the caller needs
    *current = r.current;
    if (!r.status.ok()) return r.status;
    return r.events;
  }
  // Read it ourselves (others asking meanwhile wait for this read).
  Read& r = f->reads[cursor];
  r = Read();
  r.gen = f->gen.load();  // every change notified so far is in the read
  r.at = absl::Now();
  f->mu.Unlock();
  uint64_t cur = 0;
  reads_.fetch_add(1);
  absl::StatusOr<std::vector<v1::WatchEvent>> got = fetch(&cur);
  f->mu.Lock();
  Read& done = f->reads[cursor];  // still ours: a reading entry is never replaced
  done.reading = false;
  done.current = cur;
  done.status = got.status();
  if (got.ok()) done.events = std::make_shared<const std::vector<v1::WatchEvent>>(std::move(*got));
  Events events = done.events;
  absl::Status status = done.status;
  // Keep the last few cursors only (the oldest finished reads go first).
  for (auto it = f->reads.begin(); f->reads.size() > 8 && it != f->reads.end();)
    it = it->second.reading ? std::next(it) : f->reads.erase(it);
  f->done.SignalAll();
  *current = cur;
  if (!status.ok()) return status;
  return events;
}

// ---------------------------------------------------------------- plumbing

grpc::Status MailboxServiceImpl::NotServing(Ctx* ctx, const std::string& leader) {
  ctx->AddTrailingMetadata("mailgrid-not-leader", "1");
  if (!leader.empty()) ctx->AddTrailingMetadata("mailgrid-leader", leader);
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      leader.empty() ? "no shard leader known; retry" : "not the shard leader");
}

grpc::Status MailboxServiceImpl::Handle(Ctx* ctx,
                                        const std::function<absl::Status(const Principal&)>& fn) {
  std::string leader;
  if (draining_ || !options_.serving(&leader)) return NotServing(ctx, leader);
  auto p = authz_->Authenticate(*ctx);
  if (!p.ok()) return rpc::ToGrpc(p.status());
  absl::Status s = fn(*p);
  if (s.code() == absl::StatusCode::kUnavailable) {
    // Leadership may have moved during the call: hint the new leader (the
    // call may have been applied: retry only with an idempotency key).
    std::string now;
    if (!options_.serving(&now) && !now.empty()) ctx->AddTrailingMetadata("mailgrid-leader", now);
  }
  return rpc::ToGrpc(s);
}

#define MAILBOX_CALL(Name, Req, Resp, access)                                         \
  grpc::Status MailboxServiceImpl::Name(Ctx* ctx, const v1::Req* r, v1::Resp* out) { \
    return Handle(ctx, [&](const Principal& p) -> absl::Status {                      \
      RETURN_IF_ERROR(authz_->CheckMailbox(p, r->mailbox_id(), access));              \
      ASSIGN_OR_RETURN(*out, store_->Name(*r));                                       \
      return absl::OkStatus();                                                        \
    });                                                                               \
  }

MAILBOX_CALL(ListFolders, ListFoldersRequest, ListFoldersResponse, Access::kUser)
MAILBOX_CALL(CreateFolder, CreateFolderRequest, Folder, Access::kUser)
MAILBOX_CALL(RenameFolder, RenameFolderRequest, Folder, Access::kUser)
MAILBOX_CALL(DeleteFolder, DeleteFolderRequest, DeleteFolderResponse, Access::kUser)
MAILBOX_CALL(FolderStatus, FolderStatusRequest, FolderStatusResponse, Access::kUser)
MAILBOX_CALL(SelectFolder, SelectFolderRequest, SelectFolderResponse, Access::kUser)
MAILBOX_CALL(Append, AppendRequest, AppendResponse, Access::kUser)
MAILBOX_CALL(StoreFlags, StoreFlagsRequest, StoreFlagsResponse, Access::kUser)
MAILBOX_CALL(Copy, CopyRequest, CopyResponse, Access::kUser)
MAILBOX_CALL(Move, MoveRequest, MoveResponse, Access::kUser)
MAILBOX_CALL(Expunge, ExpungeRequest, ExpungeResponse, Access::kUser)
MAILBOX_CALL(ChangesSince, ChangesSinceRequest, ChangesSinceResponse, Access::kUser)
MAILBOX_CALL(Search, SearchRequest, SearchResponse, Access::kUser)
#undef MAILBOX_CALL

grpc::Status MailboxServiceImpl::CreateMailbox(Ctx* ctx, const v1::CreateMailboxRequest* r,
                                               v1::MailboxInfo* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckService(p));
    ASSIGN_OR_RETURN(*out, store_->CreateMailbox(*r));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::DeleteMailbox(Ctx* ctx, const v1::DeleteMailboxRequest* r,
                                               v1::DeleteMailboxResponse* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckService(p));
    ASSIGN_OR_RETURN(*out, store_->DeleteMailbox(r->mailbox_id()));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::SubscribeFolder(Ctx* ctx, const v1::SubscribeFolderRequest* r,
                                                 v1::SubscribeFolderResponse*) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckMailbox(p, r->mailbox_id(), Access::kUser));
    return store_->SubscribeFolder(*r);
  });
}

grpc::Status MailboxServiceImpl::AppendStream(Ctx* ctx,
                                              grpc::ServerReader<v1::AppendStreamRequest>* reader,
                                              v1::AppendResponse* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    v1::AppendStreamRequest part;
    if (!reader->Read(&part) || !part.has_metadata())
      return InvalidField("metadata", "EMPTY", "the first message must be the metadata");
    const v1::AppendMetadata& md = part.metadata();
    RETURN_IF_ERROR(authz_->CheckMailbox(p, md.mailbox_id(), Access::kUser));
    uint64_t limit = store_->options().limits.max_message_bytes;
    if (md.size() > limit)
      return InvalidField("message", "TOO_LARGE", absl::StrCat("the limit is ", limit, " bytes"));
    v1::AppendRequest r;
    r.set_mailbox_id(md.mailbox_id());
    *r.mutable_folder() = md.folder();
    *r.mutable_flags() = md.flags();
    if (md.has_internal_date()) *r.mutable_internal_date() = md.internal_date();
    r.set_idempotency_key(md.idempotency_key());
    while (reader->Read(&part)) {
      if (!part.has_chunk()) return InvalidField("chunk", "EMPTY", "metadata sent twice");
      if (r.message().size() + part.chunk().size() > limit)
        return InvalidField("message", "TOO_LARGE", absl::StrCat("the limit is ", limit, " bytes"));
      r.mutable_message()->append(part.chunk());
    }
    ASSIGN_OR_RETURN(*out, store_->Append(r));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::DeliverBatch(Ctx* ctx, const v1::DeliverBatchRequest* r,
                                              v1::DeliverBatchResponse* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckService(p));
    ASSIGN_OR_RETURN(*out, store_->DeliverBatch(*r));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::Fetch(Ctx* ctx, const v1::FetchRequest* r,
                                       grpc::ServerWriter<v1::FetchResponse>* writer) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckMailbox(p, r->mailbox_id(), Access::kUser));
    return store_->Fetch(*r, [&](v1::FetchResponse&& m) {
      return !ctx->IsCancelled() && writer->Write(m);
    });
  });
}

grpc::Status MailboxServiceImpl::ExportMbox(Ctx* ctx, const v1::ExportMboxRequest* r,
                                            grpc::ServerWriter<v1::ExportMboxResponse>* writer) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckMailbox(p, r->mailbox_id(), Access::kUserOrAdmin));
    return store_->ExportMbox(*r, [&](const v1::ExportMboxResponse& c) {
      return !ctx->IsCancelled() && writer->Write(c);
    });
  });
}

grpc::Status MailboxServiceImpl::GetQuota(Ctx* ctx, const v1::GetQuotaRequest* r, v1::Quota* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    if (r->scope_case() == v1::GetQuotaRequest::kTenantId) {
      RETURN_IF_ERROR(authz_->CheckTenant(p, r->tenant_id(), true));
    } else {
      RETURN_IF_ERROR(authz_->CheckMailbox(p, r->mailbox_id(), Access::kUserOrAdmin));
    }
    ASSIGN_OR_RETURN(*out, store_->GetQuota(*r));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::SetQuota(Ctx* ctx, const v1::SetQuotaRequest* r, v1::Quota* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckService(p));
    ASSIGN_OR_RETURN(*out, store_->SetQuota(*r));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::StartArchive(Ctx* ctx, const v1::StartArchiveRequest* r,
                                              v1::ArchiveJob* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckMailbox(p, r->mailbox_id(), Access::kUser));
    ASSIGN_OR_RETURN(*out, store_->StartArchive(*r, p.service ? "" : p.subject));
    return absl::OkStatus();
  });
}

namespace {
// The job's starter (or a service) may see it; others get NOT_FOUND.
absl::StatusOr<storage::JobRecord> JobFor(MailStore* store, const Principal& p,
                                          const std::string& id) {
  ASSIGN_OR_RETURN(storage::JobRecord job, store->GetJob(id));
  if (p.service) return job;
  if (job.tenant_id() != p.tenant_id || job.owner_subject() != p.subject) return NotFound("job", id);
  return job;
}
}  // namespace

grpc::Status MailboxServiceImpl::GetArchiveJob(Ctx* ctx, const v1::GetArchiveJobRequest* r,
                                               v1::ArchiveJob* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(storage::JobRecord job, JobFor(store_, p, r->job_id()));
    *out = job.job();
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::CancelArchiveJob(Ctx* ctx, const v1::CancelArchiveJobRequest* r,
                                                  v1::ArchiveJob* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(JobFor(store_, p, r->job_id()).status());
    ASSIGN_OR_RETURN(*out, store_->CancelArchiveJob(r->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::SetRetentionRules(Ctx* ctx, const v1::SetRetentionRulesRequest* r,
                                                   v1::RetentionRules* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckTenant(p, r->tenant_id(), true));
    ASSIGN_OR_RETURN(*out, store_->SetRetentionRules(*r));
    return absl::OkStatus();
  });
}

grpc::Status MailboxServiceImpl::ListRetentionRules(Ctx* ctx, const v1::ListRetentionRulesRequest* r,
                                                    v1::RetentionRules* out) {
  return Handle(ctx, [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(authz_->CheckTenant(p, r->tenant_id(), false));
    ASSIGN_OR_RETURN(*out, store_->ListRetentionRules(r->tenant_id()));
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------- Watch

grpc::Status MailboxServiceImpl::Watch(Ctx* ctx, const v1::WatchRequest* r,
                                       grpc::ServerWriter<v1::WatchEvent>* writer) {
  std::string leader;
  if (draining_ || !options_.serving(&leader)) return NotServing(ctx, leader);
  auto p = authz_->Authenticate(*ctx);
  if (!p.ok()) return rpc::ToGrpc(p.status());
  if (absl::Status s = authz_->CheckMailbox(*p, r->mailbox_id(), Access::kUser); !s.ok())
    return rpc::ToGrpc(s);
  uint64_t cursor = 0, current = 0;
  bool resume = !r->after_cursor().empty();
  if (resume && !absl::SimpleAtoi(r->after_cursor(), &cursor))
    return rpc::ToGrpc(InvalidField("after_cursor", "BAD_CURSOR", "not a cursor of this feed"));
  {
    auto first = store_->ChangesAfter(r->mailbox_id(), resume ? cursor : 0, 0, &current);
    if (!resume) cursor = current;
    if (!first.ok() && resume) return rpc::ToGrpc(first.status());
  }
  v1::WatchEvent ready;
  ready.set_kind(v1::WATCH_EVENT_KIND_READY);
  ready.set_cursor(absl::StrCat(cursor));
  if (!writer->Write(ready)) return grpc::Status::OK;
  absl::Time last_sent = absl::Now();
  auto wanted = [&](const v1::WatchEvent& e) {
    if (r->folder_ids().empty() || e.folder_id().empty()) return true;
    for (const auto& f : r->folder_ids())
      if (f == e.folder_id()) return true;
    return false;
  };
  // The feed is read when the mailbox's generation moved (a commit here
  // notified the hub) or, as a safety net, every `kPoll`; otherwise the loop
  // only checks for cancellation and leadership every 500 ms. The streams
  // of one mailbox share each read (WatchHub::Changes).
  constexpr absl::Duration kPoll = absl::Seconds(5);
  uint64_t read_gen = 0;
  absl::Time last_read = absl::InfinitePast();
  bool more = false;  // the last read found changes: read again at once
  for (;;) {
    if (ctx->IsCancelled()) return grpc::Status::OK;
    if (draining_ || !options_.serving(&leader)) return NotServing(ctx, leader);
    uint64_t gen = hub_->Generation(r->mailbox_id());
    if (more || gen != read_gen || absl::Now() - last_read >= kPoll) {
      // A generation-driven read may share any read since the generation;
      // the safety-net poll wants one from the last second.
      absl::Time not_before =
          (more || gen != read_gen) ? absl::InfinitePast() : absl::Now() - absl::Seconds(1);
      read_gen = gen;
      last_read = absl::Now();
      auto events = hub_->Changes(
          r->mailbox_id(), cursor, gen, not_before,
          [&](uint64_t* cur) { return store_->ChangesAfter(r->mailbox_id(), cursor, 500, cur); },
          &current);
      if (!events.ok()) {
        if (events.status().code() == absl::StatusCode::kUnavailable) {
          (void)options_.serving(&leader);
          return NotServing(ctx, leader);
        }
        return rpc::ToGrpc(events.status());
      }
      more = !(*events)->empty();
      for (const auto& e : **events) {
        cursor = e.modseq();
        if (!wanted(e)) continue;
        if (!writer->Write(e)) return grpc::Status::OK;
        last_sent = absl::Now();
      }
      if (more) continue;
    }
    if (absl::Now() - last_sent >= options_.heartbeat) {
      v1::WatchEvent hb;
      hb.set_kind(v1::WATCH_EVENT_KIND_HEARTBEAT);
      hb.set_cursor(absl::StrCat(cursor));
      if (!writer->Write(hb)) return grpc::Status::OK;
      last_sent = absl::Now();
    }
    hub_->Wait(r->mailbox_id(), gen, absl::Milliseconds(500));
  }
}

}  // namespace mailgrid::mailstore
