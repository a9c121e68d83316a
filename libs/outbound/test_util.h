// Shared by the outbound tests: a fresh LocalStore in a temp dir.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "libs/store/local_store.h"

namespace mailgrid::outbound::testing {

inline std::unique_ptr<store::LocalStore> FreshStore(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/outbound_" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  auto store = store::LocalStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

inline const char* kMessage =
    "From: Alice <alice@example.org>\r\n"
    "To: bob@dest.test\r\n"
    "Subject: hello there\r\n"
    "Message-ID: <m1@example.org>\r\n"
    "\r\n"
    "Body line one.\r\n"
    ".leading dot\r\n";

}  // namespace mailgrid::outbound::testing
