#include "services/access/connections.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "services/access/compress.h"

namespace mailgrid::access {
namespace {

// Binds completions to the connection's strand; the Post function returns
// the adapter's Resume() output. Post drops the function once the
// connection is closed, so capturing the adapter is safe.
template <typename Adapter>
Poster MakePoster(std::weak_ptr<netserver::Connection> weak, Adapter* adapter) {
  return [weak, adapter](std::function<void()> fn) {
    std::shared_ptr<netserver::Connection> conn = weak.lock();
    if (!conn) return;
    conn->Post([adapter, fn = std::move(fn)] {
      fn();
      return adapter->Resume();
    });
  };
}

class ImapConnection : public netserver::Session {
 public:
  ImapConnection(const Shared& shared, std::shared_ptr<netserver::Connection> conn)
      : shared_(shared),
        conn_(conn),
        auth_(shared.identity, shared.pool, MakePoster(conn, this)),
        backend_(shared.mailstore, shared.pool, MakePoster(conn, this), shared.watch_hub,
                 shared.async_mailstore),
        session_(Config(shared, *conn), &auth_, &backend_) {
    if (shared_.metrics) shared_.metrics->SessionOpened("imap");
    session_.set_on_command_start([this] { started_ = absl::Now(); });
    session_.set_on_command([this](std::string_view name, std::string_view result) {
      if (shared_.metrics) {
        shared_.metrics->Command("imap", name, result, absl::Now() - started_);
      }
    });
  }
  ~ImapConnection() override {
    if (shared_.metrics) {
      if (idling_) shared_.metrics->IdleEnded();
      shared_.metrics->SessionClosed("imap");
    }
  }

  netserver::Output OnConnect() override {
    if (auto c = conn_.lock()) c->SetIdleTimeout(shared_.imap_idle_timeout);
    session_.Start();
    return Resume();
  }
  netserver::Output OnBytes(std::string_view data) override {
    if (!deflate_) {
      session_.Feed(data);
      return Resume();
    }
    // COMPRESS=DEFLATE: a read inflates to at most 32 MiB (a bomb ends the
    // connection instead of the memory); the session's own limits apply to
    // what comes out.
    absl::StatusOr<std::string> plain = deflate_->Inflate(data, 32u << 20);
    if (!plain.ok()) {
      session_.Abort(plain.status().code() == absl::StatusCode::kResourceExhausted
                         ? "Compressed input too large"
                         : "Corrupt compressed input");
    } else {
      session_.Feed(*plain);
    }
    return Resume();
  }
  netserver::Output OnTlsEstablished(const netserver::TlsInfo&) override {
    session_.TlsEstablished();
    return Resume();
  }
  netserver::Output OnTimeout() override {
    session_.Timeout();
    return Resume();
  }
  netserver::Output OnShutdown() override {
    session_.Shutdown();
    return Resume();
  }

  netserver::Output Resume() {
    netserver::Output o;
    o.bytes = session_.TakeOutput();
    if (deflate_ && !o.bytes.empty()) o.bytes = deflate_->Deflate(o.bytes);
    // Compression starts right after the CRLF of COMPRESS's OK, which is
    // the last thing in the (uncompressed) bytes just taken.
    if (session_.TakeStartCompress()) deflate_ = std::make_unique<DeflateStream>();
    o.start_tls = session_.TakeStartTls();
    o.close = session_.closed();
    o.pause_reading = session_.busy();
    if (shared_.metrics && session_.idling() != idling_) {
      idling_ = session_.idling();
      idling_ ? shared_.metrics->IdleStarted() : shared_.metrics->IdleEnded();
    }
    return o;
  }

 private:
  static ImapConfig Config(const Shared& s, const netserver::Connection& conn) {
    ImapConfig c;
    c.hostname = s.hostname;
    c.tls_active = conn.info().implicit_tls;
    c.starttls_offered = s.tls_configured && !conn.info().implicit_tls;
    c.client_ip = conn.info().remote_ip;
    c.plaintext_auth = s.plaintext_auth;
    c.fetch_cache = s.fetch_cache;
    return c;
  }

  const Shared& shared_;
  std::weak_ptr<netserver::Connection> conn_;
  GrpcAuthenticator auth_;
  GrpcMailBackend backend_;
  ImapSession session_;
  std::unique_ptr<DeflateStream> deflate_;  // after COMPRESS DEFLATE
  absl::Time started_ = absl::Now();
  bool idling_ = false;
};

// POP3: the engine asks for decisions; each is answered asynchronously.
class Pop3Connection : public netserver::Session {
 public:
  Pop3Connection(const Shared& shared, std::shared_ptr<netserver::Connection> conn)
      : shared_(shared),
        conn_(conn),
        auth_(shared.identity, shared.pool, MakePoster(conn, this)),
        backend_(shared.mailstore, shared.pool, MakePoster(conn, this)),
        session_(Config(shared, *conn)),
        client_ip_(conn->info().remote_ip) {
    if (shared_.metrics) shared_.metrics->SessionOpened("pop3");
  }
  ~Pop3Connection() override {
    if (shared_.metrics) shared_.metrics->SessionClosed("pop3");
  }

  netserver::Output OnConnect() override {
    if (auto c = conn_.lock()) c->SetIdleTimeout(shared_.pop3_idle_timeout);
    session_.Start();
    return Resume();
  }
  netserver::Output OnBytes(std::string_view data) override {
    session_.Feed(data);
    return Resume();
  }
  netserver::Output OnTlsEstablished(const netserver::TlsInfo&) override { return Resume(); }
  netserver::Output OnTimeout() override {
    session_.Timeout();
    return Resume();
  }
  netserver::Output OnShutdown() override {
    session_.Shutdown();
    return Resume();
  }

  netserver::Output Resume() {
    netserver::Output o;
    for (;;) {
      pop3::Event e = session_.Next();
      if (std::holds_alternative<pop3::event::NeedInput>(e) ||
          std::holds_alternative<pop3::event::Closed>(e) ||
          std::holds_alternative<pop3::event::AwaitingDecision>(e)) {
        break;
      }
      if (std::holds_alternative<pop3::event::StartTls>(e)) {
        if (!shared_.tls_configured) {
          session_.RejectStartTls("TLS not available").IgnoreError();
          continue;
        }
        session_.AcceptStartTls().IgnoreError();
        o.start_tls = true;
        break;  // nothing more until the handshake is done
      }
      Decide(e);
    }
    o.bytes += session_.TakeOutput();
    o.close = session_.closed();
    o.pause_reading = session_.awaiting_decision();
    return o;
  }

 private:
  static pop3::SessionConfig Config(const Shared& s, const netserver::Connection& conn) {
    pop3::SessionConfig c;
    c.hostname = s.hostname;
    c.tls_active = conn.info().implicit_tls;
    c.stls_offered = s.tls_configured && !conn.info().implicit_tls;
    c.auth_requires_tls = !s.plaintext_auth;
    return c;
  }

  void Record(std::string_view what, bool ok) {
    if (shared_.metrics) {
      shared_.metrics->Command("pop3", what, ok ? "OK" : "ERR", absl::Now() - started_);
    }
  }

  CallTarget Target() const {
    return CallTarget{principal_->mailboxes[0].shard(), principal_->authorization};
  }

  void Decide(const pop3::Event& e) {
    started_ = absl::Now();
    if (auto* a = std::get_if<pop3::event::Authenticate>(&e)) {
      auth_.CheckSasl(a->credentials, common::v1::PROTOCOL_POP3, client_ip_,
                      [this](absl::StatusOr<Principal> p) { OnAuth(std::move(p)); });
    } else if (auto* r = std::get_if<pop3::event::Retrieve>(&e)) {
      ms::FetchRequest req;
      req.set_mailbox_id(principal_->mailboxes[0].mailbox_id());
      req.mutable_folder()->set_folder_id(folder_id_);
      ms::IdRange* range = req.mutable_messages()->mutable_uids()->add_ranges();
      range->set_first(r->uid);
      range->set_last(r->uid);
      req.mutable_items()->add_sections();  // BODY[]: the whole message
      backend_.Fetch(Target(), req, [this](absl::StatusOr<std::vector<ms::FetchResponse>> f) {
        bool ok = f.ok() && !f->empty() && f->front().sections_size() > 0 &&
                  f->front().sections(0).has_data();
        Record("RETR", ok);
        if (ok) {
          session_.Deliver(f->front().sections(0).data()).IgnoreError();
        } else {
          session_.FailRetrieve("Message temporarily unavailable").IgnoreError();
        }
      });
    } else if (auto* c = std::get_if<pop3::event::Commit>(&e)) {
      // Expunge needs \Deleted first (the store's IMAP semantics).
      std::vector<uint32_t> uids = c->deleted_uids;
      std::sort(uids.begin(), uids.end());
      ms::StoreFlagsRequest store;
      store.set_mailbox_id(principal_->mailboxes[0].mailbox_id());
      store.mutable_folder()->set_folder_id(folder_id_);
      *store.mutable_messages()->mutable_uids() = CompactIdSet(uids);
      store.set_mode(ms::STORE_MODE_ADD);
      store.add_flags("\\Deleted");
      backend_.StoreFlags(Target(), store, [this, uids](absl::StatusOr<ms::StoreFlagsResponse> s) {
        if (!s.ok()) {
          Record("QUIT", false);
          session_.CommitDone(s.status()).IgnoreError();
          return;
        }
        ms::ExpungeRequest ex;
        ex.set_mailbox_id(principal_->mailboxes[0].mailbox_id());
        ex.mutable_folder()->set_folder_id(folder_id_);
        *ex.mutable_uids() = CompactIdSet(uids);
        backend_.Expunge(Target(), ex, [this](absl::StatusOr<ms::ExpungeResponse> r) {
          Record("QUIT", r.ok());
          session_.CommitDone(r.status()).IgnoreError();
        });
      });
    }
  }

  void OnAuth(absl::StatusOr<Principal> p) {
    if (!p.ok() || p->mailboxes.empty()) {
      Record("AUTH", false);
      bool temporary = !p.ok() && p.status().code() != absl::StatusCode::kUnauthenticated &&
                       p.status().code() != absl::StatusCode::kInvalidArgument;
      session_
          .RejectAuth(temporary,
                      temporary ? "Service temporarily unavailable" : "Authentication failed")
          .IgnoreError();
      return;
    }
    principal_ = *std::move(p);
    // The maildrop: INBOX's UIDs, then their sizes.
    ms::FolderStatusRequest st;
    st.set_mailbox_id(principal_->mailboxes[0].mailbox_id());
    st.mutable_folder()->set_special_use(ms::SPECIAL_USE_INBOX);
    st.set_include_uids(true);
    backend_.FolderStatus(Target(), st, [this](absl::StatusOr<ms::FolderStatusResponse> s) {
      if (!s.ok()) return FailMaildrop();
      folder_id_ = s->folder().folder_id();
      uidvalidity_ = s->folder().uidvalidity();
      if (s->folder().messages() == 0) {
        Record("AUTH", true);
        session_.AcceptAuth({}).IgnoreError();
        return;
      }
      ms::FetchRequest f;
      f.set_mailbox_id(principal_->mailboxes[0].mailbox_id());
      f.mutable_folder()->set_folder_id(folder_id_);
      *f.mutable_messages()->mutable_uids() = s->uids();
      f.mutable_items()->set_rfc822_size(true);
      backend_.Fetch(Target(), f, [this](absl::StatusOr<std::vector<ms::FetchResponse>> r) {
        if (!r.ok()) return FailMaildrop();
        std::vector<pop3::MaildropEntry> drop;
        for (const ms::FetchResponse& m : *r) {
          drop.push_back({m.uid(), m.rfc822_size(), absl::StrCat(uidvalidity_, ".", m.uid())});
        }
        Record("AUTH", true);
        session_.AcceptAuth(std::move(drop)).IgnoreError();
      });
    });
  }

  void FailMaildrop() {
    Record("AUTH", false);
    session_.RejectAuth(true, "Maildrop temporarily unavailable").IgnoreError();
  }

  const Shared& shared_;
  std::weak_ptr<netserver::Connection> conn_;
  GrpcAuthenticator auth_;
  GrpcMailBackend backend_;
  pop3::Session session_;
  std::string client_ip_;
  std::optional<Principal> principal_;
  std::string folder_id_;
  uint32_t uidvalidity_ = 0;
  absl::Time started_ = absl::Now();
};

}  // namespace

std::unique_ptr<netserver::Session> NewImapConnection(const Shared& shared,
                                                      std::shared_ptr<netserver::Connection> conn) {
  return std::make_unique<ImapConnection>(shared, std::move(conn));
}

std::unique_ptr<netserver::Session> NewPop3Connection(const Shared& shared,
                                                      std::shared_ptr<netserver::Connection> conn) {
  return std::make_unique<Pop3Connection>(shared, std::move(conn));
}

}  // namespace mailgrid::access
