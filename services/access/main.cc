// accessd: IMAP and POP3 for mail clients (services/access/README.md). The
// wiring is in app.cc.
#include "services/access/app.h"

int main(int argc, char** argv) {
  return mailgrid::rpc::RunService(mailgrid::access::ServiceDefinition(), argc, argv);
}
