#include "tools/mailctl/tenant_client.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "libs/auth/token.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"
#include "mailgrid/common/v1/common.pb.h"
#include "libs/auth/key_id.h"

namespace mailgrid::mailctl {

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = options.find(name);
  return it == options.end() ? fallback : it->second;
}

absl::StatusOr<std::string> Args::Required(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end() || it->second.empty())
    return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  return it->second;
}

absl::StatusOr<std::string> Args::Positional(size_t i, const std::string& what) const {
  if (i >= positional.size()) return absl::InvalidArgumentError(absl::StrCat("missing ", what));
  return positional[i];
}

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& raw, std::set<std::string> flags) {
  flags.insert("json");
  Args out;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& a = raw[i];
    if (a.size() < 3 || a.rfind("--", 0) != 0) {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      out.options[name.substr(0, eq)] = name.substr(eq + 1);
    } else if (flags.count(name)) {
      out.flags.insert(name);
    } else if (i + 1 < raw.size()) {
      out.options[name] = raw[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
  }
  return out;
}

absl::StatusOr<Subcommand> ParseSubcommand(const Invocation& inv, std::set<std::string> flags) {
  if (inv.args.empty()) return absl::InvalidArgumentError("missing sub-command (see mailctl help)");
  ASSIGN_OR_RETURN(Args args, ParseArgs(std::vector<std::string>(inv.args.begin() + 1, inv.args.end()),
                                        std::move(flags)));
  return Subcommand{inv.args[0], std::move(args)};
}

absl::Status UnknownSubcommand(const std::string& verb) {
  return absl::InvalidArgumentError(
      absl::StrCat("unknown sub-command \"", verb, "\" (see mailctl help)"));
}

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::string> MintToken(const std::string& key_file,
                                      const std::vector<std::string>& roles,
                                      const std::string& tenant, const std::string& subject,
                                      const std::string& issuer, int64_t ttl_seconds) {
  auto pem = ReadFile(key_file);
  if (!pem.ok()) return pem.status();
  auto kid = auth::KeyIdOfPrivatePem(*pem);
  if (!kid.ok())
    return absl::InvalidArgumentError(absl::StrCat(key_file, ": ", kid.status().message()));
  auto signer = auth::TokenSigner::FromPrivatePem(*kid, *pem);
  if (!signer.ok())
    return absl::InvalidArgumentError(absl::StrCat(key_file, ": ", signer.status().message()));
  auth::Claims c;
  c.issuer = issuer;
  c.subject = subject;
  c.tenant_id = tenant;
  c.roles = roles;
  c.token_id = absl::StrCat("mailctl-", absl::ToUnixNanos(absl::Now()));
  c.issued_at = absl::Now();
  c.expires_at = c.issued_at + absl::Seconds(ttl_seconds);
  return (*signer)->Sign(c);
}

absl::StatusOr<ServiceClient> ServiceClient::Connect(const Invocation& inv, const Args& args,
                                                     const ServiceSpec& spec) {
  ServiceClient c;
  c.spec_ = spec;
  c.json_ = inv.json || args.flags.count("json");
  std::string addrs = args.Get(spec.name, Env(("MAILGRID_" + absl::AsciiStrToUpper(spec.name)).c_str()));
  if (!addrs.empty()) {
    for (absl::string_view a : absl::StrSplit(addrs, ',', absl::SkipEmpty()))
      c.addresses_.emplace_back(a);
  } else if (inv.cluster != nullptr) {
    auto list = inv.cluster->Addresses(spec.name);
    if (!list.ok()) return list.status();
    c.addresses_ = *list;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("where is ", spec.name, "? give --", spec.name,
                                                   " ADDR or mailctl --cluster cluster.json"));
  }
  std::string token = args.Get("token", Env("MAILGRID_TOKEN"));
  std::string key_file = args.Get("token-key", Env("MAILGRID_TOKEN_KEY"));
  if (!token.empty()) {
    c.token_ = token;
  } else if (!key_file.empty()) {
    std::vector<std::string> roles =
        absl::StrSplit(args.Get("role", spec.default_role), ',', absl::SkipEmpty());
    auto minted =
        MintToken(key_file, roles, args.Get("token-tenant"), args.Get("subject", "mailctl"),
                  args.Get("token-issuer", auth::kDefaultTokenIssuer), 600);
    if (!minted.ok()) return minted.status();
    c.token_ = *minted;
  }
  return c;
}

absl::StatusOr<TenantdClient> TenantdClient::Connect(const Invocation& inv, const Args& args) {
  ASSIGN_OR_RETURN(ServiceClient c,
                   ServiceClient::Connect(inv, args, {"tenantd", "platform_operator", absl::Seconds(60)}));
  return TenantdClient(std::move(c));
}

absl::Status ServiceClient::Run(
    const std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&, grpc::ClientContext*)>&
        call) const {
  grpc::Status last;
  for (size_t i = 0; i < addresses_.size(); ++i) {
    auto channel = ChannelTo(i);
    if (!channel.ok()) return channel.status();
    auto ctx = rpc::ContextWithDeadline(spec_.deadline);
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
    last = call(*channel, ctx.get());
    // Unreachable: try the next replica. Anything else is the answer.
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) return FromRpc(last);
  }
  if (addresses_.size() > 1) {
    return absl::UnavailableError(absl::StrCat("no ", spec_.name, " reachable (tried ", addresses_.size(),
                                               "): ", last.error_message()));
  }
  return FromRpc(last);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ServiceClient::ChannelTo(size_t i) const {
  channels_.resize(addresses_.size());
  if (channels_[i] != nullptr) return channels_[i];
  rpc::ClientOptions options;
  options.target = addresses_[i];
  ASSIGN_OR_RETURN(channels_[i], rpc::MakeChannel(options));
  return channels_[i];
}

absl::Status FromRpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  std::string line = absl::StrCat(rpc::CodeName(status.error_code()), ": ", status.error_message());
  common::v1::RpcStatus details;
  if (!status.error_details().empty() && details.ParseFromString(status.error_details())) {
    for (const auto& any : details.details()) {
      common::v1::LimitDetail l;
      if (any.UnpackTo(&l) && line.find(l.limit()) == std::string::npos) {
        absl::StrAppend(&line, " [", l.limit(), " = ",
                        l.value().unlimited() ? "unlimited" : absl::StrCat(l.value().value()),
                        ", in use ", l.usage(), "]");
      }
    }
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), line);
}

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, o);
  return out;
}

std::string When(int64_t seconds) {
  if (seconds == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

std::string EnumWord(const std::string& name, const std::string& prefix) {
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}

}  // namespace mailgrid::mailctl
