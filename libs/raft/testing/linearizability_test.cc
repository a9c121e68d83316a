#include "libs/raft/testing/linearizability.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mailgrid::raft::testing {
namespace {

KvOp Put(int client, std::string key, std::string value, int64_t invoke, int64_t ret) {
  KvOp op;
  op.client = client;
  op.kind = KvOp::Kind::kPut;
  op.key = std::move(key);
  op.value = std::move(value);
  op.invoke = invoke;
  op.ret = ret;
  return op;
}

KvOp UnknownPut(int client, std::string key, std::string value, int64_t invoke) {
  KvOp op = Put(client, std::move(key), std::move(value), invoke, 0);
  op.unknown = true;
  return op;
}

KvOp Get(int client, std::string key, std::string value, int64_t invoke, int64_t ret) {
  KvOp op;
  op.client = client;
  op.kind = KvOp::Kind::kGet;
  op.key = std::move(key);
  op.value = std::move(value);
  op.invoke = invoke;
  op.ret = ret;
  return op;
}

KvOp GetAbsent(int client, std::string key, int64_t invoke, int64_t ret) {
  KvOp op = Get(client, std::move(key), "", invoke, ret);
  op.found = false;
  return op;
}

std::string Val(int round, int client) {
  return "r" + std::to_string(round) + "c" + std::to_string(client);
}

TEST(Linearizability, EmptyHistoryIsLinearizable) { EXPECT_TRUE(CheckKvLinearizable({}).ok()); }

TEST(Linearizability, SequentialReadYourWrite) {
  std::vector<KvOp> h = {GetAbsent(1, "k", 0, 1), Put(1, "k", "a", 2, 3), Get(1, "k", "a", 4, 5),
                         Put(2, "k", "b", 6, 7), Get(2, "k", "b", 8, 9)};
  EXPECT_TRUE(CheckKvLinearizable(h).ok());
}

TEST(Linearizability, StaleReadAfterCompletedWriteIsViolation) {
  // put(a) finished at 3; a get starting at 10 still sees absent.
  std::vector<KvOp> h = {Put(1, "k", "a", 0, 3), GetAbsent(2, "k", 10, 12)};
  CheckResult r = CheckKvLinearizable(h);
  ASSERT_EQ(r.outcome, CheckResult::Outcome::kViolation);
  EXPECT_EQ(r.key, "k");
  EXPECT_EQ(r.offending.size(), 2u);
  EXPECT_NE(r.report.find("get(k) -> <absent>"), std::string::npos) << r.report;
}

TEST(Linearizability, ConcurrentReadMaySeeEitherValue) {
  // The get overlaps the put: absent and "a" are both fine.
  EXPECT_TRUE(CheckKvLinearizable({Put(1, "k", "a", 0, 10), GetAbsent(2, "k", 2, 4)}).ok());
  EXPECT_TRUE(CheckKvLinearizable({Put(1, "k", "a", 0, 10), Get(2, "k", "a", 2, 4)}).ok());
}

TEST(Linearizability, ReadsMustNotGoBackInTime) {
  // Two sequential reads during a long put: "a" then absent is impossible.
  std::vector<KvOp> h = {Put(1, "k", "a", 0, 100), Get(2, "k", "a", 10, 20),
                         GetAbsent(2, "k", 30, 40)};
  EXPECT_EQ(CheckKvLinearizable(h).outcome, CheckResult::Outcome::kViolation);
}

TEST(Linearizability, ConcurrentWritesNeedConsistentOrder) {
  // Puts a and b overlap. Reader 2 sees a then b, reader 3 sees b then a,
  // both after both puts finished: no single order explains both.
  std::vector<KvOp> h = {Put(1, "k", "a", 0, 10),  Put(4, "k", "b", 0, 10),
                         Get(2, "k", "a", 11, 12), Get(2, "k", "b", 13, 14),
                         Get(3, "k", "b", 11, 12), Get(3, "k", "a", 13, 14)};
  EXPECT_EQ(CheckKvLinearizable(h).outcome, CheckResult::Outcome::kViolation);
  // During the writes the value may still move from a to b.
  std::vector<KvOp> ok = {Put(1, "k", "a", 0, 10), Put(4, "k", "b", 0, 10), Get(2, "k", "a", 2, 3),
                          Get(2, "k", "b", 11, 12), Get(3, "k", "b", 11, 12)};
  EXPECT_TRUE(CheckKvLinearizable(ok).ok());
}

TEST(Linearizability, UnknownPutMayOrMayNotHappen) {
  // Never observed: fine.
  EXPECT_TRUE(CheckKvLinearizable({UnknownPut(1, "k", "a", 0), GetAbsent(2, "k", 50, 60)}).ok());
  // Observed long after it timed out: also fine (it took effect late).
  EXPECT_TRUE(CheckKvLinearizable(
                  {UnknownPut(1, "k", "a", 0), GetAbsent(2, "k", 50, 60), Get(2, "k", "a", 70, 80)})
                  .ok());
  // But it cannot be observed before it was invoked.
  EXPECT_EQ(CheckKvLinearizable({Get(2, "k", "a", 0, 5), UnknownPut(1, "k", "a", 10)}).outcome,
            CheckResult::Outcome::kViolation);
}

TEST(Linearizability, ValueNeverWrittenIsViolation) {
  EXPECT_EQ(CheckKvLinearizable({Put(1, "k", "a", 0, 1), Get(2, "k", "zzz", 2, 3)}).outcome,
            CheckResult::Outcome::kViolation);
}

TEST(Linearizability, UnknownGetsAreIgnored) {
  KvOp g = Get(2, "k", "garbage", 5, 6);
  g.unknown = true;
  EXPECT_TRUE(CheckKvLinearizable({Put(1, "k", "a", 0, 1), g}).ok());
}

TEST(Linearizability, KeysAreIndependent) {
  std::vector<KvOp> h = {Put(1, "x", "1", 0, 1), Put(1, "y", "2", 2, 3), Get(2, "x", "1", 4, 5),
                         GetAbsent(2, "z", 4, 5), Get(2, "y", "2", 6, 7)};
  EXPECT_TRUE(CheckKvLinearizable(h).ok());
  h.push_back(GetAbsent(3, "y", 8, 9));
  CheckResult r = CheckKvLinearizable(h);
  ASSERT_EQ(r.outcome, CheckResult::Outcome::kViolation);
  EXPECT_EQ(r.key, "y");
}

TEST(Linearizability, MinimizesToTheOffendingOperations) {
  // A long valid history on k with one lost write buried in it.
  std::vector<KvOp> h;
  int64_t t = 0;
  for (int i = 0; i < 40; ++i) {
    h.push_back(Put(1, "k", "v" + std::to_string(i), t, t + 1));
    h.push_back(Get(2, "k", "v" + std::to_string(i), t + 2, t + 3));
    t += 4;
  }
  // v40 is acknowledged, then a read returns the older v39.
  h.push_back(Put(1, "k", "v40", t, t + 1));
  h.push_back(Get(2, "k", "v39", t + 2, t + 3));
  CheckResult r = CheckKvLinearizable(h);
  ASSERT_EQ(r.outcome, CheckResult::Outcome::kViolation);
  // put(v39), put(v40), get -> v39 is the essence.
  ASSERT_EQ(r.offending.size(), 3u) << r.report;
  int puts = 0;
  for (const KvOp& op : r.offending) puts += op.kind == KvOp::Kind::kPut ? 1 : 0;
  EXPECT_EQ(puts, 2);
  EXPECT_NE(r.report.find("put(k, v40)"), std::string::npos) << r.report;
}

TEST(Linearizability, ManyConcurrentClientsStayTractable) {
  // 8 clients, each writing its own values with wide overlapping windows,
  // readers observing a legal sequence: memoization keeps this fast.
  std::vector<KvOp> h;
  for (int round = 0; round < 30; ++round) {
    const int64_t base = round * 100;
    for (int c = 0; c < 8; ++c) {
      h.push_back(Put(c, "k", Val(round, c), base + c, base + 50 + c));
    }
    h.push_back(Get(9, "k", Val(round, 7), base + 60, base + 70));
  }
  EXPECT_TRUE(CheckKvLinearizable(h).ok());
}

}  // namespace
}  // namespace mailgrid::raft::testing
