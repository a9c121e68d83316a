// relay_testctl: what the relayd integration tests and bench/relay need from
// the directory and the mail store, over their published gRPC APIs, with
// tokens minted from the cluster's signing key (as mailctl does):
//
//   relay_testctl create-user --tenantd H:P --key PEM --tenant T --address A [--name N]
//       DirectoryService.CreateUser as a tenant admin; prints
//       {"user_id","mailbox_id","shard","address"}.
//   relay_testctl messages --mailstored MAP --key PEM --tenant T --user U
//                          --mailbox M --shard S [--folder NAME]
//       MailboxService.Fetch of FOLDER (default INBOX) 1:* (raw, flags) as
//       that user; prints a JSON list of {"uid","flags","raw"}; a folder
//       that does not exist prints [].
//   relay_testctl set-script --tenantd H:P --key PEM --tenant T --user U
//                            --script-file F
//       DirectoryService.SetSieveScript as the user; prints {"version"} or,
//       on an error, {"code","message"} and exits 1.
//
// A test tool, not an operator tool: operators use mailctl.
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/auth/key_id.h"
#include "libs/auth/service_token.h"
#include "libs/auth/token.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace {

using namespace mailgrid;  // NOLINT: a small tool

std::map<std::string, std::string> ParseFlags(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) continue;
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      out[a.substr(2, eq - 2)] = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      out[a.substr(2)] = argv[++i];
    }
  }
  return out;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::string> Mint(const std::string& key_path, auth::Claims claims) {
  auto pem = ReadFile(key_path);
  if (!pem.ok()) return pem.status();
  auto kid = auth::KeyIdOfPrivatePem(*pem);
  if (!kid.ok()) return kid.status();
  auto signer = auth::TokenSigner::FromPrivatePem(*kid, *pem);
  if (!signer.ok()) return signer.status();
  claims.issuer = "mailgrid";
  claims.issued_at = absl::Now();
  claims.expires_at = absl::Now() + absl::Minutes(10);
  claims.token_id = absl::StrCat("relay-testctl-", absl::ToUnixNanos(absl::Now()));
  return (*signer)->Sign(claims);
}

int Fail(const absl::Status& s) {
  std::cerr << "relay_testctl: " << s << "\n";
  return 1;
}

int CreateUser(std::map<std::string, std::string> f) {
  auth::Claims c;
  c.subject = "relay-testctl";
  c.tenant_id = f["tenant"];
  c.roles = {auth::kRoleTenantAdmin};
  c.scope = "full";
  auto token = Mint(f["key"], c);
  if (!token.ok()) return Fail(token.status());
  rpc::ClientOptions co;
  co.target = f["tenantd"];
  co.tls_ca_file = f["tls-ca"];
  auto ch = rpc::MakeChannel(co);
  if (!ch.ok()) return Fail(ch.status());
  tenant::v1::CreateUserRequest req;
  req.set_tenant_id(f["tenant"]);
  req.set_address(f["address"]);
  req.set_display_name(f.count("name") ? f["name"] : "Test User");
  req.set_skip_welcome_mail(true);
  if (f.count("password")) req.set_initial_password(f["password"]);
  tenant::v1::CreateUserResponse resp;
  auto ctx = rpc::ContextWithDeadline(absl::Seconds(60));
  ctx->AddMetadata("authorization", "Bearer " + *token);
  grpc::Status st = tenant::v1::DirectoryService::NewStub(*ch)->CreateUser(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(rpc::FromGrpc(st));
  nlohmann::json j;
  j["user_id"] = resp.user().user_id();
  j["mailbox_id"] = resp.user().mailbox_id();
  j["shard"] = resp.user().shard();
  j["address"] = resp.user().address();
  std::cout << j.dump() << "\n";
  return 0;
}

// Raw bytes as Latin-1 code points so any byte survives JSON.
std::string Latin1(const std::string& raw) {
  std::string out;
  for (unsigned char ch : raw) {
    if (ch < 0x80) {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back(static_cast<char>(0xC0 | (ch >> 6)));
      out.push_back(static_cast<char>(0x80 | (ch & 0x3F)));
    }
  }
  return out;
}

int SetScript(std::map<std::string, std::string> f) {
  auto script = ReadFile(f["script-file"]);
  if (!script.ok()) return Fail(script.status());
  auth::Claims c;
  c.subject = f["user"];
  c.tenant_id = f["tenant"];
  c.roles = {auth::kRoleUser};
  c.scope = "full";
  auto token = Mint(f["key"], c);
  if (!token.ok()) return Fail(token.status());
  rpc::ClientOptions co;
  co.target = f["tenantd"];
  auto ch = rpc::MakeChannel(co);
  if (!ch.ok()) return Fail(ch.status());
  tenant::v1::SetSieveScriptRequest req;
  req.set_user_id(f["user"]);
  req.set_script(*script);
  tenant::v1::SieveScript resp;
  auto ctx = rpc::ContextWithDeadline(absl::Seconds(60));
  ctx->AddMetadata("authorization", "Bearer " + *token);
  grpc::Status st =
      tenant::v1::DirectoryService::NewStub(*ch)->SetSieveScript(ctx.get(), req, &resp);
  nlohmann::json j;
  if (!st.ok()) {
    j["code"] = static_cast<int>(st.error_code());
    j["message"] = st.error_message();
    std::cout << j.dump() << "\n";
    return 1;
  }
  j["version"] = resp.version();
  std::cout << j.dump() << "\n";
  return 0;
}

int Messages(std::map<std::string, std::string> f) {
  uint32_t shard = 0;
  if (!absl::SimpleAtoi(f["shard"], &shard)) shard = 0;
  auth::Claims c;
  c.subject = f["user"];
  c.tenant_id = f["tenant"];
  c.roles = {auth::kRoleUser};
  c.mailbox_ids = {f["mailbox"]};
  c.scope = "mail";
  auto token = Mint(f["key"], c);
  if (!token.ok()) return Fail(token.status());
  auto client = mailstore_client::MailstoreClient::FromFlag(f["mailstored"], nullptr);
  if (!client.ok()) return Fail(client.status());
  mailstore::v1::FetchRequest req;
  req.set_mailbox_id(f["mailbox"]);
  req.mutable_folder()->set_name(f.count("folder") ? f["folder"] : "INBOX");
  auto* range = req.mutable_messages()->mutable_uids()->add_ranges();
  range->set_first(1);
  range->set_to_last(true);
  req.mutable_items()->set_raw(true);
  req.mutable_items()->set_flags(true);
  mailstore_client::CallOptions o;
  o.authorization = "Bearer " + *token;
  auto all = (*client)->FetchAll(shard, req, o);
  nlohmann::json out = nlohmann::json::array();
  if (!all.ok()) {
    if (all.status().code() != absl::StatusCode::kNotFound) return Fail(all.status());
    std::cout << out.dump() << "\n";
    return 0;
  }
  for (const auto& m : *all) {
    nlohmann::json j;
    j["uid"] = m.uid();
    j["flags"] = nlohmann::json::array();
    for (const std::string& flag : m.flags()) j["flags"].push_back(flag);
    j["raw"] = Latin1(m.raw());
    out.push_back(j);
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: relay_testctl create-user|messages|set-script --flag value ...\n";
    return 2;
  }
  std::string cmd = argv[1];
  auto flags = ParseFlags(argc, argv);
  if (cmd == "create-user") return CreateUser(flags);
  if (cmd == "messages") return Messages(flags);
  if (cmd == "set-script") return SetScript(flags);
  std::cerr << "relay_testctl: unknown command " << cmd << "\n";
  return 2;
}
