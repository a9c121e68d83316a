#include "services/mailstore/mailbox_service.h"

#include <deque>
#include <thread>

#include "absl/container/flat_hash_map.h"
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
  {
    std::shared_ptr<Feed> f = FeedOf(mailbox);
    absl::MutexLock lock(&f->mu);
    f->gen.fetch_add(1);
    f->moved.SignalAll();
  }
  absl::ReaderMutexLock lock(&listener_mu_);
  if (listener_) listener_(mailbox);
}

void WatchHub::SetListener(std::function<void(const std::string&)> listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
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

grpc::Status MailboxServiceImpl::NotServing(grpc::ServerContextBase* ctx,
                                            const std::string& leader) {
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

namespace {

// A feed read returns at most this many events; a full page is followed by
// the next read as soon as the stream has written it.
constexpr size_t kPage = 500;
// A watched mailbox's feed is read at least this often even when no commit
// here was notified (entries of an earlier leader applied after we took
// over, or any writer that bypasses the commit listener).
constexpr absl::Duration kPoll = absl::Seconds(5);
// How often the readers check leadership (streams end when it is lost) ...
constexpr absl::Duration kLeaderCheck = absl::Milliseconds(250);
// ... and look for due heartbeats and polls.
constexpr absl::Duration kTick = absl::Seconds(1);

grpc::Status NotLeaderStatus(const std::string& leader) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      leader.empty() ? "no shard leader known; retry" : "not the shard leader");
}

// A Watch refused before it started (leader gate, token, mailbox, cursor).
class Refusal final : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  explicit Refusal(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

}  // namespace

// One open Watch stream: a reactor that keeps itself alive (self_) until
// gRPC calls OnDone, and is shared with WatchStreams while registered.
// State changes happen under mu_; StartWrite and Finish are called outside
// it, by the one caller that moved writing_ (or finished_) from false to
// true, so there is never more than one write in flight and nothing is
// written after Finish.
class WatchStream final : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  WatchStream(WatchStreams* owner, grpc::CallbackServerContext* ctx, const v1::WatchRequest& r,
              uint64_t cursor, uint64_t gen, bool behind)
      : owner_(owner), ctx_(ctx), mailbox_(r.mailbox_id()),
        folders_(r.folder_ids().begin(), r.folder_ids().end()), cursor_(cursor),
        read_gen_(gen), more_(behind) {
    ready_.set_kind(v1::WATCH_EVENT_KIND_READY);
    ready_.set_cursor(absl::StrCat(cursor));
  }

  const std::string& mailbox() const { return mailbox_; }

  // Registers with the owner and writes READY.
  void Start(std::shared_ptr<WatchStream> self);

  // True (with its cursor) when the stream has nothing left to write and
  // may take the next read of the feed.
  bool Idle(uint64_t* cursor) {
    absl::MutexLock lock(&mu_);
    *cursor = cursor_;
    return !ending_ && pos_ >= queue_size();
  }
  // The feed after `cursor` as read at generation `gen`; `full`: the read
  // hit the page limit (more follows).
  void Deliver(const WatchHub::Events& events, uint64_t cursor, uint64_t gen, bool full) {
    {
      absl::MutexLock lock(&mu_);
      if (ending_ || cursor != cursor_ || pos_ < queue_size()) return;
      queue_ = events;
      pos_ = 0;
      read_gen_ = gen;
      more_ = full;
    }
    Pump();
  }
  void Heartbeat(absl::Time now, absl::Duration every) {
    {
      absl::MutexLock lock(&mu_);
      if (ending_ || writing_ || pos_ < queue_size() || now - last_sent_ < every) return;
      hb_.set_kind(v1::WATCH_EVENT_KIND_HEARTBEAT);
      hb_.set_cursor(absl::StrCat(cursor_));
      writing_ = true;
      last_sent_ = now;
    }
    StartWrite(&hb_);
  }
  // Ends the stream with `status` once the write in flight (if any) is done.
  void End(const grpc::Status& status, bool not_leader = false, const std::string& leader = "") {
    {
      absl::MutexLock lock(&mu_);
      if (ending_) return;
      ending_ = true;
      status_ = status;
      not_leader_ = not_leader;
      leader_ = leader;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      in_flight_.reset();
      if (!ok && !ending_) {  // the client is gone
        ending_ = true;
        status_ = grpc::Status::OK;
      }
    }
    Pump();
  }
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  void OnDone() override;

 private:
  size_t queue_size() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_ == nullptr ? 0 : queue_->size();
  }
  bool Wanted(const v1::WatchEvent& e) const {
    if (folders_.empty() || e.folder_id().empty()) return true;
    return std::find(folders_.begin(), folders_.end(), e.folder_id()) != folders_.end();
  }
  // Starts the next write, or Finish, or asks for the next read.
  void Pump();

  WatchStreams* const owner_;
  grpc::CallbackServerContext* const ctx_;
  const std::string mailbox_;
  const std::vector<std::string> folders_;
  std::shared_ptr<WatchStream> self_;  // until OnDone
  v1::WatchEvent ready_, hb_;

  absl::Mutex mu_;
  uint64_t cursor_ ABSL_GUARDED_BY(mu_);    // MODSEQ of the last event written or skipped
  uint64_t read_gen_ ABSL_GUARDED_BY(mu_);  // hub generation of the last read
  bool more_ ABSL_GUARDED_BY(mu_);          // read again at once (full page, or behind)
  WatchHub::Events queue_ ABSL_GUARDED_BY(mu_);  // the last read, written from pos_
  size_t pos_ ABSL_GUARDED_BY(mu_) = 0;
  WatchHub::Events in_flight_ ABSL_GUARDED_BY(mu_);  // holds the event being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool not_leader_ ABSL_GUARDED_BY(mu_) = false;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sent_ ABSL_GUARDED_BY(mu_) = absl::Now();
};

// The open Watch streams by mailbox, and the threads that read the change
// feed for them. A mailbox is queued when a commit here notifies the hub,
// when one of its streams has written everything and is behind, or by the
// safety-net poll; one reader serves it at a time, reading the feed once
// per distinct cursor among its idle streams (through WatchHub::Changes,
// shared with anyone else reading that cursor).
class WatchStreams {
 public:
  WatchStreams(MailStore* store, WatchHub* hub, const ServiceOptions* options,
               const std::atomic<bool>* draining)
      : store_(store), hub_(hub), options_(options), draining_(draining) {
    for (int i = 0; i < std::max(1, options->watch_threads); ++i)
      threads_.emplace_back([this] { Run(); });
  }
  // Every stream has ended by now (the gRPC server is shut down first).
  ~WatchStreams() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      cv_.SignalAll();
    }
    for (auto& t : threads_) t.join();
  }

  WatchHub* hub() const { return hub_; }

  void Add(const std::shared_ptr<WatchStream>& s) {
    absl::MutexLock lock(&mu_);
    boxes_[s->mailbox()].streams[s.get()] = s;
    ++count_;
  }
  void Remove(WatchStream* s) {
    absl::MutexLock lock(&mu_);
    auto it = boxes_.find(s->mailbox());
    if (it == boxes_.end() || it->second.streams.erase(s) == 0) return;
    --count_;
    if (it->second.streams.empty() && !it->second.busy) boxes_.erase(it);
  }
  // Queues the mailbox's streams for a read of the feed (no-op when none).
  void Wake(const std::string& mailbox) {
    absl::MutexLock lock(&mu_);
    auto it = boxes_.find(mailbox);
    if (it != boxes_.end()) Queue(it->first, it->second);
  }
  // Ends every stream UNAVAILABLE with the leader hint (drain, lost leadership).
  void EndAll(const std::string& leader) {
    for (auto& s : Snapshot()) s->End(NotLeaderStatus(leader), true, leader);
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return count_;
  }

 private:
  struct Box {
    absl::flat_hash_map<WatchStream*, std::shared_ptr<WatchStream>> streams;
    bool queued = false;  // in pending_
    bool busy = false;    // a reader serves it now
    bool again = false;   // woken while busy: serve again after
    uint64_t read_gen = 0;
    absl::Time last_read = absl::Now();
  };

  void Queue(const std::string& mailbox, Box& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (b.busy) {
      b.again = true;
    } else if (!b.queued) {
      b.queued = true;
      pending_.push_back(mailbox);
      cv_.Signal();
    }
  }
  std::vector<std::shared_ptr<WatchStream>> Snapshot() {
    std::vector<std::shared_ptr<WatchStream>> all;
    absl::MutexLock lock(&mu_);
    all.reserve(count_);
    for (auto& [m, b] : boxes_)
      for (auto& [p, s] : b.streams) all.push_back(s);
    return all;
  }

  void Run() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      absl::Time now = absl::Now();
      if (!housekeeping_ && now >= next_check_) {
        housekeeping_ = true;
        next_check_ = now + kLeaderCheck;
        mu_.Unlock();
        Housekeep(now);
        mu_.Lock();
        housekeeping_ = false;
        continue;
      }
      if (pending_.empty()) {
        cv_.WaitWithDeadline(&mu_, next_check_);
        continue;
      }
      std::string mailbox = std::move(pending_.front());
      pending_.pop_front();
      auto it = boxes_.find(mailbox);
      if (it == boxes_.end()) continue;
      it->second.queued = false;
      it->second.busy = true;
      uint64_t read_gen = it->second.read_gen;
      mu_.Unlock();
      uint64_t gen = Serve(mailbox, read_gen);
      mu_.Lock();
      it = boxes_.find(mailbox);  // a busy box is never erased
      Box& b = it->second;
      b.busy = false;
      b.read_gen = gen;
      b.last_read = absl::Now();
      if (b.streams.empty()) {
        boxes_.erase(it);
      } else if (b.again) {
        b.again = false;
        Queue(mailbox, b);
      }
    }
  }

  // Leadership (every kLeaderCheck), heartbeats and polls (every kTick).
  void Housekeep(absl::Time now) {
    {
      absl::MutexLock lock(&mu_);
      if (count_ == 0) return;
    }
    std::string leader;
    if (draining_->load() || !options_->serving(&leader)) return EndAll(leader);
    if (now < next_tick_) return;
    next_tick_ = now + kTick;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [m, b] : boxes_)
        if (now - b.last_read >= kPoll) Queue(m, b);
    }
    for (auto& s : Snapshot()) s->Heartbeat(now, options_->heartbeat);
  }

  // Reads the feed for the mailbox's idle streams; returns the generation
  // the reads are current to.
  uint64_t Serve(const std::string& mailbox, uint64_t read_gen) {
    std::vector<std::shared_ptr<WatchStream>> streams;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [p, s] : boxes_[mailbox].streams) streams.push_back(s);
    }
    uint64_t gen = hub_->Generation(mailbox);
    // A notified commit may share any read made since it; otherwise (poll,
    // next page) a read from the last second will do.
    absl::Time not_before =
        gen != read_gen ? absl::InfinitePast() : absl::Now() - absl::Seconds(1);
    std::map<uint64_t, std::vector<WatchStream*>> by_cursor;
    for (auto& s : streams) {
      uint64_t cursor = 0;
      if (s->Idle(&cursor)) by_cursor[cursor].push_back(s.get());
    }
    for (auto& [cursor, group] : by_cursor) {
      uint64_t current = 0;
      const uint64_t after = cursor;
      auto events = hub_->Changes(
          mailbox, after, gen, not_before,
          [&](uint64_t* cur) { return store_->ChangesAfter(mailbox, after, kPage, cur); },
          &current);
      if (!events.ok()) {
        if (events.status().code() == absl::StatusCode::kUnavailable) {
          std::string leader;
          (void)options_->serving(&leader);
          for (WatchStream* s : group) s->End(NotLeaderStatus(leader), true, leader);
        } else {
          for (WatchStream* s : group) s->End(rpc::ToGrpc(events.status()));
        }
        continue;
      }
      bool full = (*events)->size() >= kPage;
      for (WatchStream* s : group) s->Deliver(*events, after, gen, full);
    }
    return gen;
  }

  MailStore* const store_;
  WatchHub* const hub_;
  const ServiceOptions* const options_;
  const std::atomic<bool>* const draining_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  // Node map: Box references stay valid while the lock is dropped.
  std::map<std::string, Box> boxes_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> pending_ ABSL_GUARDED_BY(mu_);
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool housekeeping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time next_tick_ = absl::InfinitePast();  // the housekeeper's only
  std::vector<std::thread> threads_;
};

void WatchStream::Start(std::shared_ptr<WatchStream> self) {
  self_ = std::move(self);
  owner_->Add(self_);
  {
    absl::MutexLock lock(&mu_);
    writing_ = true;
    last_sent_ = absl::Now();
  }
  StartWrite(&ready_);
}

void WatchStream::Pump() {
  const v1::WatchEvent* next = nullptr;
  bool finish = false, kick = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (writing_ || finished_) return;
    if (ending_) {
      finished_ = true;
      finish = true;
      status = status_;
      if (not_leader_) {
        ctx_->AddTrailingMetadata("mailgrid-not-leader", "1");
        if (!leader_.empty()) ctx_->AddTrailingMetadata("mailgrid-leader", leader_);
      }
    } else {
      while (pos_ < queue_size()) {
        const v1::WatchEvent& e = (*queue_)[pos_++];
        cursor_ = e.modseq();
        if (Wanted(e)) {
          next = &e;
          break;
        }
      }
      if (next != nullptr) {
        writing_ = true;
        in_flight_ = queue_;
        last_sent_ = absl::Now();
      } else {
        queue_.reset();
        pos_ = 0;
        kick = more_ || owner_->hub()->Generation(mailbox_) != read_gen_;
        more_ = false;
      }
    }
  }
  if (finish) return Finish(status);
  if (next != nullptr) return StartWrite(next);
  if (kick) owner_->Wake(mailbox_);
}

void WatchStream::OnDone() {
  owner_->Remove(this);
  std::shared_ptr<WatchStream> last = std::move(self_);  // may delete this on return
}

MailboxServiceImpl::MailboxServiceImpl(MailStore* store, Authorizer* authz, WatchHub* hub,
                                       ServiceOptions options)
    : store_(store), authz_(authz), hub_(hub), options_(std::move(options)) {
  watch_ = std::make_unique<WatchStreams>(store_, hub_, &options_, &draining_);
  hub_->SetListener([w = watch_.get()](const std::string& mailbox) { w->Wake(mailbox); });
}

MailboxServiceImpl::~MailboxServiceImpl() {
  hub_->SetListener(nullptr);
  watch_.reset();
}

void MailboxServiceImpl::Drain() {
  draining_ = true;
  watch_->EndAll("");
}

size_t MailboxServiceImpl::watch_streams() const { return watch_->size(); }

grpc::ServerWriteReactor<v1::WatchEvent>* MailboxServiceImpl::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* r) {
  std::string leader;
  if (draining_ || !options_.serving(&leader)) return new Refusal(NotServing(ctx, leader));
  auto p = authz_->Authenticate(*ctx);
  if (!p.ok()) return new Refusal(rpc::ToGrpc(p.status()));
  if (absl::Status s = authz_->CheckMailbox(*p, r->mailbox_id(), Access::kUser); !s.ok())
    return new Refusal(rpc::ToGrpc(s));
  uint64_t cursor = 0, current = 0;
  bool resume = !r->after_cursor().empty();
  if (resume && !absl::SimpleAtoi(r->after_cursor(), &cursor))
    return new Refusal(
        rpc::ToGrpc(InvalidField("after_cursor", "BAD_CURSOR", "not a cursor of this feed")));
  // The generation before the read: a commit notified after it makes the
  // stream read again once READY is written.
  uint64_t gen = hub_->Generation(r->mailbox_id());
  auto first = store_->ChangesAfter(r->mailbox_id(), resume ? cursor : 0, 0, &current);
  if (!first.ok() && resume) return new Refusal(rpc::ToGrpc(first.status()));
  if (!resume) cursor = current;
  auto stream = std::make_shared<WatchStream>(watch_.get(), ctx, *r, cursor, gen, cursor < current);
  WatchStream* raw = stream.get();
  raw->Start(std::move(stream));
  return raw;
}

}  // namespace mailgrid::mailstore
