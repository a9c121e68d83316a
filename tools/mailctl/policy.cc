// mailctl audit-policy | monitor-policy | sieve: the tenant's mail policies
// and a user's inbox rules, kept by tenantd's DirectoryService
// (protos/mailgrid/tenant/v1/policy.proto) and enforced by relayd.
//
// Policies travel as JSON files in the proto's JSON form: `get` prints one
// (pretty, ready to edit), `set FILE` replaces the whole policy with it
// ("-" reads standard input). --expected-version N makes the change apply
// only on top of version N (ABORTED otherwise), so two admins editing at
// once do not silently overwrite each other.
#include <fstream>
#include <iostream>
#include <ostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/directory_client.h"

namespace mailgrid::mailctl {
namespace {

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    ss << in.rdbuf();
  }
  return ss.str();
}

absl::Status FromJson(const std::string& text, google::protobuf::Message* m,
                      const std::string& what) {
  auto s = google::protobuf::util::JsonStringToMessage(text, m);
  if (!s.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a valid policy: ", std::string(s.message())));
  return absl::OkStatus();
}

std::string Pretty(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

absl::StatusOr<int64_t> ExpectedVersion(const Args& a) {
  int64_t v = 0;
  if (a.Has("expected-version") && !absl::SimpleAtoi(a.Get("expected-version"), &v))
    return absl::InvalidArgumentError("--expected-version: a whole number");
  return v;
}

void PrintPolicy(const Invocation& inv, const TenantdClient& c,
                 const google::protobuf::Message& m) {
  *inv.out << (c.json() ? Json(m) : Pretty(m)) << "\n";
}

// `audit-policy` and `monitor-policy`: the same get/set over a tenant-wide
// policy message; only the types and the two stub methods differ.
template <typename Policy, typename GetRequest, typename SetRequest>
absl::Status RunPolicy(
    const Invocation& inv, const char* command,
    grpc::Status (DirStub::*get)(grpc::ClientContext*, const GetRequest&, Policy*),
    grpc::Status (DirStub::*set)(grpc::ClientContext*, const SetRequest&, Policy*)) {
  auto parsed = ParseArgs(inv.args);
  if (!parsed.ok()) return parsed.status();
  const Args& a = *parsed;
  auto verb = a.Positional(0, "get|set");
  if (!verb.ok()) return verb.status();
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  Policy out;
  if (*verb == "get") {
    GetRequest req;
    req.set_tenant_id(a.Get("tenant"));
    auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return (d.*get)(ctx, req, &out);
    });
    if (!s.ok()) return s;
  } else if (*verb == "set") {
    auto file = a.Positional(1, "FILE");
    if (!file.ok()) return file.status();
    auto text = ReadInput(*file);
    if (!text.ok()) return text.status();
    SetRequest req;
    if (auto s = FromJson(*text, req.mutable_policy(), *file); !s.ok()) return s;
    if (a.Has("tenant")) req.mutable_policy()->set_tenant_id(a.Get("tenant"));
    auto v = ExpectedVersion(a);
    if (!v.ok()) return v.status();
    req.set_expected_version(*v);
    auto s = CallDir(c, [&](DirStub& d, grpc::ClientContext* ctx) {
      return (d.*set)(ctx, req, &out);
    });
    if (!s.ok()) return s;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(command, ": get or set"));
  }
  PrintPolicy(inv, c, out);
  return absl::OkStatus();
}

absl::Status RunAuditPolicy(const Invocation& inv) {
  return RunPolicy(inv, "audit-policy", &DirStub::GetAuditPolicy, &DirStub::SetAuditPolicy);
}

absl::Status RunMonitorPolicy(const Invocation& inv) {
  return RunPolicy(inv, "monitor-policy", &DirStub::GetMonitoringPolicy,
                   &DirStub::SetMonitoringPolicy);
}

absl::Status RunSieve(const Invocation& inv) {
  auto parsed = ParseArgs(inv.args);
  if (!parsed.ok()) return parsed.status();
  const Args& a = *parsed;
  auto verb = a.Positional(0, "get|set");
  if (!verb.ok()) return verb.status();
  auto user = a.Positional(1, "USER");
  if (!user.ok()) return user.status();
  ASSIGN_OR_RETURN(const TenantdClient c, TenantdClient::Connect(inv, a));
  auto uid = UserIdOf(c, *user);
  if (!uid.ok()) return uid.status();
  dirv1::SieveScript out;
  if (*verb == "get") {
    dirv1::GetSieveScriptRequest req;
    req.set_user_id(*uid);
    auto s = CallDir(
        c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.GetSieveScript(ctx, req, &out); });
    if (!s.ok()) return s;
    if (c.json()) {
      *inv.out << Json(out) << "\n";
    } else {
      // The script itself, so `get > f; edit f; set USER f` round-trips.
      *inv.out << out.script();
      if (!out.script().empty() && out.script().back() != '\n') *inv.out << "\n";
    }
    return absl::OkStatus();
  }
  if (*verb != "set") return absl::InvalidArgumentError("sieve: get or set");
  auto file = a.Positional(2, "FILE");
  if (!file.ok()) return file.status();
  auto text = ReadInput(*file);
  if (!text.ok()) return text.status();
  dirv1::SetSieveScriptRequest req;
  req.set_user_id(*uid);
  req.set_script(*text);
  auto v = ExpectedVersion(a);
  if (!v.ok()) return v.status();
  req.set_expected_version(*v);
  auto s = CallDir(
      c, [&](DirStub& d, grpc::ClientContext* ctx) { return d.SetSieveScript(ctx, req, &out); });
  if (!s.ok()) return s;
  if (c.json()) {
    *inv.out << Json(out) << "\n";
  } else {
    *inv.out << "inbox rules of " << *user << " stored: version " << out.version() << ", "
             << out.script().size() << " bytes\n";
  }
  return absl::OkStatus();
}

const bool kAudit =
    RegisterCommand({"audit-policy", "the tenant's mail audit (hold) policy, as a JSON file",
                     "mailctl audit-policy get [--tenant T]\n"
                     "mailctl audit-policy set FILE|- [--tenant T] [--expected-version N]",
                     RunAuditPolicy});
const bool kMonitor =
    RegisterCommand({"monitor-policy", "the tenant's monitoring-copy policy, as a JSON file",
                     "mailctl monitor-policy get [--tenant T]\n"
                     "mailctl monitor-policy set FILE|- [--tenant T] [--expected-version N]",
                     RunMonitorPolicy});
const bool kSieve = RegisterCommand({"sieve", "a user's inbox rules (Sieve script)",
                                     "mailctl sieve get USER\n"
                                     "mailctl sieve set USER FILE|- [--expected-version N]",
                                     RunSieve});

}  // namespace
}  // namespace mailgrid::mailctl
