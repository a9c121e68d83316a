#include "libs/replica/kv_client.h"

#include <algorithm>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/kv/requests.h"
#include "libs/replica/channel.h"
#include "libs/replica/kv_service.h"
#include "libs/rpc/status.h"

namespace mailgrid::replica {
namespace {

std::string RandomClientId() {
  std::random_device rd;
  std::string bytes(16, '\0');
  for (char& c : bytes) c = static_cast<char>(rd() & 0xff);
  return absl::BytesToHexString(bytes);
}

// The NOT_LEADER hint of a failed call, if it carries one.
std::optional<kv::v1::NotLeader> Redirect(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(kNotLeaderMetadata);
  if (it == md.end()) return std::nullopt;
  kv::v1::NotLeader hint;
  if (!hint.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()))) {
    return std::nullopt;
  }
  return hint;
}

bool HasDeleteRange(const kv::v1::WriteRequest& request) {
  return std::any_of(request.ops().begin(), request.ops().end(),
                     [](const kv::v1::Op& op) { return op.has_delete_range(); });
}

absl::Duration Jitter(absl::Duration d) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  double f = std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  return d * f;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseAddressList(std::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(ToAbsl(list), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  if (out.empty()) return absl::InvalidArgumentError("replica addresses: empty list");
  return out;
}

absl::StatusOr<std::unique_ptr<KvClient>> KvClient::Create(KvClientOptions options) {
  if (options.addresses.empty()) return absl::InvalidArgumentError("replica addresses: empty list");
  if (options.client_id.empty()) options.client_id = RandomClientId();
  std::unique_ptr<KvClient> client(new KvClient(std::move(options)));
  // Fails now, not at the first call, when a TLS file is unreadable.
  for (const std::string& address : client->options_.addresses) {
    RETURN_IF_ERROR(client->Stub(address).status());
  }
  return client;
}

absl::StatusOr<std::unique_ptr<KvClient>> KvClient::Create(std::string_view addresses) {
  KvClientOptions options;
  auto parsed = ParseAddressList(addresses);
  if (!parsed.ok()) return parsed.status();
  options.addresses = std::move(*parsed);
  return Create(std::move(options));
}

kv::v1::RequestId KvClient::NextRequestId() {
  kv::v1::RequestId id;
  id.set_client_id(options_.client_id);
  id.set_seq(seqs_.NextSeq());
  return id;
}

std::string KvClient::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

absl::StatusOr<std::shared_ptr<kv::v1::KvService::Stub>> KvClient::Stub(
    const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[address];
  if (stub == nullptr) {
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                     MakeReplicaChannel(address, options_.tls));
    stub = kv::v1::KvService::NewStub(channel);
  }
  return stub;
}

std::string KvClient::PickTarget(size_t* rotation) {
  {
    absl::MutexLock lock(&mu_);
    if (!leader_.empty()) return leader_;
  }
  return options_.addresses[(*rotation)++ % options_.addresses.size()];
}

absl::Status KvClient::Call(const Attempt& attempt, absl::Duration timeout, CallKind kind) {
  const absl::Time deadline = absl::Now() + timeout;
  thread_local std::mt19937_64 rng(std::random_device{}());
  size_t rotation = std::uniform_int_distribution<size_t>(0, options_.addresses.size() - 1)(rng);
  absl::Duration backoff = absl::Milliseconds(20);
  std::string target = PickTarget(&rotation);
  absl::Status last = absl::UnavailableError("no replica answered");
  int redirects = 0;  // in a row, without a pause: stale hints may ping-pong
  while (true) {
    absl::Time now = absl::Now();
    if (now >= deadline) break;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(std::min(deadline, now + options_.attempt_timeout)));
    absl::StatusOr<std::shared_ptr<kv::v1::KvService::Stub>> stub = Stub(target);
    if (!stub.ok()) return stub.status();  // unreadable TLS files: retrying cannot help
    grpc::Status s = attempt(stub->get(), &ctx);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      leader_ = target;
      return absl::OkStatus();
    }
    last = rpc::FromGrpc(s);
    std::optional<kv::v1::NotLeader> hint = Redirect(ctx);
    // RESOURCE_EXHAUSTED (disk full) is one replica's answer: it stalled and
    // stepped aside, and the others may well elect a leader that can write.
    // So it is retried elsewhere like UNAVAILABLE; at the deadline its
    // message ("disk full ...") is in the error returned.
    if (hint.has_value() || s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
        s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      // Forget a leader that is not one (any more).
      {
        absl::MutexLock lock(&mu_);
        if (leader_ == target) leader_.clear();
        // And, when it could not be reached, the channel: a fresh one next
        // time. Seen with TLS (gRPC 1.51): a channel whose first connection
        // attempt failed (replica not up yet) kept failing its handshakes
        // after the replica came up; a new channel connected at once.
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE && !hint.has_value()) {
          stubs_.erase(target);
        }
      }
      if (hint.has_value() && !hint->leader_address().empty() && hint->leader_address() != target &&
          ++redirects <= 3) {
        target = hint->leader_address();  // redirect: go there at once
        continue;
      }
      redirects = 0;
      absl::Duration pause = std::min(Jitter(backoff), deadline - absl::Now());
      if (pause > absl::ZeroDuration()) absl::SleepFor(pause);
      backoff = std::min(backoff * 2, absl::Seconds(1));
      target = PickTarget(&rotation);
      continue;
    }
    return last;  // a definite answer: bad request, data loss...
  }
  if (kind == CallKind::kWrite) {
    return absl::DeadlineExceededError(
        absl::StrCat("write outcome unknown: no acknowledgement before the deadline (last error: ",
                     last.ToString(), ")"));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no replica answered before the deadline (last error: ", last.ToString(), ")"));
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::Write(kv::v1::WriteRequest request) {
  return Write(std::move(request), options_.timeout);
}

uint64_t KvClient::MakeSessionId(kv::v1::WriteRequest* request) {
  kv::v1::RequestId* id = request->mutable_request_id();
  id->set_client_id(options_.client_id);
  const kv::ClientSeqs::Taken taken = seqs_.TakeSessionSeq();
  id->set_seq(taken.seq);
  if (!taken.session()) return 0;  // beyond the session window: its own record
  id->set_first_unacked(taken.first_unacked);
  request->set_min_format(std::max(request->min_format(), kv::kSessionFormat));
  return taken.seq;
}

void KvClient::NoteSessions(const kv::v1::WriteResponse& response) {
  if (response.sessions() && options_.sessions == SessionUse::kWhenOffered &&
      !sessions_offered_.load(std::memory_order_relaxed)) {
    sessions_offered_.store(true, std::memory_order_relaxed);
  }
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::Write(kv::v1::WriteRequest request,
                                                      absl::Duration timeout) {
  uint64_t session_seq = 0;
  if (request.request_id().client_id().empty()) {
    if (sessions_offered_.load(std::memory_order_relaxed) && !kv::IsBatch(request)) {
      session_seq = MakeSessionId(&request);
    } else {
      *request.mutable_request_id() = NextRequestId();
    }
  }
  absl::StatusOr<kv::v1::WriteResponse> r;
  if (options_.batching == WriteBatching::kCoalesce &&
      !write_many_unsupported_.load(std::memory_order_relaxed) && !HasDeleteRange(request) &&
      !kv::IsBatch(request)) {
    r = WriteCoalesced(std::move(request), timeout);
  } else {
    r = WriteOne(request, timeout);
  }
  // Answered to the caller (whatever the outcome): never sent again.
  if (session_seq != 0) seqs_.Answered(session_seq);
  if (r.ok()) NoteSessions(*r);
  return r;
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::WriteOne(const kv::v1::WriteRequest& request,
                                                         absl::Duration timeout) {
  kv::v1::WriteResponse resp;
  absl::Status s = Call([&](kv::v1::KvService::Stub* stub,
                            grpc::ClientContext* ctx) { return stub->Write(ctx, request, &resp); },
                        timeout, CallKind::kWrite);
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::WriteCoalesced(kv::v1::WriteRequest request,
                                                               absl::Duration timeout) {
  auto mine = std::make_shared<PendingWrite>();
  mine->bytes = request.ByteSizeLong();
  mine->request = std::move(request);
  mine->deadline = absl::Now() + timeout;
  bool send_now = false;
  {
    absl::MutexLock lock(&write_mu_);
    write_queue_.push_back(mine);
    if (calls_in_flight_ < std::max(1, options_.max_calls_in_flight)) {
      ++calls_in_flight_;  // a call may leave now: send at once
      mine->sender = send_now = true;
    }
  }
  // Flags read without write_mu_ only after `woken` (which orders them).
  if (!send_now && !AwaitWoken(*mine)) {
    absl::MutexLock lock(&write_mu_);
    // Woken just now (flags set, the broadcast not yet made) counts as woken.
    if (!mine->done && !mine->sender && !mine->alone) {
      auto it = std::find(write_queue_.begin(), write_queue_.end(), mine);
      if (it != write_queue_.end()) {
        write_queue_.erase(it);
        return absl::DeadlineExceededError(
            "write not sent: the deadline passed while it waited for the call in flight");
      }
      return absl::DeadlineExceededError(
          "write outcome unknown: no acknowledgement before the deadline (its call is still "
          "in flight)");
    }
  }
  if (mine->done) return std::move(mine->result);
  if (mine->alone) return WriteOne(mine->request, mine->deadline - absl::Now());
  return SendQueued(mine);
}

absl::StatusOr<kv::v1::WriteResponse> KvClient::SendQueued(
    const std::shared_ptr<PendingWrite>& mine) {
  AwaitCompany(*mine);
  const absl::Time started = absl::Now();
  std::vector<std::shared_ptr<PendingWrite>> batch = TakeBatch(mine);
  if (batch.size() == 1) {
    // Nothing to coalesce: the plain call, so one client pays nothing extra.
    absl::Time deadline = mine->deadline;
    mine->result = WriteOne(mine->request, deadline - absl::Now());
  } else {
    SendMany(batch);
  }
  // Each waiter is woken on its own, from this thread, the next call's
  // sender last (it waits for company anyway: AwaitCompany). Waking them
  // through write_mu_ (one absl::Mutex condition) woke them one after
  // another, each woken writer waking the next.
  // Held by shared_ptr: a waiter whose deadline passed may return (and drop
  // its own reference) before it is notified.
  std::vector<std::shared_ptr<PendingWrite>> wake;
  wake.reserve(batch.size());
  {
    absl::MutexLock lock(&write_mu_);
    last_call_writes_ = batch.size();
    last_call_end_ = absl::Now();
    last_call_time_ = last_call_end_ - started;
    for (const std::shared_ptr<PendingWrite>& w : batch) {
      if (w == mine || w->alone) continue;  // alone: woken by SendMany
      w->done = true;
      wake.push_back(w);
    }
    if (std::shared_ptr<PendingWrite> next = PassTurnLocked()) wake.push_back(std::move(next));
  }
  WakeWriters(wake);
  return std::move(mine->result);
}

// Why one broadcast for a whole call's writers, not a wake each: each wake
// was its own futex call, after which the woken writer usually preempted
// the waker (Linux favours the thread that slept), so a call's ~60 writers
// were woken one by one between ~60 preemptions of the thread waking them
// (1.3 ms per call at 64 writers, stop 28). notify_all is one futex call
// for every waiter; a writer woken for another call's answer (`woken` still
// false) waits again. Measured: the client's context switches per write
// 1.50 -> 1.14 (docs/benchmarks.md).
void KvClient::WakeWriters(const std::vector<std::shared_ptr<PendingWrite>>& writers) {
  if (writers.empty()) return;
  for (const std::shared_ptr<PendingWrite>& w : writers) {
    w->woken.store(true, std::memory_order_release);  // after its flags (set under write_mu_)
  }
  // Taking wake_mu_ once orders the stores above with a writer between
  // checking `woken` and going to sleep: it cannot miss this broadcast.
  { std::lock_guard<std::mutex> lock(wake_mu_); }
  wake_cv_.notify_all();
}

bool KvClient::AwaitWoken(const PendingWrite& mine) {
  std::unique_lock<std::mutex> lock(wake_mu_);
  while (!mine.woken.load(std::memory_order_acquire)) {
    const absl::Duration left = mine.deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    // In slices of at most an hour: a far (or infinite) deadline must not
    // overflow the clock arithmetic inside wait_for.
    wake_cv_.wait_for(lock, absl::ToChronoNanoseconds(std::min(left, absl::Hours(1))));
  }
  return true;
}

// Why wait at all: with one call in flight and writers that write again once
// answered (a service's handlers under steady load, the benchmark's
// writers), a call leaving at once carries only the writes that queued
// during the previous one, and the writers it answered, back a moment
// later, wait a whole call: the writers split into two cohorts that take
// turns, each call half full. Waiting until as many writes are queued as
// the last call carried (bounded: a quarter of that call's time, at most
// 2 ms) keeps calls full; under open-loop load the queue already holds that
// many when the turn passes (it filled during the call), so nothing waits,
// and a lone writer (last call 1 write) never does. After a pause longer
// than the last call took, the load is not continuous: no wait.
void KvClient::AwaitCompany(const PendingWrite& mine) {
  absl::MutexLock lock(&write_mu_);
  const size_t target = std::min(last_call_writes_, options_.max_writes_per_call);
  const absl::Time now = absl::Now();
  if (write_queue_.size() >= target || now - last_call_end_ > last_call_time_) return;
  const absl::Time until =
      std::min(now + std::min(last_call_time_ / 4, kMaxCompanyWait), mine.deadline);
  struct Args {
    const std::deque<std::shared_ptr<PendingWrite>>* queue;
    size_t target;
  } args{&write_queue_, target};
  write_mu_.AwaitWithDeadline(
      absl::Condition(+[](Args* a) { return a->queue->size() >= a->target; }, &args), until);
}

// With several calls in flight, other senders may still sit in the queue
// (handed the turn, not yet running): their writes are theirs to send. Until
// session 23 a call took the queue's front run, theirs included: such a
// sender then returned its write's result before (or without) the call
// carrying it setting it, and two finished calls could hand their turns to
// one write, losing a place for a call in flight for good.
std::vector<std::shared_ptr<KvClient::PendingWrite>> KvClient::TakeBatch(
    const std::shared_ptr<PendingWrite>& mine) {
  std::vector<std::shared_ptr<PendingWrite>> batch = {mine};
  absl::MutexLock lock(&write_mu_);
  // A sender's write stays queued until here: nobody else takes it.
  auto own = std::find(write_queue_.begin(), write_queue_.end(), mine);
  if (own != write_queue_.end()) write_queue_.erase(own);
  size_t bytes = mine->bytes;
  for (auto it = write_queue_.begin();
       it != write_queue_.end() && batch.size() < options_.max_writes_per_call;) {
    if ((*it)->sender) {
      ++it;
      continue;
    }
    if (bytes + (*it)->bytes > options_.max_bytes_per_call) break;
    bytes += (*it)->bytes;
    batch.push_back(*it);
    it = write_queue_.erase(it);
  }
  return batch;
}

std::shared_ptr<KvClient::PendingWrite> KvClient::PassTurnLocked() {
  // The oldest write without a turn of its own sends the next call; with
  // none, this call's place is free.
  auto next = std::find_if(write_queue_.begin(), write_queue_.end(),
                           [](const std::shared_ptr<PendingWrite>& w) { return !w->sender; });
  if (next == write_queue_.end()) {
    --calls_in_flight_;
    return nullptr;
  }
  (*next)->sender = true;
  return *next;
}

void KvClient::SendMany(const std::vector<std::shared_ptr<PendingWrite>>& batch) {
  kv::v1::WriteManyRequest request;
  absl::Time deadline = absl::InfinitePast();
  request.mutable_writes()->Reserve(static_cast<int>(batch.size()));
  // Swapped in, not copied (swapped back for the fallback below).
  for (const std::shared_ptr<PendingWrite>& w : batch) {
    request.add_writes()->Swap(&w->request);
    deadline = std::max(deadline, w->deadline);
  }
  kv::v1::WriteManyResponse resp;
  absl::Status s = Call(
      [&](kv::v1::KvService::Stub* stub, grpc::ClientContext* ctx) {
        resp.Clear();
        return stub->WriteMany(ctx, request, &resp);
      },
      deadline - absl::Now(), CallKind::kWrite);
  if (s.code() == absl::StatusCode::kUnimplemented) {
    // An older server: from now on every write goes alone.
    write_many_unsupported_.store(true);
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->request.Swap(request.mutable_writes(static_cast<int>(i)));
    }
    {
      absl::MutexLock lock(&write_mu_);
      for (const std::shared_ptr<PendingWrite>& w : batch) w->alone = true;
    }
    // The first is the sender's own write (TakeBatch), which is not waiting.
    WakeWriters({batch.begin() + 1, batch.end()});
    batch.front()->result = WriteOne(batch.front()->request, batch.front()->deadline - absl::Now());
    return;
  }
  if (s.ok() && resp.results_size() != static_cast<int>(batch.size())) {
    s = absl::InternalError(absl::StrCat("WriteMany answered ", resp.results_size(),
                                         " results for ", batch.size(), " writes"));
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!s.ok()) {
      batch[i]->result = s;
      continue;
    }
    kv::v1::WriteResult& r = *resp.mutable_results(static_cast<int>(i));
    if (r.has_error()) {
      batch[i]->result =
          absl::Status(static_cast<absl::StatusCode>(r.error().code()), r.error().message());
    } else {
      batch[i]->result = std::move(*r.mutable_response());
    }
  }
}

absl::StatusOr<kv::v1::GetResponse> KvClient::Get(const kv::v1::GetRequest& request) {
  return Get(request, options_.timeout);
}

absl::StatusOr<kv::v1::GetResponse> KvClient::Get(const kv::v1::GetRequest& request,
                                                  absl::Duration timeout) {
  kv::v1::GetResponse resp;
  absl::Status s = Call([&](kv::v1::KvService::Stub* stub,
                            grpc::ClientContext* ctx) { return stub->Get(ctx, request, &resp); },
                        timeout, CallKind::kRead);
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<kv::v1::ScanResponse> KvClient::Scan(const kv::v1::ScanRequest& request) {
  return Scan(request, options_.timeout);
}

absl::StatusOr<kv::v1::ScanResponse> KvClient::Scan(const kv::v1::ScanRequest& request,
                                                    absl::Duration timeout) {
  kv::v1::ScanResponse resp;
  absl::Status s = Call([&](kv::v1::KvService::Stub* stub,
                            grpc::ClientContext* ctx) { return stub->Scan(ctx, request, &resp); },
                        timeout, CallKind::kRead);
  if (!s.ok()) return s;
  return resp;
}

}  // namespace mailgrid::replica
