// Watch on gRPC's callback API (mailbox_service.cc: WatchStream,
// WatchStreams): open streams hold no server thread, events arrive in order
// exactly once (resume, paging past one feed read, folder filter), idle
// streams get heartbeats, and losing leadership ends every stream
// UNAVAILABLE with the leader hint.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_callback.h"
#include "gtest/gtest.h"
#include "services/mailstore/testing/service_fixture.h"

namespace mailgrid::mailstore {
namespace {

namespace msc = mailstore_client;

long ProcessThreads() {
  std::ifstream status("/proc/self/status");
  std::string line;
  long n = 0;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) (void)absl::SimpleAtoi(line.substr(8), &n);
  return n;
}

// Polls `done` for up to a minute (the machine is shared: no tight limits).
template <typename F>
bool Eventually(F done) {
  absl::Time give_up = absl::Now() + absl::Minutes(1);
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

class WatchTest : public testing::ServiceFixture {
 protected:
  // The service as a leader while serving_ is true, else a follower that
  // names 10.9.9.9:7000; mailboxes mbx-1 and mbx-2 of tenant "t".
  void Start(ServiceOptions options) {
    options.serving = [this](std::string* leader) {
      if (serving_.load()) return true;
      *leader = "10.9.9.9:7000";
      return false;
    };
    StartService(std::move(options));
    stub_ = v1::MailboxService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    service_opts_.authorization =
        Bearer(Claims("accessd", "", {}, {"service"}, "accessd", absl::Minutes(30)));
    for (const char* m : {"mbx-1", "mbx-2"}) CreateMailboxByRpc(m, "t", m);
  }

  uint32_t Append(const std::string& mailbox, const std::string& folder = "INBOX") {
    v1::AppendRequest a;
    a.set_mailbox_id(mailbox);
    a.mutable_folder()->set_name(folder);
    a.set_message(absl::StrCat("Subject: n", next_++, "\r\n\r\nmail\r\n"));
    auto r = client_->Append(0, a, service_opts_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->uid() : 0;
  }

  std::atomic<bool> serving_{true};
  std::unique_ptr<v1::MailboxService::Stub> stub_;
  int next_ = 0;
};

// A client-side stream on the callback API: records what it reads.
class Reader : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  // gRPC may still call a started reactor until OnDone: cancel and wait.
  ~Reader() override {
    if (!started_) return;
    Cancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }
  void Start(v1::MailboxService::Stub* stub, const std::string& auth, v1::WatchRequest r) {
    started_ = true;
    ctx_.AddMetadata("authorization", auth);
    request_ = std::move(r);
    stub->async()->Watch(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      absl::MutexLock lock(&mu_);
      events_.push_back(event_);
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    status_ = s;
    const auto& md = ctx_.GetServerTrailingMetadata();
    if (auto it = md.find("mailgrid-not-leader"); it != md.end()) not_leader_ = true;
    if (auto it = md.find("mailgrid-leader"); it != md.end())
      leader_ = std::string(it->second.data(), it->second.size());
    done_ = true;
  }
  std::vector<v1::WatchEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  size_t count(v1::WatchEventKind kind) {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& e : events_) n += e.kind() == kind ? 1 : 0;
    return n;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  bool not_leader() {
    absl::MutexLock lock(&mu_);
    return not_leader_;
  }
  std::string leader() {
    absl::MutexLock lock(&mu_);
    return leader_;
  }

 private:
  bool started_ = false;
  grpc::ClientContext ctx_;
  v1::WatchRequest request_;
  v1::WatchEvent event_;
  absl::Mutex mu_;
  std::vector<v1::WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool not_leader_ ABSL_GUARDED_BY(mu_) = false;
  std::string leader_ ABSL_GUARDED_BY(mu_);
};

v1::WatchRequest On(const std::string& mailbox, const std::string& after = "") {
  v1::WatchRequest r;
  r.set_mailbox_id(mailbox);
  r.set_after_cursor(after);
  return r;
}

// 300 open streams must not hold 300 server threads (the sync server held
// one per stream), and a commit still reaches every stream of its mailbox.
TEST_F(WatchTest, OpenStreamsHoldNoThreadAndAllSeeTheCommit) {
  Start(ServiceOptions());
  constexpr int kStreams = 300;
  long before = ProcessThreads();
  std::vector<std::unique_ptr<Reader>> readers;
  for (int i = 0; i < kStreams; ++i) {
    readers.push_back(std::make_unique<Reader>());
    readers.back()->Start(stub_.get(), service_opts_.authorization, On(i % 2 ? "mbx-1" : "mbx-2"));
  }
  ASSERT_TRUE(Eventually([&] {
    for (auto& r : readers)
      if (r->count(v1::WATCH_EVENT_KIND_READY) != 1) return false;
    return true;
  }));
  EXPECT_EQ(service_->watch_streams(), static_cast<size_t>(kStreams));
  long open = ProcessThreads();
  // Client and server share this process; both sides together stay far
  // below one thread per stream.
  EXPECT_LT(open - before, kStreams / 4) << "threads before " << before << ", open " << open;
  uint32_t uid = Append("mbx-1");
  ASSERT_TRUE(Eventually([&] {
    for (int i = 1; i < kStreams; i += 2)
      if (readers[i]->count(v1::WATCH_EVENT_KIND_MESSAGES_ADDED) != 1) return false;
    return true;
  }));
  for (int i = 1; i < kStreams; i += 2) {
    auto ev = readers[i]->events();
    ASSERT_EQ(ev.back().kind(), v1::WATCH_EVENT_KIND_MESSAGES_ADDED);
    ASSERT_EQ(ev.back().uids().ranges(0).first(), uid);
  }
  for (int i = 0; i < kStreams; i += 2)
    EXPECT_EQ(readers[i]->count(v1::WATCH_EVENT_KIND_MESSAGES_ADDED), 0u);
  for (auto& r : readers) r->Cancel();
  ASSERT_TRUE(Eventually([&] {
    for (auto& r : readers)
      if (!r->done()) return false;
    return service_->watch_streams() == 0;
  }));
}

// Resuming after a cursor gives every later change once, in order, also
// when there are more than one feed read's worth (500) of them.
TEST_F(WatchTest, ResumeDeliversEveryLaterChangeOnceInOrder) {
  Start(ServiceOptions());
  Reader first;
  first.Start(stub_.get(), service_opts_.authorization, On("mbx-1"));
  ASSERT_TRUE(Eventually([&] { return first.count(v1::WATCH_EVENT_KIND_READY) == 1; }));
  std::string cursor = first.events()[0].cursor();
  first.Cancel();
  constexpr uint32_t kMessages = 620;
  for (uint32_t i = 0; i < kMessages; ++i) Append("mbx-1");
  Reader resumed;
  resumed.Start(stub_.get(), service_opts_.authorization, On("mbx-1", cursor));
  ASSERT_TRUE(Eventually(
      [&] { return resumed.count(v1::WATCH_EVENT_KIND_MESSAGES_ADDED) >= kMessages; }));
  uint32_t next_uid = 1;
  uint64_t last = 0;
  ASSERT_TRUE(absl::SimpleAtoi(cursor, &last));
  for (const auto& e : resumed.events()) {
    if (e.kind() != v1::WATCH_EVENT_KIND_MESSAGES_ADDED) continue;
    EXPECT_GT(e.modseq(), last);
    last = e.modseq();
    for (const auto& r : e.uids().ranges()) {
      EXPECT_EQ(r.first(), next_uid);
      next_uid = std::max(r.first(), r.last()) + 1;
    }
  }
  EXPECT_EQ(next_uid, kMessages + 1);
  // One more change after the backlog arrives live.
  Append("mbx-1");
  ASSERT_TRUE(Eventually(
      [&] { return resumed.count(v1::WATCH_EVENT_KIND_MESSAGES_ADDED) == kMessages + 1; }));
  resumed.Cancel();
}

TEST_F(WatchTest, FolderFilterAndHeartbeats) {
  ServiceOptions o;
  o.heartbeat = absl::Milliseconds(200);
  Start(o);
  v1::CreateFolderRequest cf;
  cf.set_mailbox_id("mbx-1");
  cf.set_name("Work");
  auto work = client_->CreateFolder(0, cf, service_opts_);
  ASSERT_TRUE(work.ok()) << work.status();
  v1::ListFoldersRequest lf;
  lf.set_mailbox_id("mbx-1");
  auto folders = client_->ListFolders(0, lf, service_opts_);
  ASSERT_TRUE(folders.ok());
  std::string inbox_id;
  for (const auto& f : folders->folders())
    if (f.name() == "INBOX") inbox_id = f.folder_id();
  ASSERT_FALSE(inbox_id.empty());
  v1::WatchRequest r = On("mbx-1");
  r.add_folder_ids(inbox_id);
  Reader inbox_only;
  inbox_only.Start(stub_.get(), service_opts_.authorization, r);
  ASSERT_TRUE(Eventually([&] { return inbox_only.count(v1::WATCH_EVENT_KIND_READY) == 1; }));
  Append("mbx-1", "Work");
  uint32_t uid = Append("mbx-1", "INBOX");
  ASSERT_TRUE(Eventually(
      [&] { return inbox_only.count(v1::WATCH_EVENT_KIND_MESSAGES_ADDED) == 1; }));
  // Heartbeats come while idle and carry the cursor past both changes.
  size_t heartbeats = inbox_only.count(v1::WATCH_EVENT_KIND_HEARTBEAT);
  ASSERT_TRUE(Eventually(
      [&] { return inbox_only.count(v1::WATCH_EVENT_KIND_HEARTBEAT) >= heartbeats + 2; }));
  uint64_t added_modseq = 0, hb_cursor = 0;
  for (const auto& e : inbox_only.events()) {
    if (e.kind() == v1::WATCH_EVENT_KIND_MESSAGES_ADDED) {
      EXPECT_EQ(e.folder_id(), inbox_id);
      EXPECT_EQ(e.uids().ranges(0).first(), uid);
      added_modseq = e.modseq();
    }
    if (e.kind() == v1::WATCH_EVENT_KIND_HEARTBEAT) {
      ASSERT_TRUE(absl::SimpleAtoi(e.cursor(), &hb_cursor));
    }
  }
  EXPECT_GE(hb_cursor, added_modseq);
  inbox_only.Cancel();
}

// Losing leadership ends every stream UNAVAILABLE, marked not-leader with
// the hint; new streams are refused the same way.
TEST_F(WatchTest, LosingLeadershipEndsStreamsWithTheHint) {
  Start(ServiceOptions());
  std::vector<std::unique_ptr<Reader>> readers;
  for (int i = 0; i < 20; ++i) {
    readers.push_back(std::make_unique<Reader>());
    readers.back()->Start(stub_.get(), service_opts_.authorization, On("mbx-2"));
  }
  ASSERT_TRUE(Eventually([&] {
    for (auto& r : readers)
      if (r->count(v1::WATCH_EVENT_KIND_READY) != 1) return false;
    return true;
  }));
  serving_ = false;
  ASSERT_TRUE(Eventually([&] {
    for (auto& r : readers)
      if (!r->done()) return false;
    return true;
  }));
  for (auto& r : readers) {
    EXPECT_EQ(r->status().error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_TRUE(r->not_leader());
    EXPECT_EQ(r->leader(), "10.9.9.9:7000");
  }
  Reader late;
  late.Start(stub_.get(), service_opts_.authorization, On("mbx-2"));
  ASSERT_TRUE(Eventually([&] { return late.done(); }));
  EXPECT_EQ(late.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(late.not_leader());
  EXPECT_TRUE(late.events().empty());
  ASSERT_TRUE(Eventually([&] { return service_->watch_streams() == 0; }));
}

// Drain ends the streams too, and the client library's Watch (what mailctl
// and the benches use) comes back with the events it saw.
TEST_F(WatchTest, DrainEndsStreamsAndClientWatchSeesEvents) {
  Start(ServiceOptions());
  std::atomic<int> added{0};
  msc::WatchControl control;
  std::thread t([&] {
    msc::CallOptions o = service_opts_;
    o.timeout = absl::Seconds(2);  // reconnect budget after the drain
    (void)client_->Watch(0, On("mbx-1"), [&](const v1::WatchEvent& e) {
      if (e.kind() == v1::WATCH_EVENT_KIND_MESSAGES_ADDED) ++added;
      return true;
    }, &control, o);
  });
  ASSERT_TRUE(Eventually([&] { return service_->watch_streams() == 1; }));
  Append("mbx-1");
  ASSERT_TRUE(Eventually([&] { return added.load() == 1; }));
  service_->Drain();
  ASSERT_TRUE(Eventually([&] { return service_->watch_streams() == 0; }));
  control.Cancel();
  t.join();
  EXPECT_FALSE(control.cursor().empty());
}

}  // namespace
}  // namespace mailgrid::mailstore
