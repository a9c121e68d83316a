// WatchHub against an in-process MailboxService whose Watch the test
// drives: sessions of one mailbox share one stream, each gets only its
// folders' events, a late subscriber gets READY at once, a stream the server
// ends is resumed at the last cursor without a second READY, and the last
// subscriber leaving cancels the stream.
#include "services/access/watch_hub.h"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace mailgrid::access {
namespace {

// Watch streams stay open until the test pushes `end` to them.
class FakeMailbox final : public ms::MailboxService::Service {
 public:
  grpc::Status Watch(grpc::ServerContext* ctx, const ms::WatchRequest* r,
                     grpc::ServerWriter<ms::WatchEvent>* w) override {
    size_t seen = 0;  // events pushed from now on are this stream's
    {
      std::lock_guard<std::mutex> l(mu_);
      requests_.push_back(*r);
      ++open_[r->mailbox_id()];
      seen = log_[r->mailbox_id()].size();
    }
    ms::WatchEvent ready;
    ready.set_kind(ms::WATCH_EVENT_KIND_READY);
    ready.set_cursor(r->after_cursor().empty() ? "100" : r->after_cursor());
    w->Write(ready);
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait_for(l, std::chrono::milliseconds(20));
      if (ctx->IsCancelled()) break;
      auto& log = log_[r->mailbox_id()];
      bool end = false;
      for (; seen < log.size(); ++seen) {
        if (!log[seen].has_value()) {
          end = true;
          continue;
        }
        ms::WatchEvent e = *log[seen];
        l.unlock();
        w->Write(e);
        l.lock();
      }
      if (end) break;
    }
    --open_[r->mailbox_id()];
    return grpc::Status::OK;
  }

  // Sends an event (or, with nullopt, ends the streams) of a mailbox.
  void Push(const std::string& mailbox, std::optional<ms::WatchEvent> e) {
    std::lock_guard<std::mutex> l(mu_);
    log_[mailbox].push_back(std::move(e));
    cv_.notify_all();
  }
  int Open(const std::string& mailbox) {
    std::lock_guard<std::mutex> l(mu_);
    return open_[mailbox];
  }
  std::vector<ms::WatchRequest> Requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::deque<std::optional<ms::WatchEvent>>> log_;
  std::map<std::string, int> open_;
  std::vector<ms::WatchRequest> requests_;
};

// What one subscriber received, as "KIND:folder:cursor" strings.
struct Inbox {
  std::mutex mu;
  std::vector<std::string> got;
  void Add(const ms::WatchEvent& e) {
    std::lock_guard<std::mutex> l(mu);
    got.push_back(
        absl::StrCat(ms::WatchEventKind_Name(e.kind()), ":", e.folder_id(), ":", e.cursor()));
  }
  std::vector<std::string> Get() {
    std::lock_guard<std::mutex> l(mu);
    return got;
  }
};

template <typename F>
bool WaitFor(F f) {
  for (int i = 0; i < 3000; ++i) {  // generous: the machine is shared
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

ms::WatchEvent Added(const std::string& folder, const std::string& cursor) {
  ms::WatchEvent e;
  e.set_kind(ms::WATCH_EVENT_KIND_MESSAGES_ADDED);
  e.set_folder_id(folder);
  e.set_cursor(cursor);
  return e;
}

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
    ASSERT_NE(port, 0);
    mailstore_client::ShardMap shards;
    shards.shards[0] = {absl::StrCat("127.0.0.1:", port)};
    auto hub = WatchHub::Create(shards, nullptr);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = std::move(*hub);
  }
  void TearDown() override {
    // As AccessApp::Stop does: cancelled streams finish on gRPC's threads
    // before the hub and the server go.
    EXPECT_TRUE(WaitFor([&] { return hub_->open_streams() == 0; }));
    hub_.reset();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::unique_ptr<WatchHandle> Subscribe(const std::string& mailbox, const std::string& folder,
                                         Inbox* inbox) {
    ms::WatchRequest r;
    r.set_mailbox_id(mailbox);
    if (!folder.empty()) r.add_folder_ids(folder);
    CallTarget t;
    t.authorization = "Bearer x";
    return hub_->Watch(
        t, r, [](std::function<void()> fn) { fn(); },
        [inbox](const ms::WatchEvent& e) { inbox->Add(e); }, [](absl::Status) {});
  }

  FakeMailbox service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<WatchHub> hub_;
};

TEST_F(WatchHubTest, SessionsOfOneMailboxShareOneStream) {
  Inbox a, b, c, other;
  auto ha = Subscribe("m1", "f1", &a);
  auto hb = Subscribe("m1", "f2", &b);
  auto ho = Subscribe("m2", "f1", &other);
  ASSERT_TRUE(WaitFor([&] { return a.Get().size() == 1 && b.Get().size() == 1; }));
  EXPECT_EQ(a.Get()[0], "WATCH_EVENT_KIND_READY::100");
  EXPECT_EQ(service_.Open("m1"), 1);
  EXPECT_EQ(hub_->open_streams(), 2);
  EXPECT_EQ(hub_->subscribers(), 3);
  // The shared stream carries every folder; each subscriber gets its own.
  for (const auto& r : service_.Requests()) EXPECT_EQ(r.folder_ids_size(), 0);

  service_.Push("m1", Added("f1", "101"));
  service_.Push("m1", Added("f2", "102"));
  ASSERT_TRUE(WaitFor([&] { return a.Get().size() == 2 && b.Get().size() == 2; }));
  EXPECT_EQ(a.Get()[1], "WATCH_EVENT_KIND_MESSAGES_ADDED:f1:101");
  EXPECT_EQ(b.Get()[1], "WATCH_EVENT_KIND_MESSAGES_ADDED:f2:102");
  EXPECT_EQ(other.Get().size(), 1u);

  // A late subscriber: READY at once (at the current cursor), no new stream.
  auto hc = Subscribe("m1", "", &c);
  ASSERT_TRUE(WaitFor([&] { return c.Get().size() == 1; }));
  EXPECT_EQ(c.Get()[0], "WATCH_EVENT_KIND_READY::102");
  EXPECT_EQ(service_.Open("m1"), 1);

  // The server ends the stream: reopened at the last cursor, nobody sees a
  // second READY, and later events still arrive.
  service_.Push("m1", std::nullopt);
  ASSERT_TRUE(WaitFor([&] { return service_.Requests().size() == 3; }));
  EXPECT_EQ(service_.Requests()[2].after_cursor(), "102");
  service_.Push("m1", Added("f1", "103"));
  ASSERT_TRUE(WaitFor([&] { return a.Get().size() == 3 && c.Get().size() == 2; }));
  EXPECT_EQ(a.Get()[2], "WATCH_EVENT_KIND_MESSAGES_ADDED:f1:103");
  EXPECT_EQ(c.Get()[1], "WATCH_EVENT_KIND_MESSAGES_ADDED:f1:103");
  EXPECT_EQ(b.Get().size(), 2u);

  // Cancelled subscribers get nothing more; the last one closes the stream.
  ha->Cancel();
  hb.reset();
  EXPECT_EQ(service_.Open("m1"), 1);
  hc->Cancel();
  ASSERT_TRUE(WaitFor([&] { return service_.Open("m1") == 0; }));
  EXPECT_EQ(a.Get().size(), 3u);
  EXPECT_EQ(hub_->subscribers(), 1);
  ASSERT_TRUE(WaitFor([&] { return hub_->open_streams() == 1; }));
  // A new subscriber after that opens a fresh stream (from now).
  Inbox d;
  auto hd = Subscribe("m1", "f1", &d);
  ASSERT_TRUE(WaitFor([&] { return d.Get().size() == 1; }));
  EXPECT_EQ(service_.Requests().back().after_cursor(), "");
}

}  // namespace
}  // namespace mailgrid::access

// gRPC 1.51's callback-queue thread can still be unwinding when the
// process's static destructors run, which aborts in grpc_cq_internal_unref
// after every test passed (seen about once in 20 runs). The tests are over
// by then: leave without static destruction.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(rc);
}
