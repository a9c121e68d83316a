#include "tools/mailctl/identity_client.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/auth/key_id.h"
#include "libs/rpc/client.h"

namespace mailgrid::mailctl {
namespace {
std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}
}  // namespace

absl::StatusOr<IdentitydClient> IdentitydClient::Connect(const Invocation& inv, const Args& args) {
  IdentitydClient c;
  c.json_ = inv.json || args.flags.count("json");
  std::string addrs = args.Get("identityd", Env("MAILGRID_IDENTITYD"));
  if (!addrs.empty()) {
    for (absl::string_view a : absl::StrSplit(addrs, ',', absl::SkipEmpty()))
      c.addresses_.emplace_back(a);
  } else if (inv.cluster != nullptr) {
    auto list = inv.cluster->Addresses("identityd");
    if (!list.ok()) return list.status();
    c.addresses_ = *list;
  } else {
    return absl::InvalidArgumentError(
        "where is identityd? give --identityd ADDR or mailctl --cluster cluster.json");
  }
  std::string token = args.Get("token", Env("MAILGRID_TOKEN"));
  std::string key_file = args.Get("token-key", Env("MAILGRID_TOKEN_KEY"));
  if (!token.empty()) {
    c.token_ = token;
  } else if (!key_file.empty()) {
    std::vector<std::string> roles =
        absl::StrSplit(args.Get("role", "service"), ',', absl::SkipEmpty());
    auto minted =
        MintToken(key_file, roles, args.Get("token-tenant"), args.Get("subject", "mailctl"),
                  args.Get("token-issuer", auth::kDefaultTokenIssuer), 600);
    if (!minted.ok()) return minted.status();
    c.token_ = *minted;
  }
  return c;
}

absl::Status IdentitydClient::Run(
    const std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&, grpc::ClientContext*)>&
        call) const {
  grpc::Status last;
  for (const std::string& address : addresses_) {
    rpc::ClientOptions options;
    options.target = address;
    auto channel = rpc::MakeChannel(options);
    if (!channel.ok()) return channel.status();
    auto ctx = rpc::ContextWithDeadline(absl::Seconds(150));
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
    last = call(*channel, ctx.get());
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) return FromRpc(last);
  }
  return FromRpc(last);
}

}  // namespace mailgrid::mailctl
