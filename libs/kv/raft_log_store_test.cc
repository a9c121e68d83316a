#include "libs/kv/raft_log_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/kv/keys.h"
#include "libs/kv/kv_test_util.h"
#include "libs/kv/state_machine.h"

namespace mailgrid::kv {
namespace {

using raft::Entry;
using ::testing::ElementsAre;

Entry E(raft::Index index, raft::Term term, std::string data = "") {
  if (data.empty()) data = absl::StrCat("entry-", index, "-", term);
  return Entry{term, index, Entry::Type::kNormal, std::move(data)};
}

std::vector<Entry> Range(raft::Index from, raft::Index to, raft::Term term) {
  std::vector<Entry> out;
  for (raft::Index i = from; i <= to; ++i) out.push_back(E(i, term));
  return out;
}

std::vector<raft::Index> Indexes(const std::vector<Entry>& entries) {
  std::vector<raft::Index> out;
  for (const Entry& e : entries) out.push_back(e.index);
  return out;
}

class Node {
 public:
  explicit Node(std::string path, RaftLogStoreOptions options = {}, rocksdb::Env* env = nullptr)
      : path_(std::move(path)), options_(options), env_(env) {
    Open();
  }
  void Open() {
    EngineOptions eo;
    eo.env = env_;
    auto engine = Engine::Open(path_, eo);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    auto log = RaftLogStore::Open(engine_.get(), options_);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
  }
  // Closes without flushing memtables (with the WAL on, RocksDB does not
  // flush at close): reopening replays the WAL, as after a kill.
  void Reopen() {
    log_.reset();
    engine_.reset();
    Open();
  }
  RaftLogStore& log() { return *log_; }
  Engine& engine() { return *engine_; }

 private:
  std::string path_;
  RaftLogStoreOptions options_;
  rocksdb::Env* env_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<RaftLogStore> log_;
};

TEST(RaftLogStoreTest, FreshLogIsEmpty) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  EXPECT_EQ(n.log().FirstIndex(), 1u);
  EXPECT_EQ(n.log().LastIndex(), 0u);
  EXPECT_EQ(*n.log().Term(0), 0u);
  EXPECT_TRUE(raft::IsLogUnavailable(n.log().Term(1).status()));
  auto init = n.log().GetInitialState();
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->hard_state, raft::HardState{});
}

TEST(RaftLogStoreTest, AppendPersistsAcrossReopen) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Append(Range(1, 5, 1), raft::HardState{1, 2, 3}).ok());
  ASSERT_TRUE(n.log().Append(Range(6, 8, 2), raft::HardState{2, 3, 6}).ok());
  n.Reopen();
  EXPECT_EQ(n.log().FirstIndex(), 1u);
  EXPECT_EQ(n.log().LastIndex(), 8u);
  EXPECT_EQ(n.log().hard_state(), (raft::HardState{2, 3, 6}));
  auto all = n.log().Entries(1, 9, UINT64_MAX);
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<Entry> want = Range(1, 5, 1);
  for (const Entry& e : Range(6, 8, 2)) want.push_back(e);
  EXPECT_EQ(*all, want);
  EXPECT_EQ(*n.log().Term(5), 1u);
  EXPECT_EQ(*n.log().Term(6), 2u);
}

TEST(RaftLogStoreTest, EntriesHonoursBoundsAndByteLimit) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Append(Range(1, 10, 1), std::nullopt).ok());
  EXPECT_TRUE(raft::IsLogUnavailable(n.log().Entries(5, 12, UINT64_MAX).status()));
  auto one = n.log().Entries(3, 10, 0);  // always at least one entry
  ASSERT_TRUE(one.ok());
  EXPECT_THAT(Indexes(*one), ElementsAre(3));
  uint64_t two = raft::EntrySize(E(3, 1)) + raft::EntrySize(E(4, 1));
  auto some = n.log().Entries(3, 10, two);
  ASSERT_TRUE(some.ok());
  EXPECT_THAT(Indexes(*some), ElementsAre(3, 4));
}

TEST(RaftLogStoreTest, ConflictingSuffixIsTruncated) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Append(Range(1, 10, 1), std::nullopt).ok());
  // A new leader overwrites from 6 with a shorter suffix of term 2.
  ASSERT_TRUE(n.log().Append(Range(6, 7, 2), std::nullopt).ok());
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(n.log().LastIndex(), 7u);
    EXPECT_EQ(*n.log().Term(5), 1u);
    EXPECT_EQ(*n.log().Term(6), 2u);
    EXPECT_TRUE(raft::IsLogUnavailable(n.log().Term(8).status()));
    auto all = n.log().Entries(1, 8, UINT64_MAX);
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(all->back(), E(7, 2));
    n.Reopen();  // the truncation is durable too
  }
  // Appending beyond the end leaves a gap: refused.
  EXPECT_TRUE(absl::IsInvalidArgument(n.log().Append(Range(9, 9, 2), std::nullopt)));
}

TEST(RaftLogStoreTest, CompactionKeepsTheTermOfTheCompactionPoint) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Append(Range(1, 4, 1), std::nullopt).ok());
  ASSERT_TRUE(n.log().Append(Range(5, 10, 2), std::nullopt).ok());
  // Compaction needs a snapshot at or beyond the point.
  EXPECT_TRUE(absl::IsFailedPrecondition(n.log().Compact(5)));
  raft::ConfState conf{{1, 2, 3}, {}};
  auto meta = n.log().CreateSnapshot(6, conf);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(*meta, (raft::SnapshotMeta{6, 2, conf}));
  ASSERT_TRUE(n.log().Compact(5).ok());
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(n.log().FirstIndex(), 6u);
    EXPECT_EQ(n.log().LastIndex(), 10u);
    EXPECT_EQ(*n.log().Term(5), 2u);  // the compaction point keeps its term
    EXPECT_TRUE(raft::IsLogCompacted(n.log().Term(4).status()));
    EXPECT_TRUE(raft::IsLogCompacted(n.log().Entries(5, 8, UINT64_MAX).status()));
    auto rest = n.log().Entries(6, 11, UINT64_MAX);
    ASSERT_TRUE(rest.ok());
    EXPECT_THAT(Indexes(*rest), ElementsAre(6, 7, 8, 9, 10));
    EXPECT_EQ(*n.log().Snapshot(), (raft::SnapshotMeta{6, 2, conf}));
    n.Reopen();
  }
  EXPECT_TRUE(raft::IsLogCompacted(n.log().Compact(5)));
  // Entries the snapshot covers are skipped by an append.
  ASSERT_TRUE(n.log().Append(Range(4, 11, 2), std::nullopt).ok());
  EXPECT_EQ(n.log().FirstIndex(), 6u);
  EXPECT_EQ(n.log().LastIndex(), 11u);
}

TEST(RaftLogStoreTest, ApproximateBytesGrowsWithTheEntriesAndDropsWithCompaction) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  // 200 entries of 64 KiB (incompressible enough: random bytes), 12.5 MiB.
  std::mt19937 rng(7);
  std::vector<Entry> entries;
  for (raft::Index i = 1; i <= 200; ++i) {
    std::string data(64 << 10, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    entries.push_back(E(i, 1, std::move(data)));
  }
  ASSERT_EQ(n.log().Append(entries, raft::HardState{1, raft::kNoNode, 200}), absl::OkStatus());
  // While the entries are in the memtable the estimate is RocksDB's
  // sampling of it: the whole is within a factor of two of the 12.5 MiB
  // written, but a part of it can be off by more (a tenth was estimated at
  // half of the whole), which is why the replica also counts the bytes it
  // applies (Replica::CompactionKeep).
  const uint64_t all = n.log().ApproximateBytes(1, 200);
  EXPECT_GT(all, 200ull * (64 << 10) / 2);
  EXPECT_LT(all, 200ull * (64 << 10) * 2);
  EXPECT_EQ(n.log().ApproximateBytes(5, 4), 0u);
  // From table files the estimate follows the keys: a tenth of the entries
  // well below all of them, and after compaction the live range (20
  // entries) well below the whole.
  rocksdb::FlushOptions flush;
  ASSERT_TRUE(n.engine().db()->Flush(flush, n.engine().raft_log()).ok());
  const uint64_t flushed = n.log().ApproximateBytes(1, 200);
  EXPECT_GT(flushed, 200ull * (64 << 10) / 2);
  EXPECT_LT(n.log().ApproximateBytes(1, 20), flushed / 4);
  ASSERT_TRUE(n.log().CreateSnapshot(190, raft::ConfState{{1}, {}}).ok());
  ASSERT_EQ(n.log().Compact(180), absl::OkStatus());
  EXPECT_LT(n.log().ApproximateBytes(n.log().FirstIndex(), 200), flushed / 4);
}

TEST(RaftLogStoreTest, ApplySnapshotReplacesTheLog) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Append(Range(1, 10, 1), raft::HardState{1, 1, 10}).ok());
  raft::SnapshotMeta snap{50, 3, raft::ConfState{{1, 2, 3}, {4}}};
  ASSERT_TRUE(n.log().Save(snap, Range(51, 52, 3), raft::HardState{3, 0, 50}).ok());
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(n.log().FirstIndex(), 51u);
    EXPECT_EQ(n.log().LastIndex(), 52u);
    EXPECT_EQ(*n.log().Term(50), 3u);
    EXPECT_TRUE(raft::IsLogCompacted(n.log().Term(10).status()));
    EXPECT_EQ(*n.log().Snapshot(), snap);
    EXPECT_EQ(n.log().hard_state(), (raft::HardState{3, 0, 50}));
    n.Reopen();
  }
  EXPECT_TRUE(absl::IsFailedPrecondition(n.log().ApplySnapshot(raft::SnapshotMeta{40, 3, {}})));
}

TEST(RaftLogStoreTest, Bootstrap) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Bootstrap({1, 2, 3}).ok());
  EXPECT_EQ(n.log().LastIndex(), 3u);
  EXPECT_EQ(n.log().hard_state(), (raft::HardState{1, raft::kNoNode, 3}));
  auto entries = n.log().Entries(1, 4, UINT64_MAX);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(*entries, raft::BootstrapEntries({1, 2, 3}));
  EXPECT_TRUE(absl::IsFailedPrecondition(n.log().Bootstrap({1})));
}

TEST(RaftLogStoreTest, CorruptedEntryIsDetectedAndNeverReturned) {
  testing::TempDir tmp;
  RaftLogStoreOptions small;
  small.cache_entries = 2;  // so entry 3 is read from disk
  Node n(tmp.Sub("db"), small);
  ASSERT_TRUE(n.log().Append(Range(1, 10, 1), std::nullopt).ok());

  rocksdb::DB* db = n.engine().db();
  std::string raw;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), n.engine().raft_log(), EncodeUint64(3), &raw).ok());
  raw[raw.size() - 1] ^= 0x01;  // one bit of the payload
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), n.engine().raft_log(), EncodeUint64(3), raw).ok());

  auto entries = n.log().Entries(1, 11, UINT64_MAX);
  EXPECT_TRUE(absl::IsDataLoss(entries.status())) << entries.status();
  EXPECT_TRUE(absl::IsDataLoss(n.log().Term(3).status()));
  auto before = n.log().Entries(1, 3, UINT64_MAX);  // the intact prefix is fine
  ASSERT_TRUE(before.ok());
  EXPECT_THAT(Indexes(*before), ElementsAre(1, 2));

  // An intact entry stored under the wrong index is refused too.
  std::string four;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), n.engine().raft_log(), EncodeUint64(4), &four).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), n.engine().raft_log(), EncodeUint64(5), four).ok());
  EXPECT_TRUE(absl::IsDataLoss(n.log().Term(5).status()));
}

// The store must answer exactly like raft::MemoryStorage, the core's
// reference, whatever mix of appends, truncations, snapshots and compactions
// it went through, and whether an answer comes from the cache or from disk.
TEST(RaftLogStoreTest, BehavesLikeMemoryStorageUnderRandomOperations) {
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    testing::TempDir tmp;
    RaftLogStoreOptions small;
    small.cache_entries = 7;
    Node n(tmp.Sub("db"), small);
    raft::MemoryStorage model;
    std::mt19937 rng(seed);
    auto pick = [&](uint64_t lo, uint64_t hi) {  // inclusive
      return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
    };
    raft::Term term = 1;
    for (int step = 0; step < 150; ++step) {
      int op = static_cast<int>(pick(0, 9));
      if (op <= 5) {  // append, maybe overwriting a suffix
        raft::Index from = pick(model.FirstIndex(), model.LastIndex() + 1);
        if (pick(0, 3) == 0) ++term;
        std::vector<Entry> es = Range(from, from + pick(0, 6), term);
        ASSERT_EQ(n.log().Append(es, std::nullopt).ok(), model.Append(es).ok());
      } else if (op == 6 && model.LastIndex() > 0) {  // snapshot point + compaction
        raft::Index snap = pick(model.FirstIndex() - 1, model.LastIndex());
        raft::ConfState conf{{1}, {}};
        auto a = n.log().CreateSnapshot(snap, conf);
        auto b = model.CreateSnapshot(snap, conf);
        ASSERT_EQ(a.ok(), b.ok());
        if (a.ok()) {
          EXPECT_EQ(*a, *b);
        }
        raft::Index upto = pick(model.FirstIndex() - 1, (*model.Snapshot()).index);
        ASSERT_EQ(n.log().Compact(upto).code(), model.Compact(upto).code());
      } else if (op == 7) {  // a received snapshot beyond everything
        raft::SnapshotMeta meta{model.LastIndex() + pick(1, 5), ++term, {{1, 2}, {}}};
        ASSERT_EQ(n.log().ApplySnapshot(meta).ok(), model.ApplySnapshot(meta).ok());
      } else if (op == 8) {
        n.Reopen();
      }
      ASSERT_EQ(n.log().FirstIndex(), model.FirstIndex()) << "seed " << seed << " step " << step;
      ASSERT_EQ(n.log().LastIndex(), model.LastIndex()) << "seed " << seed << " step " << step;
      for (int probe = 0; probe < 5; ++probe) {
        raft::Index lo =
            pick(model.FirstIndex() > 1 ? model.FirstIndex() - 2 : 0, model.LastIndex() + 1);
        raft::Index hi = pick(lo, model.LastIndex() + 2);
        uint64_t budget = pick(0, 200);
        auto got = n.log().Entries(lo, hi, budget);
        auto want = model.Entries(lo, hi, budget);
        ASSERT_EQ(got.status().code(), want.status().code())
            << "seed " << seed << " step " << step << " [" << lo << "," << hi << ")";
        if (got.ok()) {
          ASSERT_EQ(*got, *want) << "seed " << seed << " step " << step;
        }
        auto gt = n.log().Term(lo);
        auto wt = model.Term(lo);
        ASSERT_EQ(gt.status().code(), wt.status().code()) << "term " << lo;
        if (gt.ok()) {
          ASSERT_EQ(*gt, *wt);
        }
      }
    }
  }
}

TEST(RaftLogStoreTest, OneFsyncPerReady) {
  testing::TempDir tmp;
  testing::DiskFullEnv env;
  Node n(tmp.Sub("db"), {}, env.env.get());
  int before = env.fs->wal_syncs();
  std::vector<Entry> batch = Range(1, 500, 1);
  ASSERT_TRUE(n.log().Append(batch, raft::HardState{1, 1, 0}).ok());
  EXPECT_EQ(env.fs->wal_syncs() - before, 1);

  // State machine applies do not fsync; the next log write covers them.
  auto sm = StateMachine::Open(&n.engine());
  ASSERT_TRUE(sm.ok());
  before = env.fs->wal_syncs();
  for (raft::Index i = 1; i <= 20; ++i) ASSERT_TRUE((*sm)->ApplyNoop(i, 1).ok());
  EXPECT_EQ(env.fs->wal_syncs() - before, 0);
}

TEST(RaftLogStoreTest, DiskFullRefusesTheAppendAndKeepsTheLogReadable) {
  testing::TempDir tmp;
  testing::DiskFullEnv env;
  Node n(tmp.Sub("db"), {}, env.env.get());
  ASSERT_TRUE(n.log().Append(Range(1, 5, 1), raft::HardState{1, 1, 5}).ok());
  env.fs->SetFull(true);
  absl::Status s = n.log().Append(Range(6, 9, 1), raft::HardState{1, 1, 9});
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_EQ(n.log().LastIndex(), 5u);
  EXPECT_EQ(n.log().hard_state(), (raft::HardState{1, 1, 5}));
  auto entries = n.log().Entries(1, 6, UINT64_MAX);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->size(), 5u);

  env.fs->SetFull(false);
  for (int attempt = 0; attempt < 1200; ++attempt) {
    n.engine().Resume().IgnoreError();
    s = n.log().Append(Range(6, 9, 1), raft::HardState{1, 1, 9});
    if (s.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(s.ok()) << s;
  n.Reopen();
  EXPECT_EQ(n.log().LastIndex(), 9u);
}

// ---- the log and the state machine in one engine ----

v1::WriteRequest PutRequest(const std::string& key, const std::string& value) {
  v1::WriteRequest r;
  r.add_ops()->mutable_put()->set_key(key);
  r.mutable_ops(0)->mutable_put()->set_value(value);
  return r;
}

TEST(RaftLogStoreTest, InitialStateCarriesTheAppliedMembership) {
  testing::TempDir tmp;
  Node n(tmp.Sub("db"));
  ASSERT_TRUE(n.log().Bootstrap({1, 2}).ok());
  auto sm = StateMachine::Open(&n.engine());
  ASSERT_TRUE(sm.ok());
  ASSERT_TRUE((*sm)->ApplyConfState(1, 1, ToProto(raft::ConfState{{1}, {}})).ok());
  ASSERT_TRUE((*sm)->ApplyConfState(2, 1, ToProto(raft::ConfState{{1, 2}, {}})).ok());
  sm->reset();
  n.Reopen();
  auto init = n.log().GetInitialState();
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->conf_state, (raft::ConfState{{1, 2}, {}}));
  EXPECT_EQ(init->hard_state, (raft::HardState{1, raft::kNoNode, 2}));
}

TEST(RaftLogStoreTest, OpenFinishesASnapshotInstallInterruptedAfterTheStateMachine) {
  testing::TempDir tmp;
  // A leader's state at index 50, term 3, as a snapshot.
  std::string snap_dir = tmp.Sub("snap");
  {
    auto engine = Engine::Open(tmp.Sub("leader"));
    ASSERT_TRUE(engine.ok());
    auto sm = StateMachine::Open(engine->get());
    ASSERT_TRUE(sm.ok());
    for (raft::Index i = 1; i <= 49; ++i) {
      ASSERT_TRUE(
          (*sm)->Apply(i, 3, PutRequest(absl::StrCat("k", i), "v").SerializeAsString()).ok());
    }
    ASSERT_TRUE((*sm)->ApplyConfState(50, 3, ToProto(raft::ConfState{{1, 2, 3}, {}})).ok());
    ASSERT_TRUE((*sm)->CreateSnapshot(snap_dir).ok());
  }
  // A follower with an old, divergent log restores the state machine, then
  // "crashes" before the log store records the snapshot.
  Node n(tmp.Sub("follower"));
  ASSERT_TRUE(n.log().Append(Range(1, 10, 1), raft::HardState{2, 1, 8}).ok());
  {
    auto sm = StateMachine::Open(&n.engine());
    ASSERT_TRUE(sm.ok());
    ASSERT_TRUE((*sm)->RestoreFromSnapshot(snap_dir).ok());
  }
  n.Reopen();
  EXPECT_EQ(n.log().FirstIndex(), 51u);
  EXPECT_EQ(n.log().LastIndex(), 50u);
  EXPECT_EQ(*n.log().Term(50), 3u);
  EXPECT_EQ(n.log().Snapshot()->index, 50u);
  raft::HardState hs = n.log().hard_state();
  EXPECT_EQ(hs.commit, 50u);
  EXPECT_EQ(hs.term, 3u);
  EXPECT_EQ(hs.vote, 1u);  // a vote is never dropped
  EXPECT_EQ(n.log().GetInitialState()->conf_state, (raft::ConfState{{1, 2, 3}, {}}));
}

// ---- a real crash: the process dies without closing anything ----

void AppendThenDie(const std::string& path) {
  auto engine = Engine::Open(path);
  if (!engine.ok()) _exit(2);
  auto log = RaftLogStore::Open(engine->get());
  if (!log.ok()) _exit(3);
  for (raft::Index i = 1; i <= 100; i += 10) {
    if (!(*log)->Append(Range(i, i + 9, 1), raft::HardState{1, 1, i + 9}).ok()) _exit(4);
  }
  _exit(0);  // no destructors, no flush, no close
}

TEST(RaftLogStoreCrashTest, SyncedAppendsSurviveAKill) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The threadsafe death test re-executes this test in a child process; the
  // directory travels in the environment so both use the same one.
  constexpr char kVar[] = "MAILGRID_KV_CRASH_DIR";
  std::unique_ptr<testing::TempDir> tmp;
  if (getenv(kVar) == nullptr) {
    tmp = std::make_unique<testing::TempDir>();
    setenv(kVar, tmp->path().c_str(), 1);
  }
  std::string path = std::string(getenv(kVar)) + "/db";
  EXPECT_EXIT(AppendThenDie(path), ::testing::ExitedWithCode(0), "");
  unsetenv(kVar);

  Node n(path);
  EXPECT_EQ(n.log().LastIndex(), 100u);
  EXPECT_EQ(n.log().hard_state(), (raft::HardState{1, 1, 100}));
  auto all = n.log().Entries(1, 101, UINT64_MAX);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, Range(1, 100, 1));
}

}  // namespace
}  // namespace mailgrid::kv
