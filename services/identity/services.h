// The gRPC faces of identityd: AuthService, CredentialService, SsoService,
// each method one call into Core (core.h) through Serve(), which
// authenticates the caller, converts the status (errors.h) and logs
// unexpected failures.
#pragma once

#include <memory>

#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "mailgrid/identity/v1/credential.grpc.pb.h"
#include "mailgrid/identity/v1/sso.grpc.pb.h"
#include "services/identity/core.h"

namespace mailgrid::identity {

std::unique_ptr<v1::AuthService::Service> MakeAuthService(Core* core);
std::unique_ptr<v1::CredentialService::Service> MakeCredentialService(Core* core);
std::unique_ptr<v1::SsoService::Service> MakeSsoService(Core* core);

}  // namespace mailgrid::identity
