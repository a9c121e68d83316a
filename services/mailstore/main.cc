// mailstored: mailboxes, folders, messages, flags, quotas, search, archive
// (services/mailstore/README.md). The wiring is in app.cc.
#include "services/mailstore/app.h"

int main(int argc, char** argv) {
  return mailgrid::rpc::RunService(mailgrid::mailstore::ServiceDefinition(), argc, argv);
}
