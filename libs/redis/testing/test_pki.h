// Test helper: a throw-away PKI made with the `openssl` command line, for
// tests of TLS to a real redis-server. Never used by a service.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace mailgrid::redis::testing {

struct TestPki {
  std::string ca_file;           // the CA that signed everything below
  std::string server_cert_file;  // SANs: IP 127.0.0.1, DNS localhost
  std::string server_key_file;
  std::string client_cert_file;  // CN redis-client
  std::string client_key_file;
  std::string other_ca_file;  // a CA that signed nothing here
};

// Writes the files into `dir` (which must exist). P-256 keys, valid 2 days.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

}  // namespace mailgrid::redis::testing
