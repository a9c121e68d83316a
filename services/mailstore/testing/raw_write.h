// Test helper for tests that write folder records straight into the store.
#ifndef MAILGRID_SERVICES_MAILSTORE_TESTING_RAW_WRITE_H_
#define MAILGRID_SERVICES_MAILSTORE_TESTING_RAW_WRITE_H_

#include <gtest/gtest.h>

#include "libs/store/store.h"
#include "services/mailstore/keys.h"

namespace mailgrid::mailstore::testing {

// Adds the mailbox record, unchanged, to a raw write of its folder records:
// every mailstored writer rewrites it with its folders, and LoadMailbox's
// folder-list cache is keyed by its version.
inline void WithMailboxRecord(store::Store* kv, kv::v1::WriteRequest* w,
                              const std::string& tenant = "tenant-a",
                              const std::string& mailbox = "mbx-a") {
  kv::v1::GetRequest g;
  g.set_key(keys::Mailbox(tenant, mailbox));
  auto got = kv->Get(g, absl::InfiniteFuture());
  ASSERT_TRUE(got.ok() && got->found());
  auto* p = w->add_ops()->mutable_put();
  p->set_key(g.key());
  p->set_value(got->value());
}

}  // namespace mailgrid::mailstore::testing

#endif  // MAILGRID_SERVICES_MAILSTORE_TESTING_RAW_WRITE_H_
