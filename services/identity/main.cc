// identityd: sign-in, second factors, sessions and tokens, SSO
// (services/identity/README.md). The wiring is in app.cc.
#include "services/identity/app.h"

int main(int argc, char** argv) {
  return mailgrid::rpc::RunService(mailgrid::identity::ServiceDefinition(), argc, argv);
}
