#include "libs/store/local_store.h"

#include <filesystem>

#include "gtest/gtest.h"

namespace mailgrid::store {
namespace {

std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/local_store_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

kv::v1::WriteRequest PutIfAbsent(const std::string& key, const std::string& value) {
  kv::v1::WriteRequest w;
  auto* c = w.add_conditions();
  c->set_key(key);
  c->set_kind(kv::v1::Condition::MUST_NOT_EXIST);
  auto* put = w.add_ops()->mutable_put();
  put->set_key(key);
  put->set_value(value);
  return w;
}

TEST(LocalStoreTest, WritesReadsAndConditions) {
  auto store = LocalStore::Open(FreshDir("basic"));
  ASSERT_TRUE(store.ok()) << store.status();
  absl::Time deadline = absl::InfiniteFuture();
  auto first = (*store)->Write(PutIfAbsent("t/1/a", "x"), deadline);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->has_ok());
  auto second = (*store)->Write(PutIfAbsent("t/1/a", "y"), deadline);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->has_condition_failed());
  EXPECT_EQ(second->condition_failed().current_value(), "x");

  kv::v1::GetRequest get;
  get.set_key("t/1/a");
  auto got = (*store)->Get(get, deadline);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->found());
  EXPECT_EQ(got->value(), "x");
  EXPECT_EQ(got->version(), first->applied_index());

  ASSERT_TRUE((*store)->Write(PutIfAbsent("t/1/b", "z"), deadline).ok());
  ASSERT_TRUE((*store)->Write(PutIfAbsent("t/2/a", "other tenant"), deadline).ok());
  kv::v1::ScanRequest scan;
  scan.set_prefix("t/1/");
  auto page = (*store)->Scan(scan, deadline);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->entries_size(), 2);
  EXPECT_EQ(page->entries(0).key(), "t/1/a");
  EXPECT_EQ(page->entries(1).key(), "t/1/b");
}

TEST(LocalStoreTest, InvalidWriteNamesTheField) {
  auto store = LocalStore::Open(FreshDir("invalid"));
  ASSERT_TRUE(store.ok());
  kv::v1::WriteRequest w;
  w.add_ops()->mutable_put()->set_value("no key");
  auto r = (*store)->Write(w, absl::InfiniteFuture());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("ops[0]"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace mailgrid::store
