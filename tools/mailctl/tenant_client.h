// What `mailctl tenant|plan|domain|token` share: their option syntax, how
// they find tenantd and authenticate, how they print.
//
// Finding tenantd: --tenantd ADDR[,ADDR] (or MAILGRID_TENANTD), else the
// "grpc"."tenantd" list of --cluster cluster.json; each address is tried
// in turn while the previous one is unreachable.
// Credentials, first that applies:
//   --token TOKEN (or MAILGRID_TOKEN): an access token or an onboarding
//     token ("mgot_...") as is;
//   --token-key FILE (or MAILGRID_TOKEN_KEY): an Ed25519 private key PEM;
//     mailctl mints a 10-minute token with --role (default
//     platform_operator, comma list), --token-tenant and --subject.
//   nothing: an anonymous call (RegisterTenant needs none).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "libs/base/status.h"
#include "tools/mailctl/command.h"

namespace mailgrid::mailctl {

// `--name value`, `--name=value` and bare `--flag` (for names in
// `flags`), mixed with positional arguments in any order.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::set<std::string> flags;

  bool Has(const std::string& name) const {
    return options.count(name) > 0 || flags.count(name) > 0;
  }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // INVALID_ARGUMENT "--name is required".
  absl::StatusOr<std::string> Required(const std::string& name) const;
  // The i-th positional argument, or INVALID_ARGUMENT naming `what`.
  absl::StatusOr<std::string> Positional(size_t i, const std::string& what) const;
};

// Options every tenantd command accepts; `flags` names the command's own
// boolean flags.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& raw,
                               std::set<std::string> flags = {});

// "mailctl GROUP VERB ARGS...": the verb and the arguments after it, parsed
// as ParseArgs does. INVALID_ARGUMENT when there is no verb.
struct Subcommand {
  std::string verb;
  Args args;
};
absl::StatusOr<Subcommand> ParseSubcommand(const Invocation& inv,
                                           std::set<std::string> flags = {});
// The one error for a verb the group does not have.
absl::Status UnknownSubcommand(const std::string& verb);

// A service's replicas and the caller's credentials: the finding and
// authenticating every command group shares (tenantd, identityd, ...).
struct ServiceSpec {
  std::string name;          // "tenantd": --tenantd, MAILGRID_TENANTD, cluster.json key
  std::string default_role;  // --role when minting with --token-key
  absl::Duration deadline;   // per call
};

class ServiceClient {
 public:
  static absl::StatusOr<ServiceClient> Connect(const Invocation& inv, const Args& args,
                                               const ServiceSpec& spec);

  // Runs `call` with a fresh authenticated context, against each address
  // until one is reachable. The grpc::Status becomes one readable line.
  // Each address's channel is made on first use and kept: the pages of a
  // ListAll and the calls of one command share one connection.
  absl::Status Run(const std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&,
                                                    grpc::ClientContext*)>& call) const;

  bool json() const { return json_; }

 private:
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelTo(size_t i) const;

  ServiceSpec spec_;
  std::vector<std::string> addresses_;
  std::string token_;
  bool json_ = false;
  // By address index, made by ChannelTo; copies of the client share them.
  mutable std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

class TenantdClient : public ServiceClient {
 public:
  static absl::StatusOr<TenantdClient> Connect(const Invocation& inv, const Args& args);

 private:
  explicit TenantdClient(ServiceClient c) : ServiceClient(std::move(c)) {}
};

// Every page of a List RPC as one response: repeated fields concatenated,
// page_info cleared, e.g. ListAll(c, req, &v1::DomainService::Stub::ListDomains).
// Servers answer at most 1,000 items a page; a command that printed only
// the first page would cut a large tenant's list short without saying so,
// and one merged response keeps --json one object.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> ListAll(
    const ServiceClient& c, Request request,
    grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*)) {
  request.mutable_page()->set_page_size(1000);
  Response all;
  for (;;) {
    Response page;
    RETURN_IF_ERROR(c.Run([&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext* ctx) {
      Stub stub(ch);
      return (stub.*method)(ctx, request, &page);
    }));
    const std::string next = page.page_info().next_page_token();
    all.MergeFrom(page);
    if (next.empty()) break;
    request.mutable_page()->set_page_token(next);
  }
  all.clear_page_info();
  return all;
}

// A grpc::Status as one line: "NOT_FOUND: tenant t-x not found", with the
// limit details of RESOURCE_EXHAUSTED / LIMIT_BELOW_USAGE appended.
absl::Status FromRpc(const grpc::Status& status);

// One-line JSON of a message (proto field names, enums by name).
std::string Json(const google::protobuf::Message& message);

// "2026-11-27 10:00:00Z" or "-" for an unset timestamp.
std::string When(int64_t seconds);

// Mints an access token with the Ed25519 private key in `key_file`.
absl::StatusOr<std::string> MintToken(const std::string& key_file,
                                      const std::vector<std::string>& roles,
                                      const std::string& tenant, const std::string& subject,
                                      const std::string& issuer, int64_t ttl_seconds);

// Strips a common prefix from an enum name: ("TENANT_STATE_ACTIVE", "TENANT_STATE_") -> "ACTIVE".
std::string EnumWord(const std::string& name, const std::string& prefix);

}  // namespace mailgrid::mailctl
