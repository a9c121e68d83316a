// MailboxService over real gRPC through libs/mailstore_client: tenant B's
// tokens (user, admin) reach none of tenant A's mail by any RPC, and every
// refusal reads like a missing mailbox.
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "libs/base/config.h"
#include "services/mailstore/config.h"
#include "services/mailstore/testing/service_fixture.h"

namespace mailgrid::mailstore {
namespace {

namespace msc = mailstore_client;

class ServiceTest : public testing::ServiceFixture {
 protected:
  void SetUp() override {
    StartService(ServiceOptions());
    service_opts_.authorization = Bearer(Claims("tenantd", "", {}, {"service"}, "tenantd"));
    CreateMailboxByRpc("mbx-a", "tenant-a", "owner-mbx-a");
    CreateMailboxByRpc("mbx-b", "tenant-b", "owner-mbx-b");
    user_a_.authorization = Bearer(Claims("ua", "tenant-a", {"mbx-a"}, {"user"}));
    user_b_.authorization = Bearer(Claims("ub", "tenant-b", {"mbx-b"}, {"user"}));
    admin_b_.authorization = Bearer(Claims("adm", "tenant-b", {"mbx-b"}, {"user", "tenant_admin"}));
    // A forged-looking claim: tenant B's user listing A's mailbox id.
    sneaky_b_.authorization = Bearer(Claims("ub", "tenant-b", {"mbx-a", "mbx-b"}, {"user"}));
  }

  msc::CallOptions user_a_, user_b_, admin_b_, sneaky_b_;
};

// Runs every mailbox RPC against `mailbox` with `o`; returns each status.
std::vector<std::pair<std::string, absl::Status>> EveryRpc(msc::MailstoreClient& c,
                                                           const std::string& mailbox,
                                                           const msc::CallOptions& o) {
  std::vector<std::pair<std::string, absl::Status>> out;
  v1::FolderRef inbox;
  inbox.set_name("INBOX");
  v1::MessageSelector all;
  all.mutable_uids()->add_ranges()->set_first(1);
  all.mutable_uids()->mutable_ranges(0)->set_to_last(true);
  { v1::ListFoldersRequest r; r.set_mailbox_id(mailbox); out.emplace_back("ListFolders", c.ListFolders(0, r, o).status()); }
  { v1::FolderStatusRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; out.emplace_back("FolderStatus", c.FolderStatus(0, r, o).status()); }
  { v1::SelectFolderRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; r.set_claim_recent(true); r.set_include_uids(true); r.mutable_changes()->set_include_vanished(true); out.emplace_back("SelectFolder", c.SelectFolder(0, r, o).status()); }
  { v1::CreateFolderRequest r; r.set_mailbox_id(mailbox); r.set_name("x"); out.emplace_back("CreateFolder", c.CreateFolder(0, r, o).status()); }
  { v1::RenameFolderRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; r.set_new_name("y"); out.emplace_back("RenameFolder", c.RenameFolder(0, r, o).status()); }
  { v1::DeleteFolderRequest r; r.set_mailbox_id(mailbox); r.mutable_folder()->set_name("Sent"); out.emplace_back("DeleteFolder", c.DeleteFolder(0, r, o).status()); }
  { v1::SubscribeFolderRequest r; r.set_mailbox_id(mailbox); r.set_name("z"); r.set_subscribe(true); out.emplace_back("SubscribeFolder", c.SubscribeFolder(0, r, o).status()); }
  { v1::AppendRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; r.set_message("Subject: x\r\n\r\ny\r\n"); out.emplace_back("Append", c.Append(0, r, o).status()); }
  { v1::DeliverBatchRequest r; r.set_message("Subject: x\r\n\r\ny\r\n"); r.add_recipients()->set_mailbox_id(mailbox); out.emplace_back("DeliverBatch", c.DeliverBatch(0, r, o).status()); }
  { v1::FetchRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; *r.mutable_messages() = all; r.mutable_items()->set_raw(true); out.emplace_back("Fetch", c.FetchAll(0, r, o).status()); }
  { v1::StoreFlagsRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; *r.mutable_messages() = all; r.set_mode(v1::STORE_MODE_ADD); r.add_flags("\\Deleted"); out.emplace_back("StoreFlags", c.StoreFlags(0, r, o).status()); }
  { v1::CopyRequest r; r.set_mailbox_id(mailbox); *r.mutable_source() = inbox; *r.mutable_messages() = all; r.mutable_destination()->set_name("Sent"); out.emplace_back("Copy", c.Copy(0, r, o).status()); }
  { v1::MoveRequest r; r.set_mailbox_id(mailbox); *r.mutable_source() = inbox; *r.mutable_messages() = all; r.mutable_destination()->set_name("Sent"); out.emplace_back("Move", c.Move(0, r, o).status()); }
  { v1::ExpungeRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; out.emplace_back("Expunge", c.Expunge(0, r, o).status()); }
  { v1::ChangesSinceRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; out.emplace_back("ChangesSince", c.ChangesSince(0, r, o).status()); }
  { v1::SearchRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; r.mutable_query()->set_all(true); out.emplace_back("Search", c.Search(0, r, o).status()); }
  { v1::GetQuotaRequest r; r.set_mailbox_id(mailbox); out.emplace_back("GetQuota", c.GetQuota(0, r, o).status()); }
  { v1::SetQuotaRequest r; r.set_mailbox_id(mailbox); out.emplace_back("SetQuota", c.SetQuota(0, r, o).status()); }
  { v1::StartArchiveRequest r; r.set_mailbox_id(mailbox); r.set_all(true); out.emplace_back("StartArchive", c.StartArchive(0, r, o).status()); }
  { v1::ExportMboxRequest r; r.set_mailbox_id(mailbox); *r.mutable_folder() = inbox; out.emplace_back("ExportMbox", c.ExportMbox(0, r, [](const v1::ExportMboxResponse&) { return true; }, o)); }
  { v1::DeleteMailboxRequest r; r.set_mailbox_id(mailbox); out.emplace_back("DeleteMailbox", c.DeleteMailbox(0, r, o).status()); }
  {
    v1::WatchRequest r;
    r.set_mailbox_id(mailbox);
    msc::CallOptions short_o = o;
    short_o.timeout = absl::Seconds(5);
    out.emplace_back("Watch", c.Watch(0, r, [](const v1::WatchEvent&) { return false; }, nullptr, short_o));
  }
  return out;
}

TEST_F(ServiceTest, OwnerReadsOwnMail) {
  v1::AppendRequest r;
  r.set_mailbox_id("mbx-a");
  r.mutable_folder()->set_name("INBOX");
  r.set_message("Subject: secret of A\r\n\r\nthe plans\r\n");
  auto a = client_->Append(0, r, user_a_);
  ASSERT_TRUE(a.ok()) << a.status();
  v1::FetchRequest f;
  f.set_mailbox_id("mbx-a");
  f.mutable_folder()->set_name("INBOX");
  f.mutable_messages()->mutable_uids()->add_ranges()->set_first(a->uid());
  f.mutable_messages()->mutable_uids()->mutable_ranges(0)->set_last(a->uid());
  f.mutable_items()->set_raw(true);
  auto got = client_->FetchAll(0, f, user_a_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].raw(), "Subject: secret of A\r\n\r\nthe plans\r\n");
  // SELECT in one call: status, every UID, every message's flags.
  v1::SelectFolderRequest sel;
  sel.set_mailbox_id("mbx-a");
  sel.mutable_folder()->set_name("INBOX");
  sel.set_claim_recent(true);
  sel.set_include_uids(true);
  sel.mutable_changes()->set_modseq(0);
  auto selected = client_->SelectFolder(0, sel, user_a_);
  ASSERT_TRUE(selected.ok()) << selected.status();
  EXPECT_EQ(selected->status().folder().messages(), 1u);
  EXPECT_EQ(selected->status().recent_uids().ranges_size(), 1);
  ASSERT_EQ(selected->changes().changed_size(), 1);
  EXPECT_EQ(selected->changes().changed(0).uid(), a->uid());
  // Watch: READY first.
  v1::WatchRequest w;
  w.set_mailbox_id("mbx-a");
  v1::WatchEvent first;
  ASSERT_TRUE(client_->Watch(0, w, [&](const v1::WatchEvent& e) { first = e; return false; }, nullptr, user_a_).ok());
  EXPECT_EQ(first.kind(), v1::WATCH_EVENT_KIND_READY);
  // No token at all.
  msc::CallOptions none;
  none.authorization = "Bearer garbage";
  v1::ListFoldersRequest lf;
  lf.set_mailbox_id("mbx-a");
  EXPECT_EQ(client_->ListFolders(0, lf, none).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ServiceTest, TenantBCannotReachTenantAByAnyRpc) {
  v1::AppendRequest r;
  r.set_mailbox_id("mbx-a");
  r.mutable_folder()->set_name("INBOX");
  r.set_message("Subject: secret of A\r\n\r\nthe plans\r\n");
  ASSERT_TRUE(client_->Append(0, r, user_a_).ok());
  v1::StartArchiveRequest ar;
  ar.set_mailbox_id("mbx-a");
  ar.mutable_older_than()->set_seconds(1);
  auto job = client_->StartArchive(0, ar, user_a_);
  ASSERT_TRUE(job.ok()) << job.status();
  auto missing = EveryRpc(*client_, "no-such-mailbox", user_b_);
  for (const msc::CallOptions* who : {&user_b_, &admin_b_, &sneaky_b_}) {
    auto results = EveryRpc(*client_, "mbx-a", *who);
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& [name, s] = results[i];
      if (name == "DeliverBatch" || name == "SetQuota" || name == "DeleteMailbox") {
        EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << name;  // service-internal
        continue;
      }
      EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << name << ": " << s;
      // Indistinguishable from a mailbox that does not exist (same words).
      EXPECT_EQ(std::string(s.message()).find("mbx-a") != std::string::npos,
                std::string(missing[i].second.message()).find("no-such-mailbox") != std::string::npos)
          << name;
    }
    v1::GetArchiveJobRequest g;
    g.set_job_id(job->job_id());
    EXPECT_EQ(client_->GetArchiveJob(0, g, *who).status().code(), absl::StatusCode::kNotFound);
    v1::GetQuotaRequest tq;
    tq.set_tenant_id("tenant-a");
    EXPECT_EQ(client_->GetQuota(0, tq, *who).status().code(), absl::StatusCode::kNotFound);
    v1::ListRetentionRulesRequest lr;
    lr.set_tenant_id("tenant-a");
    EXPECT_EQ(client_->ListRetentionRules(0, lr, *who).status().code(), absl::StatusCode::kNotFound);
  }
  // A's mail is untouched.
  v1::FolderStatusRequest st;
  st.set_mailbox_id("mbx-a");
  st.mutable_folder()->set_name("INBOX");
  auto status = client_->FolderStatus(0, st, user_a_);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->folder().messages(), 1u);
  // The admin of tenant B reaches B's mailboxes (export), not A's.
  v1::ExportMboxRequest ex;
  ex.set_mailbox_id("mbx-b");
  ex.mutable_folder()->set_name("INBOX");
  EXPECT_TRUE(client_->ExportMbox(0, ex, [](const v1::ExportMboxResponse&) { return true; }, admin_b_).ok());
}

// Many Watch streams on one mailbox (IMAP IDLE sessions): one new message
// reaches every stream, and the streams share the feed reads (WatchHub)
// instead of one read per stream per change.
TEST_F(ServiceTest, ManyWatchStreamsOnOneMailboxShareTheFeedReads) {
  constexpr int kStreams = 40;
  std::atomic<int> ready{0}, added{0};
  std::vector<std::thread> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.emplace_back([&] {
      v1::WatchRequest r;
      r.set_mailbox_id("mbx-a");
      msc::CallOptions o = user_a_;
      o.timeout = absl::Minutes(5);
      (void)client_->Watch(0, r, [&](const v1::WatchEvent& e) {
        if (e.kind() == v1::WATCH_EVENT_KIND_READY) ++ready;
        if (e.kind() != v1::WATCH_EVENT_KIND_MESSAGES_ADDED) return true;
        ++added;
        return false;  // seen: end this stream
      }, nullptr, o);
    });
  }
  while (ready.load() < kStreams) absl::SleepFor(absl::Milliseconds(10));
  uint64_t reads_before = hub_.reads();
  v1::AppendRequest a;
  a.set_mailbox_id("mbx-a");
  a.mutable_folder()->set_name("INBOX");
  a.set_message("Subject: new\r\n\r\nmail\r\n");
  ASSERT_TRUE(client_->Append(0, a, user_a_).ok());
  while (added.load() < kStreams) absl::SleepFor(absl::Milliseconds(10));
  for (auto& t : streams) t.join();
  // Per stream and change there used to be at least one read (and one per
  // 500 ms idle). Shared: the change's read, the re-read after it, and a
  // few from streams that woke behind: far fewer than the streams.
  EXPECT_LT(hub_.reads() - reads_before, static_cast<uint64_t>(kStreams / 2));
}

TEST(WatchHubTest, ConcurrentCallersAtOneCursorShareOneRead) {
  WatchHub hub;
  std::atomic<int> fetches{0};
  absl::Notification release;
  auto fetch = [&](uint64_t* current) -> absl::StatusOr<std::vector<v1::WatchEvent>> {
    ++fetches;
    release.WaitForNotification();
    *current = 7;
    std::vector<v1::WatchEvent> out(1);
    out[0].set_modseq(7);
    return out;
  };
  hub.Notify("m");
  uint64_t gen = hub.Generation("m");
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    callers.emplace_back([&] {
      uint64_t current = 0;
      auto got = hub.Changes("m", 6, gen, absl::InfinitePast(), fetch, &current);
      if (got.ok() && (*got)->size() == 1 && current == 7) ++ok;
    });
  }
  while (fetches.load() == 0) absl::SleepFor(absl::Milliseconds(1));
  absl::SleepFor(absl::Milliseconds(50));  // let the others queue (not required)
  release.Notify();
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok.load(), 16);
  EXPECT_EQ(fetches.load(), 1);
  EXPECT_EQ(hub.reads(), 1u);
  // A newer generation (a commit since) reads again; the same one does not.
  uint64_t current = 0;
  ASSERT_TRUE(hub.Changes("m", 6, gen, absl::InfinitePast(), fetch, &current).ok());
  EXPECT_EQ(fetches.load(), 1);
  hub.Notify("m");
  ASSERT_TRUE(hub.Changes("m", 6, hub.Generation("m"), absl::InfinitePast(), fetch, &current).ok());
  EXPECT_EQ(fetches.load(), 2);
  // A safety-net poll asks for a read from the last moment: a new read.
  ASSERT_TRUE(hub.Changes("m", 6, hub.Generation("m"), absl::Now(), fetch, &current).ok());
  EXPECT_EQ(fetches.load(), 3);
}

TEST(WatchHubTest, WaitReturnsOnNotify) {
  WatchHub hub;
  uint64_t gen = hub.Generation("m");
  std::thread t([&] { hub.Wait("m", gen, absl::Hours(1)); });
  absl::SleepFor(absl::Milliseconds(20));
  hub.Notify("m");
  t.join();  // returns (or the test hangs: no time limit here)
  EXPECT_EQ(hub.Generation("m"), gen + 1);
}

// mailstored's options as main() reads them: flags, then the environment,
// then Finish's checks (services/mailstore/config.cc).
absl::StatusOr<Options> ParseMailstoredFlags(std::vector<const char*> argv,
                                             std::vector<const char*> env = {}) {
  Options options;
  config::Flags flags("mailstored");
  AddFlags(flags, options);
  argv.insert(argv.begin(), "mailstored");
  env.push_back(nullptr);
  absl::Status parsed = flags.Parse(static_cast<int>(argv.size()), argv.data(), env.data());
  if (!parsed.ok()) return parsed;
  absl::Status valid = Finish(options);
  if (!valid.ok()) return valid;
  return options;
}

TEST(IndexIntervalFlag, DefaultFlagAndEnvironment) {
  auto by_default = ParseMailstoredFlags({});
  ASSERT_TRUE(by_default.ok()) << by_default.status();
  EXPECT_EQ(by_default->index_interval, absl::Milliseconds(200));
  auto flag = ParseMailstoredFlags({"--index-interval=50ms"});
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_EQ(flag->index_interval, absl::Milliseconds(50));
  auto env = ParseMailstoredFlags({}, {"MAILGRID_INDEX_INTERVAL=2s"});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->index_interval, absl::Seconds(2));
}

TEST(IndexIntervalFlag, OutOfRangeOrMalformedIsRefusedNamingTheFlag) {
  for (const char* bad : {"--index-interval=0s", "--index-interval=-5ms", "--index-interval=2m",
                          "--index-interval=soon"}) {
    auto options = ParseMailstoredFlags({bad});
    ASSERT_FALSE(options.ok()) << bad;
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(options.status().message().find("index-interval"), std::string::npos)
        << bad << ": " << options.status();
  }
}

}  // namespace
}  // namespace mailgrid::mailstore
