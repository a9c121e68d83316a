// Completer: which answers run on the owner's thread and which on its own.
#include "libs/replica/completer.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace mailgrid::replica {
namespace {

// Records the thread each function ran on.
struct Runs {
  absl::Mutex mu;
  std::vector<std::thread::id> threads ABSL_GUARDED_BY(mu);

  std::function<void()> Record() {
    return [this] {
      absl::MutexLock lock(&mu);
      threads.push_back(std::this_thread::get_id());
    };
  }
  // Waits (generously) until `n` ran; their threads.
  std::vector<std::thread::id> WaitFor(size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return threads.size() >= n; };
    mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(60));
    return threads;
  }
};

TEST(CompleterTest, ASingleInlinableAnswerRunsOnTheFlushingThread) {
  Completer c;
  Runs runs;
  c.Add(runs.Record(), /*inlinable=*/true);
  c.Flush();
  std::vector<std::thread::id> t = runs.WaitFor(1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0], std::this_thread::get_id());
  EXPECT_EQ(c.ran_inline(), 1u);
}

TEST(CompleterTest, SeveralAnswersGoToTheCompleterThread) {
  Completer c;
  Runs runs;
  c.Add(runs.Record(), /*inlinable=*/true);
  c.Add(runs.Record(), /*inlinable=*/true);
  c.Flush();
  std::vector<std::thread::id> t = runs.WaitFor(2);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_NE(t[0], std::this_thread::get_id());
  EXPECT_EQ(t[0], t[1]);
  EXPECT_EQ(c.ran_inline(), 0u);
}

TEST(CompleterTest, AnythingNotInlinableGoesToTheCompleterThread) {
  Completer c;
  Runs runs;
  c.Add(runs.Record());  // e.g. a linearizable read, whose state machine read runs there
  c.Flush();
  std::vector<std::thread::id> t = runs.WaitFor(1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_NE(t[0], std::this_thread::get_id());
  // A read first, then a writer: both go together.
  c.Add(runs.Record());
  c.Add(runs.Record(), /*inlinable=*/true);
  c.Flush();
  t = runs.WaitFor(3);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_NE(t[1], std::this_thread::get_id());
  EXPECT_NE(t[2], std::this_thread::get_id());
  EXPECT_EQ(c.ran_inline(), 0u);
}

TEST(CompleterTest, StopRunsWhatIsQueued) {
  Runs runs;
  {
    Completer c;
    c.Add(runs.Record());
    c.Add(runs.Record());
    c.Stop();
  }
  EXPECT_EQ(runs.WaitFor(2).size(), 2u);
}

}  // namespace
}  // namespace mailgrid::replica
