// mailctl token mint: an access token for a local cluster, signed with an
// Ed25519 private key (PEM) whose public key tenantd was given with
// --token-public-key. For operators and tests until identityd mints real
// tokens; the key id is derived from the key (libs/auth/key_id.h).
#include <cstdlib>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "libs/auth/key_id.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

absl::Status RunToken(const Invocation& inv) {
  if (inv.args.empty() || inv.args[0] != "mint")
    return absl::InvalidArgumentError("usage: mailctl token mint ...");
  auto args = ParseArgs(std::vector<std::string>(inv.args.begin() + 1, inv.args.end()));
  if (!args.ok()) return args.status();
  const char* env_key = std::getenv("MAILGRID_TOKEN_KEY");
  std::string key = args->Get("key", args->Get("token-key", env_key == nullptr ? "" : env_key));
  if (key.empty())
    return absl::InvalidArgumentError("--key FILE (an Ed25519 private key PEM) is required");
  auto role = args->Required("role");
  if (!role.ok()) return role.status();
  absl::Duration ttl = absl::Hours(1);
  if (args->Has("ttl") && !absl::ParseDuration(args->Get("ttl"), &ttl)) {
    return absl::InvalidArgumentError("--ttl: not a duration (like 1h, 30m)");
  }
  std::vector<std::string> roles = absl::StrSplit(*role, ',', absl::SkipEmpty());
  auto token =
      MintToken(key, roles, args->Get("tenant"), args->Get("subject", "mailctl"),
                args->Get("issuer", auth::kDefaultTokenIssuer), absl::ToInt64Seconds(ttl));
  if (!token.ok()) return token.status();
  if (inv.json || args->flags.count("json")) {
    *inv.out << "{\"token\":\"" << *token << "\"}\n";
  } else {
    *inv.out << *token << "\n";
  }
  return absl::OkStatus();
}

const bool kRegistered = RegisterCommand(
    {"token", "mint an access token with a local signing key (local clusters and tests)",
     "mailctl token mint --key FILE --role "
     "platform_operator|platform_reviewer|tenant_admin|service[,...]\n"
     "                  [--tenant TENANT_ID] [--subject NAME] [--ttl 1h] [--issuer mailgrid]",
     RunToken});

}  // namespace
}  // namespace mailgrid::mailctl
