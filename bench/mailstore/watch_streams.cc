// watch_streams: many open Watch streams against one mailstored, from ONE
// client process on gRPC's callback API (no client thread per stream), as
// accessd holds them for IMAP IDLE / POP3 sessions. Prints one JSON line:
//   - mailstored's threads and RSS (read from /proc/<--server-pid>) before
//     the streams, once every stream got READY, and after --idle seconds;
//   - mailstored's CPU while the streams sat idle (heartbeats, polls);
//   - the delay from an Append to the MESSAGES_ADDED event on every stream
//     of that mailbox (--commits appends, one at a time, to mailboxes taken
//     in turn): measured from the Append's start and from its answer.
// Streams are spread round-robin over --mailboxes mailboxes (created here).
//
//   watch_streams --mailstored=HOST:PORT --signing-key=KEY --server-pid=PID
//                 --streams=2000 --mailboxes=200 [--commits=50] [--idle=5]
//                 [--channels=16] [--prefix=w] [--leader=HOST:PORT (default: the first address)]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/mailstore/bench_args.h"
#include "bench/mailstore/bench_client.h"
#include "grpcpp/support/client_callback.h"
#include "libs/rpc/client.h"

namespace {

namespace ms = mailgrid::mailstore_client;
namespace v1 = mailgrid::mailstore::v1;
using mailgrid::bench::FlagValue;

struct Args {
  std::string mailstored, key, prefix = "w", leader;
  int streams = 2000, mailboxes = 200, commits = 50, idle = 5, channels = 16, server_pid = 0;
};

struct Proc {
  long threads = 0;
  double rss_mb = 0;
  double cpu_s = 0;
};

Proc ReadProc(int pid) {
  Proc p;
  if (pid <= 0) return p;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) (void)absl::SimpleAtoi(line.substr(8), &p.threads);
    if (line.rfind("VmRSS:", 0) == 0) {
      long kb = 0;
      std::string v = line.substr(6);
      v = v.substr(0, v.find("kB"));
      v.erase(std::remove(v.begin(), v.end(), ' '), v.end());
      v.erase(std::remove(v.begin(), v.end(), '\t'), v.end());
      if (absl::SimpleAtoi(v, &kb)) p.rss_mb = kb / 1024.0;
    }
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t close = all.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f;
    size_t i = close + 2;
    while (i < all.size()) {
      size_t j = all.find(' ', i);
      if (j == std::string::npos) j = all.size();
      f.push_back(all.substr(i, j - i));
      i = j + 1;
    }
    long ut = 0, st = 0;
    if (f.size() > 12 && absl::SimpleAtoi(f[11], &ut) && absl::SimpleAtoi(f[12], &st))
      p.cpu_s = static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return p;
}

double Pct(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// What every stream reports into (one per run).
struct Board {
  std::atomic<int> ready{0}, ended{0}, failed{0};
  std::mutex mu;
  // Per mailbox: when the pending append started (InfiniteFuture: none),
  // and how many of its streams saw the event.
  std::vector<absl::Time> started;
  std::vector<absl::Time> answered;
  std::vector<int> seen;
  std::vector<double> from_start_ms, from_answer_ms;
  std::string first_error;
};

class Stream : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  Stream(Board* board, int box) : board_(board), box_(box) {}
  void Start(v1::MailboxService::Stub* stub, const std::string& auth, const std::string& mailbox) {
    ctx_.AddMetadata("authorization", auth);
    request_.set_mailbox_id(mailbox);
    stub->async()->Watch(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (event_.kind() == v1::WATCH_EVENT_KIND_READY) {
      ++board_->ready;
    } else if (event_.kind() == v1::WATCH_EVENT_KIND_MESSAGES_ADDED) {
      absl::Time now = absl::Now();
      std::lock_guard<std::mutex> l(board_->mu);
      if (board_->started[box_] != absl::InfiniteFuture()) {
        absl::Time started = board_->started[box_], answered = board_->answered[box_];
        board_->from_start_ms.push_back(absl::ToDoubleMilliseconds(now - started));
        // InfiniteFuture: the event came before the Append's answer.
        board_->from_answer_ms.push_back(
            answered == absl::InfiniteFuture() ? 0 : absl::ToDoubleMilliseconds(now - answered));
        ++board_->seen[box_];
      }
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
      ++board_->failed;
      std::lock_guard<std::mutex> l(board_->mu);
      if (board_->first_error.empty())
        board_->first_error = absl::StrCat(s.error_code(), " ", s.error_message());
    }
    ++board_->ended;
  }

 private:
  Board* board_;
  int box_;
  grpc::ClientContext ctx_;
  v1::WatchRequest request_;
  v1::WatchEvent event_;
};

int Run(const Args& a) {
  auto client = mailgrid::bench::ConnectMailstore(a.mailstored, a.key, "tenantd");
  if (!client) return 2;
  auto tokens = mailgrid::auth::ServiceTokenSource::FromPemFile(a.key, "accessd");
  if (!tokens.ok()) return 2;
  auto auth = (*tokens)->AuthorizationHeader();
  if (!auth.ok()) return 2;
  // Mailboxes, a few at a time.
  std::vector<std::string> boxes;
  for (int i = 0; i < a.mailboxes; ++i) boxes.push_back(absl::StrCat(a.prefix, "-", i));
  {
    std::atomic<int> next{0}, errors{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
      ts.emplace_back([&] {
        for (int i = next++; i < a.mailboxes; i = next++) {
          v1::CreateMailboxRequest r;
          r.set_mailbox_id(boxes[i]);
          r.set_tenant_id("bench");
          r.set_owner_id(boxes[i]);
          r.set_kind(mailgrid::common::v1::MAILBOX_KIND_USER);
          if (!client->CreateMailbox(0, r).ok()) ++errors;
        }
      });
    }
    for (auto& t : ts) t.join();
    if (errors > 0) {
      std::fprintf(stderr, "%d mailboxes could not be created\n", errors.load());
      return 2;
    }
  }
  // The streams go straight to the leader (accessd's hub follows hints;
  // this bench only measures the leader).
  std::string leader = a.leader.empty() ? a.mailstored.substr(0, a.mailstored.find(',')) : a.leader;
  std::vector<std::shared_ptr<v1::MailboxService::Stub>> stubs;
  for (int c = 0; c < a.channels; ++c) {
    mailgrid::rpc::ClientOptions co;
    co.target = leader;
    co.channel_int_args.push_back({"mailgrid.bench.channel", c});
    auto ch = mailgrid::rpc::MakeChannel(co);
    if (!ch.ok()) return 2;
    stubs.push_back(v1::MailboxService::NewStub(*ch));
  }
  Board board;
  board.started.assign(a.mailboxes, absl::InfiniteFuture());
  board.answered.assign(a.mailboxes, absl::InfiniteFuture());
  board.seen.assign(a.mailboxes, 0);
  Proc before = ReadProc(a.server_pid);
  absl::Time t0 = absl::Now();
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < a.streams; ++i) {
    streams.push_back(std::make_unique<Stream>(&board, i % a.mailboxes));
    streams.back()->Start(stubs[i % stubs.size()].get(), *auth, boxes[i % a.mailboxes]);
  }
  while (board.ready.load() < a.streams && board.ended.load() == 0)
    absl::SleepFor(absl::Milliseconds(20));
  double open_s = absl::ToDoubleSeconds(absl::Now() - t0);
  Proc opened = ReadProc(a.server_pid);
  absl::SleepFor(absl::Seconds(a.idle));
  Proc idle = ReadProc(a.server_pid);
  // Commit-to-event: one append at a time, each to the next mailbox.
  double append_ms_sum = 0;
  int commits = 0, missing = 0;
  for (int k = 0; k < a.commits && board.ended.load() == 0; ++k) {
    int box = k % a.mailboxes;
    int want = a.streams / a.mailboxes + (box < a.streams % a.mailboxes ? 1 : 0);
    v1::AppendRequest r;
    r.set_mailbox_id(boxes[box]);
    r.mutable_folder()->set_name("INBOX");
    r.set_message(absl::StrCat("Subject: watch ", k, "\r\n\r\nnew mail ", k, "\r\n"));
    {
      std::lock_guard<std::mutex> l(board.mu);
      board.seen[box] = 0;
      board.started[box] = absl::Now();
      board.answered[box] = absl::InfiniteFuture();
    }
    absl::Time s = absl::Now();
    auto resp = client->Append(0, r);
    absl::Time done = absl::Now();
    append_ms_sum += absl::ToDoubleMilliseconds(done - s);
    {
      std::lock_guard<std::mutex> l(board.mu);
      board.answered[box] = done;
    }
    if (!resp.ok()) {
      std::fprintf(stderr, "append: %s\n", resp.status().ToString().c_str());
      return 1;
    }
    ++commits;
    absl::Time give_up = absl::Now() + absl::Seconds(60);
    for (;;) {
      {
        std::lock_guard<std::mutex> l(board.mu);
        if (board.seen[box] >= want) break;
      }
      if (absl::Now() > give_up) {
        ++missing;
        break;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    std::lock_guard<std::mutex> l(board.mu);
    board.started[box] = absl::InfiniteFuture();
  }
  Proc after = ReadProc(a.server_pid);
  for (auto& s : streams) s->Cancel();
  absl::Time end = absl::Now() + absl::Seconds(60);
  while (board.ended.load() < a.streams && absl::Now() < end)
    absl::SleepFor(absl::Milliseconds(20));
  // gRPC may still call a reactor that has not ended: leak those rather than free them.
  if (board.ended.load() < a.streams)
    for (auto& s : streams) (void)s.release();
  std::lock_guard<std::mutex> l(board.mu);
  std::printf(
      "{\"streams\":%d,\"mailboxes\":%d,\"ready\":%d,\"open_s\":%.1f,"
      "\"threads_before\":%ld,\"threads_open\":%ld,\"threads_idle\":%ld,"
      "\"rss_mb_before\":%.1f,\"rss_mb_open\":%.1f,\"rss_mb_idle\":%.1f,"
      "\"idle_cpu_pct\":%.2f,\"commits\":%d,\"missing\":%d,\"append_ms\":%.2f,"
      "\"event_from_start_p50_ms\":%.2f,\"event_from_start_p99_ms\":%.2f,"
      "\"event_after_answer_p50_ms\":%.2f,\"event_after_answer_p99_ms\":%.2f,"
      "\"failed\":%d,\"error\":\"%s\"}\n",
      a.streams, a.mailboxes, board.ready.load(), open_s, before.threads, opened.threads,
      idle.threads, before.rss_mb, opened.rss_mb, idle.rss_mb,
      a.idle > 0 ? 100.0 * (idle.cpu_s - opened.cpu_s) / a.idle : 0.0, commits, missing,
      commits > 0 ? append_ms_sum / commits : 0.0, Pct(board.from_start_ms, 0.5),
      Pct(board.from_start_ms, 0.99), Pct(board.from_answer_ms, 0.5),
      Pct(board.from_answer_ms, 0.99), board.failed.load(), board.first_error.c_str());
  (void)after;
  return board.ready.load() == a.streams && missing == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const char* v = nullptr;
    if ((v = FlagValue(argv[i], "mailstored"))) a.mailstored = v;
    else if ((v = FlagValue(argv[i], "signing-key"))) a.key = v;
    else if ((v = FlagValue(argv[i], "prefix"))) a.prefix = v;
    else if ((v = FlagValue(argv[i], "leader"))) a.leader = v;
    else if ((v = FlagValue(argv[i], "streams"))) a.streams = std::atoi(v);
    else if ((v = FlagValue(argv[i], "mailboxes"))) a.mailboxes = std::atoi(v);
    else if ((v = FlagValue(argv[i], "commits"))) a.commits = std::atoi(v);
    else if ((v = FlagValue(argv[i], "idle"))) a.idle = std::atoi(v);
    else if ((v = FlagValue(argv[i], "channels"))) a.channels = std::atoi(v);
    else if ((v = FlagValue(argv[i], "server-pid"))) a.server_pid = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (a.mailstored.empty() || a.key.empty() || a.streams <= 0 || a.mailboxes <= 0 ||
      a.channels <= 0) {
    std::fprintf(stderr, "usage: watch_streams --mailstored=ADDR --signing-key=KEY "
                         "[--server-pid=PID] [--streams=N] [--mailboxes=M] [--commits=K]\n");
    return 2;
  }
  return Run(a);
}
