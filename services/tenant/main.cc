// tenantd: tenants, their verification documents, plans and domains
// (services/tenant/README.md). The wiring is in app.cc.
#include "services/tenant/app.h"

int main(int argc, char** argv) {
  return mailgrid::rpc::RunService(mailgrid::tenant::ServiceDefinition(), argc, argv);
}
