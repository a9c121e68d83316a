#include "services/access/app.h"

#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"

namespace mailgrid::access {

void AddFlags(config::Flags& f, Options& o) {
  f.String("imap-listen", &o.imap_listen, "IMAP with STARTTLS (143), host:port; empty: off");
  f.String("imaps-listen", &o.imaps_listen, "IMAP over implicit TLS (993), host:port; empty: off");
  f.String("pop3-listen", &o.pop3_listen, "POP3 with STLS (110), host:port; empty: off");
  f.String("pop3s-listen", &o.pop3s_listen, "POP3 over implicit TLS (995), host:port; empty: off");
  f.String("public-tls-cert", &o.public_tls_cert, "PEM certificate chain for IMAP/POP3 TLS");
  f.String("tls-ca", &o.tls_ca,
           "CA (PEM) that verifies identityd and mailstored over gRPC TLS; used only when this "
           "daemon's listener has TLS (--tls-cert): mTLS mode");
  f.String("public-tls-key", &o.public_tls_key, "PEM private key for IMAP/POP3 TLS");
  f.StringList("identityd", &o.identityd, "identityd replicas (CheckSasl), comma list");
  f.String("mailstored", &o.mailstored, "mailstored shard map: h:p,h:p or 0=h:p,...;1=h:p,...");
  f.StringList("tenantd", &o.tenantd, "tenantd replicas (reserved)");
  f.String("token-signing-key", &o.token_signing_key,
           "PEM Ed25519 key for service tokens towards identityd");
  f.String("hostname", &o.hostname, "name in greetings");
  f.Int("worker-threads", &o.worker_threads, "threads for blocking backend calls");
  f.Int("io-threads", &o.io_threads, "threads running the IMAP/POP3 connections");
  f.Int("max-connections", &o.max_connections, "IMAP+POP3 connections at once");
  f.Int("max-connections-per-ip", &o.max_connections_per_ip, "connections per client IP");
  f.Bool("allow-plaintext-auth", &o.allow_plaintext_auth,
         "accept IMAP LOGIN/AUTHENTICATE and POP3 USER/AUTH without TLS (benchmarks only)");
  f.Duration("imap-idle-timeout", &o.imap_idle_timeout, "IMAP autologout (RFC 3501: >= 30m)");
  f.Duration("pop3-idle-timeout", &o.pop3_idle_timeout, "POP3 autologout (RFC 1939: >= 10m)");
  f.Int("fetch-cache-mb", &o.fetch_cache_mb,
        "immutable message data (headers, envelopes, small bodies) kept for FETCH, MiB; 0: off");
  f.Bool("async-mailstore", &o.async_mailstore,
         "SELECT/STORE/flag refreshes call mailstored on gRPC's callback API (no pool thread)");
  f.Int("flag-cache-messages", &o.flag_cache_messages,
        "flags of at most this many messages kept for FETCH (refreshed by ChangesSince); 0: off");
}

absl::StatusOr<std::unique_ptr<AccessApp>> AccessApp::Create(Options options) {
  std::unique_ptr<AccessApp> app(new AccessApp());
  app->options_ = std::move(options);
  const Options& o = app->options_;
  std::shared_ptr<auth::ServiceTokenSource> tokens;
  if (!o.token_signing_key.empty()) {
    auto t = auth::ServiceTokenSource::FromPemFile(o.token_signing_key, "accessd");
    if (!t.ok()) return t.status();
    tokens = std::move(*t);
  } else {
    log::Warn("no --token-signing-key: identityd will refuse CheckSasl");
  }
  if (!o.identityd.empty()) {
    auto c = IdentityClient::Create(o.identityd, tokens, o.peer_tls);
    if (!c.ok()) return c.status();
    app->shared_.identity = *c;
  } else {
    log::Warn("--identityd not set: every login fails with a temporary error");
  }
  if (!o.mailstored.empty()) {
    mailstore_client::ClientOptions mo;
    auto shards = mailstore_client::ShardMap::Parse(o.mailstored);
    if (!shards.ok()) return shards.status();
    mo.shards = std::move(*shards);
    mo.service_tokens = tokens;
    mo.tls_ca_file = o.peer_tls.tls_ca_file;
    mo.tls_cert_file = o.peer_tls.tls_cert_file;
    mo.tls_key_file = o.peer_tls.tls_key_file;
    auto c = mailstore_client::MailstoreClient::Create(std::move(mo));
    if (!c.ok()) return c.status();
    app->shared_.mailstore = std::move(*c);
  } else {
    log::Warn("--mailstored not set: mailbox commands fail with UNAVAILABLE");
  }
  app->pool_ = std::make_unique<WorkerPool>(std::max(1, o.worker_threads));
  app->shared_.pool = app->pool_.get();
  if (app->shared_.mailstore) {
    auto hub = WatchHub::Create(app->shared_.mailstore->shards(), app->pool_.get(), o.peer_tls);
    if (!hub.ok()) return hub.status();
    app->watch_hub_ = std::move(*hub);
    app->shared_.watch_hub = app->watch_hub_.get();
    if (o.async_mailstore) {
      auto a = AsyncMailstore::Create(app->shared_.mailstore->shards(), o.peer_tls);
      if (!a.ok()) return a.status();
      app->shared_.async_mailstore = std::move(*a);
    }
  }
  if (o.fetch_cache_mb > 0 || o.flag_cache_messages > 0) {
    FetchCache::Limits limits;
    limits.message_bytes = static_cast<size_t>(std::max(0, o.fetch_cache_mb)) << 20;
    limits.flag_messages = static_cast<size_t>(std::max(0, o.flag_cache_messages));
    app->fetch_cache_ = std::make_unique<FetchCache>(limits);
    app->shared_.fetch_cache = app->fetch_cache_.get();
  }
  app->shared_.hostname = o.hostname;
  app->shared_.tls_configured = !o.public_tls_cert.empty() && !o.public_tls_key.empty();
  app->shared_.imap_idle_timeout = o.imap_idle_timeout;
  app->shared_.pop3_idle_timeout = o.pop3_idle_timeout;
  app->shared_.plaintext_auth = o.allow_plaintext_auth;
  if (o.allow_plaintext_auth) log::Warn("--allow-plaintext-auth: passwords accepted in clear text");
  if ((!o.imaps_listen.empty() || !o.pop3s_listen.empty()) && !app->shared_.tls_configured) {
    return absl::InvalidArgumentError(
        "public-tls-cert: implicit-TLS listeners need --public-tls-cert and --public-tls-key");
  }
  return app;
}

AccessApp::~AccessApp() { Stop(); }

absl::Status AccessApp::Start(const rpc::RunContext& ctx) {
  metrics_ = std::make_unique<AccessMetrics>(ctx.registry);
  shared_.metrics = metrics_.get();
  if (shared_.tls_configured && ctx.registry != nullptr) {
    cert_expiry_ = std::make_unique<metrics::CertificateExpiry>(ctx.registry);
    for (const auto& [listener, address] :
         {std::pair<const char*, const std::string&>{"imap", options_.imap_listen},
          {"imaps", options_.imaps_listen},
          {"pop3", options_.pop3_listen},
          {"pop3s", options_.pop3s_listen}})
      if (!address.empty())
        RETURN_IF_ERROR(cert_expiry_->Watch(listener, options_.public_tls_cert));
  }
  netserver::ServerOptions so;
  so.threads = std::max(1, options_.io_threads);
  so.max_connections = static_cast<size_t>(options_.max_connections);
  so.max_connections_per_ip = static_cast<size_t>(options_.max_connections_per_ip);
  so.idle_timeout = options_.imap_idle_timeout;
  so.tls_cert_file = options_.public_tls_cert;
  so.tls_key_file = options_.public_tls_key;
  so.registry = ctx.registry;
  auto server = netserver::Server::Create(so);
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  struct L {
    const std::string* address;
    const char* name;
    bool tls;
    bool imap;
  };
  const L listeners[] = {{&options_.imap_listen, "imap", false, true},
                         {&options_.imaps_listen, "imaps", true, true},
                         {&options_.pop3_listen, "pop3", false, false},
                         {&options_.pop3s_listen, "pop3s", true, false}};
  for (const L& l : listeners) {
    if (l.address->empty()) continue;
    netserver::ListenerConfig lc;
    lc.name = l.name;
    lc.address = *l.address;
    lc.implicit_tls = l.tls;
    if (l.imap) {
      lc.factory = [this](std::shared_ptr<netserver::Connection> c) {
        return NewImapConnection(shared_, std::move(c));
      };
      lc.over_capacity_reply = "* BYE Too many connections\r\n";
    } else {
      lc.factory = [this](std::shared_ptr<netserver::Connection> c) {
        return NewPop3Connection(shared_, std::move(c));
      };
      lc.over_capacity_reply = "-ERR [SYS/TEMP] Too many connections\r\n";
    }
    absl::StatusOr<int> port = server_->AddListener(std::move(lc));
    if (!port.ok()) return port.status();
    log::Info("listening", {{"listener", l.name}, {"port", *port}});
  }
  return server_->Start();
}

void AccessApp::Drain() {
  if (server_) server_->Shutdown(absl::Seconds(5));
}

void AccessApp::Stop() {
  if (server_) {
    server_->Shutdown(absl::Seconds(1));
    server_.reset();
  }
  // Cancelled streams finish on gRPC's threads; let them before the pool
  // they might still use goes away (bounded: a stuck peer does not hang us).
  for (int i = 0; i < 200 && watch_hub_ && watch_hub_->open_streams() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  watch_hub_.reset();
  // The same for calls on gRPC's callback API: a completion may still hand
  // its call to the pool (the fallback).
  for (int i = 0; i < 200 && shared_.async_mailstore && shared_.async_mailstore->in_flight() > 0;
       ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  pool_.reset();
}

rpc::ServiceDef ServiceDefinition() {
  auto options = std::make_shared<Options>();
  rpc::ServiceDef def;
  def.name = "accessd";
  def.add_flags = [options](config::Flags& f) { AddFlags(f, *options); };
  def.create = [options](const rpc::CommonConfig& common, std::shared_ptr<prometheus::Registry>)
      -> absl::StatusOr<std::unique_ptr<rpc::ServiceApp>> {
    if (!options->tls_ca.empty() && !common.tls_cert.empty()) {
      options->peer_tls.tls_ca_file = options->tls_ca;
      options->peer_tls.tls_cert_file = common.tls_cert;
      options->peer_tls.tls_key_file = common.tls_key;
    }
    auto app = AccessApp::Create(*options);
    if (!app.ok()) return app.status();
    return std::unique_ptr<rpc::ServiceApp>(std::move(*app));
  };
  return def;
}

}  // namespace mailgrid::access
