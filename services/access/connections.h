// The netserver::Session adapters: one per IMAP or POP3 connection. They
// own the protocol session and its backends, turn session output into
// netserver Output (write, STARTTLS, close, pause while a backend call is in
// flight), and bind the backends' completions to Connection::Post.
#pragma once

#include <memory>
#include <string>

#include "libs/netserver/server.h"
#include "libs/pop3/session.h"
#include "services/access/fetch_cache.h"
#include "services/access/grpc_backend.h"
#include "services/access/imap_session.h"
#include "services/access/metrics.h"

namespace mailgrid::access {

// What every connection shares (owned by the app).
struct Shared {
  std::shared_ptr<IdentityClient> identity;                    // may be null
  std::shared_ptr<mailstore_client::MailstoreClient> mailstore;  // may be null
  WorkerPool* pool = nullptr;
  WatchHub* watch_hub = nullptr;  // may be null (threaded Watch then)
  // may be null (every mailstored call on the pool then)
  std::shared_ptr<AsyncMailstore> async_mailstore;
  FetchCache* fetch_cache = nullptr;  // may be null (every FETCH to mailstored)
  AccessMetrics* metrics = nullptr;
  std::string hostname;
  bool tls_configured = false;
  bool plaintext_auth = false;
  absl::Duration imap_idle_timeout = absl::Minutes(30);  // RFC 3501 §5.4 autologout
  absl::Duration pop3_idle_timeout = absl::Minutes(10);  // RFC 1939 §3
};

std::unique_ptr<netserver::Session> NewImapConnection(const Shared& shared,
                                                      std::shared_ptr<netserver::Connection> conn);
std::unique_ptr<netserver::Session> NewPop3Connection(const Shared& shared,
                                                      std::shared_ptr<netserver::Connection> conn);

}  // namespace mailgrid::access
