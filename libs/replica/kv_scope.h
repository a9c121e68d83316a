// Which keys a peer may touch through KvService, by its certificate name.
//
// The peer ACL (libs/rpc/peer_acl.h) decides who may call KvService at all;
// it cannot see keys. tenantd's KV also holds relayd's outbound queue, so
// relayd must call it, and without a scope a compromised relayd could
// rewrite the whole directory (users, passwords' records, domains). A scope
// limits a certificate name to key prefixes: every key of a Get, every
// range of a Scan, every condition and op of a Write must fall inside one
// of its prefixes, or the call fails PERMISSION_DENIED before anything is
// read or proposed. Names without a scope are not restricted here.
//
// Spec (the --kv-scope flag, MAILGRID_KV_SCOPE; rules separated by ';'):
//   NAME=PREFIX,PREFIX;NAME=...
// where PREFIX is one of
//   global:SPACE    the keys of one global key space (kv::GlobalPrefix)
//   global:SPACE*   every global space whose name starts with SPACE
//                   ("global:outq*" = outq, outq_body, outq_due, ...)
//   tenant:ID       one tenant's keys (kv::TenantPrefix)
//   hex:0A1B...     raw bytes
// e.g. relayd=global:outq*   (what the chart gives tenantd).
// A certificate carrying several scoped names gets the union.
//
// SECURITY: faces the network (called from KvServiceImpl on gRPC threads).
// Needs mTLS: without a client certificate there is no name, and an
// unscoped caller is what the peer ACL lets in.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "mailgrid/kv/v1/kv.pb.h"

namespace mailgrid::replica {

class KvScope {
 public:
  static absl::StatusOr<KvScope> Parse(std::string_view spec);

  bool empty() const { return prefixes_.empty(); }

  // Returns false (with the offending key in *bad) when any key or range of
  // the request is outside the prefixes of the scoped `names`.
  bool Allows(const std::vector<std::string>& names, const kv::v1::GetRequest& req,
              std::string* bad) const;
  bool Allows(const std::vector<std::string>& names, const kv::v1::ScanRequest& req,
              std::string* bad) const;
  bool Allows(const std::vector<std::string>& names, const kv::v1::WriteRequest& req,
              std::string* bad) const;

 private:
  // The union of the scoped names' prefixes; *scoped false when no name is.
  std::vector<std::string> PrefixesFor(const std::vector<std::string>& names, bool* scoped) const;

  std::map<std::string, std::vector<std::string>> prefixes_;  // name -> raw prefixes
};

// The scope KvServiceImpl enforces in this process (empty until set).
// rpc::RunService sets it from --kv-scope; tests set it directly.
void SetProcessKvScope(KvScope scope);

// OK, or PERMISSION_DENIED naming the peer and the key (printable form)
// when the caller's certificate names are scoped and the request leaves the
// scope. Cheap when no scope is set.
grpc::Status CheckKvScope(const grpc::ServerContextBase& ctx, const kv::v1::GetRequest& req);
grpc::Status CheckKvScope(const grpc::ServerContextBase& ctx, const kv::v1::ScanRequest& req);
grpc::Status CheckKvScope(const grpc::ServerContextBase& ctx, const kv::v1::WriteRequest& req);

// For KvServiceImpl's callback handlers: nullptr when the call may go on,
// else a reactor already finished with the PERMISSION_DENIED above.
grpc::ServerUnaryReactor* RefuseOutsideKvScope(grpc::CallbackServerContext* ctx,
                                               const kv::v1::GetRequest& req);
grpc::ServerUnaryReactor* RefuseOutsideKvScope(grpc::CallbackServerContext* ctx,
                                               const kv::v1::ScanRequest& req);
grpc::ServerUnaryReactor* RefuseOutsideKvScope(grpc::CallbackServerContext* ctx,
                                               const kv::v1::WriteRequest& req);

}  // namespace mailgrid::replica
