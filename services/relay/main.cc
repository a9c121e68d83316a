// relayd: the SMTP edge — MX (25), submission (587 STARTTLS, 465 TLS) —
// delivering locally through mailstored (services/relay/README.md). The
// wiring is in app.cc.
#include "services/relay/app.h"

int main(int argc, char** argv) {
  return mailgrid::rpc::RunService(mailgrid::relay::ServiceDefinition(), argc, argv);
}
