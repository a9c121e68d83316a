#include "libs/redis/testing/test_pki.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::redis::testing {
namespace {

absl::Status Run(const std::string& dir, const std::string& command) {
  // Paths come from mkdtemp-style directories of the test; quoted anyway.
  std::string line = absl::StrCat("cd '", dir, "' && ", command, " >>openssl.log 2>&1");
  int rc = std::system(line.c_str());
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("openssl failed (", rc, "): ", command, "; see ", dir, "/openssl.log"));
  }
  return absl::OkStatus();
}

constexpr char kNewKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

absl::Status MakeCa(const std::string& dir, const std::string& name) {
  return Run(dir, absl::StrCat("openssl req -x509 ", kNewKey, " -keyout ", name, ".key -out ", name,
                               ".pem -days 2 -subj /CN=", name));
}

absl::Status MakeLeaf(const std::string& dir, const std::string& name, const std::string& ext) {
  { std::ofstream(absl::StrCat(dir, "/", name, ".ext")) << ext << "\n"; }
  RETURN_IF_ERROR(Run(dir, absl::StrCat("openssl req ", kNewKey, " -keyout ", name, ".key -out ",
                                        name, ".csr -subj /CN=", name)));
  return Run(dir, absl::StrCat("openssl x509 -req -in ", name,
                               ".csr -CA ca.pem -CAkey ca.key "
                               "-CAcreateserial -days 2 -out ",
                               name, ".pem -extfile ", name, ".ext"));
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  RETURN_IF_ERROR(MakeCa(dir, "ca"));
  RETURN_IF_ERROR(MakeCa(dir, "other-ca"));
  RETURN_IF_ERROR(MakeLeaf(dir, "server",
                           "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth"));
  RETURN_IF_ERROR(MakeLeaf(dir, "redis-client", "extendedKeyUsage=clientAuth"));
  TestPki pki;
  pki.ca_file = dir + "/ca.pem";
  pki.server_cert_file = dir + "/server.pem";
  pki.server_key_file = dir + "/server.key";
  pki.client_cert_file = dir + "/redis-client.pem";
  pki.client_key_file = dir + "/redis-client.key";
  pki.other_ca_file = dir + "/other-ca.pem";
  return pki;
}

}  // namespace mailgrid::redis::testing
