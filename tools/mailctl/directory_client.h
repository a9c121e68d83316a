// What `mailctl dept|user|alias|group|shared|resolve` share (DirectoryService,
// protos/mailgrid/tenant/v1/directory.proto): finding users, departments,
// groups and shared mailboxes by the names people type (an address, a
// department path), member specs, and printing. Connection and credentials
// are tenant_client.h's (--tenantd, --token / --token-key --role
// tenant_admin --token-tenant T).
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {

namespace dirv1 = ::mailgrid::tenant::v1;
using DirStub = dirv1::DirectoryService::Stub;

// Runs one DirectoryService call.
absl::Status CallDir(const TenantdClient& c,
                     const std::function<grpc::Status(DirStub&, grpc::ClientContext*)>& call);

// "alice@acme.cn" or a user id ("u-...") -> user id.
absl::StatusOr<std::string> UserIdOf(const TenantdClient& c, const std::string& ref);
// "Sales/East" or a department id ("d-...") -> department id.
absl::StatusOr<std::string> DeptIdOf(const TenantdClient& c, const std::string& ref,
                                     const std::string& tenant);
// A group address or id ("g-...") -> group id.
absl::StatusOr<std::string> GroupIdOf(const TenantdClient& c, const std::string& ref);
// A shared mailbox address or id ("s-...") -> shared mailbox id.
absl::StatusOr<std::string> SharedIdOf(const TenantdClient& c, const std::string& ref,
                                       const std::string& tenant);
// "user:ADDR", "group:ADDR", "shared:ADDR", "dept:PATH" (or "dept-direct:PATH"),
// or a bare address (a user, else a group).
absl::StatusOr<dirv1::GroupMember> MemberOf(const TenantdClient& c, const std::string& spec,
                                            const std::string& tenant);

void PrintUser(std::ostream& out, const dirv1::User& u);
std::string UserStateWord(dirv1::UserState s);

}  // namespace mailgrid::mailctl
