// mailstore_load: drives a mailstored shard through libs/mailstore_client.
//
//   --mode=chaos  appends --messages messages to one mailbox from --writers
//                 writers (each append retried with its idempotency key until
//                 acknowledged) while a Watch stream records every added UID;
//                 meanwhile the caller kills leaders. Then checks: every
//                 acknowledged append is present exactly once with its UID,
//                 each writer's UIDs only went up, the Watch saw every one.
//                 Prints one JSON line; exit 1 if a check failed.
//   --mode=bench  --writers concurrent writers append --size-byte messages
//                 (distinct bodies) to their own mailboxes for --messages in
//                 total; prints messages/s and latency percentiles. With
//                 --large=N, then fills one folder with N messages and times
//                 FolderStatus, FETCH FLAGS of the last 100 and a subject search.
//   --mode=deliver --messages DeliverBatch calls (distinct 10 KB bodies, each
//                 with a delivery id) to the same --recipients mailboxes,
//                 --writers at a time (relayd's shape: a message to a group);
//                 prints calls/s, copies/s and per-call latency, then checks
//                 every mailbox holds exactly --messages messages.
//   --mode=onebox --messages single-recipient DeliverBatch calls (relayd's
//                 shape for one recipient) from --writers writers, first all
//                 to ONE mailbox, then spread over --writers mailboxes; prints
//                 deliveries/s of both (group UID allocation makes them close).
//   --mode=large  fills ONE folder with --large messages of --size bytes via
//                 single-recipient DeliverBatch from --writers writers, and
//                 with --rawdb=DIR writes the same bytes, uncompressed, into a
//                 plain RocksDB (compacted at the end) for the disk ratio;
//                 then times FolderStatus, FETCH FLAGS of the last 100, UID
//                 SEARCH of a subject word (rare and common), ChangesSince of
//                 the last 10 changes.
//                 With --mix: a realistic mix instead of --size bytes (MixBody:
//                 half small text, a quarter text+HTML, a fifth with
//                 incompressible attachments; one in five also delivered to
//                 4 other mailboxes in the same call, as group mail is).
//   --mode=lmtp   the peer of --mode=bench: --writers LMTP connections to
//                 --lmtp=host:port (a private Dovecot), writer w delivering
//                 to <prefix>w<w>@<--lmtp-domain>, --messages of --size bytes
//                 in total (the same generator and bodies as --mode=bench);
//                 prints the same JSON (messages/s, p50, p99) as bench.
//   --mode=watchfan --streams=N Watch streams on ONE mailbox (as N IMAP IDLE
//                 sessions without accessd's sharing would open), then one
//                 append: prints how long until every stream saw it.
//   --mode=dbstat --db=DIR (a stopped replica's RocksDB): compacts every
//                 column family and prints its SST bytes (data vs Raft log).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "libs/auth/service_token.h"
#include "libs/base/status.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "bench/mailstore/bench_args.h"
#include "bench/mailstore/bench_client.h"
#include "bench/mailstore/bodies.h"

namespace ms = mailgrid::mailstore_client;
namespace v1 = mailgrid::mailstore::v1;

namespace {

using mailgrid::bench::Body;
using mailgrid::bench::ConnectMailstore;
using mailgrid::bench::FlagValue;
using mailgrid::bench::kWords;
using mailgrid::bench::MixBody;

struct Args {
  std::string mode = "bench", mailstored, key, tenant = "bench-t", prefix = "m";
  int writers = 32, messages = 2000, size = 10240, large = 0, recipients = 50, streams = 1000;
  bool mix = false;
  bool no_fill = false;  // --mode=large on a folder filled before (mailstore_fill)
  std::string rawdb, db;
  std::string lmtp, lmtp_domain = "bench.local";
};

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto val = [&](const char* name) { return FlagValue(argv[i], name); };
    if (auto v = val("mode")) a->mode = v;
    else if (auto v = val("mailstored")) a->mailstored = v;
    else if (auto v = val("signing-key")) a->key = v;
    else if (auto v = val("tenant")) a->tenant = v;
    else if (auto v = val("prefix")) a->prefix = v;
    else if (auto v = val("writers")) a->writers = std::atoi(v);
    else if (auto v = val("messages")) a->messages = std::atoi(v);
    else if (auto v = val("size")) a->size = std::atoi(v);
    else if (auto v = val("large")) a->large = std::atoi(v);
    else if (auto v = val("recipients")) a->recipients = std::atoi(v);
    else if (auto v = val("streams")) a->streams = std::atoi(v);
    else if (auto v = val("rawdb")) a->rawdb = v;
    else if (auto v = val("db")) a->db = v;
    else if (auto v = val("lmtp")) a->lmtp = v;
    else if (auto v = val("lmtp-domain")) a->lmtp_domain = v;
    else if (s == "--mix") a->mix = true;
    else if (s == "--no-fill") a->no_fill = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return false;
    }
  }
  if (a->mode == "dbstat") return !a->db.empty();
  if (a->mode == "lmtp") return !a->lmtp.empty();
  return !a->mailstored.empty() && !a->key.empty();
}

absl::Status CreateMailbox(ms::MailstoreClient& c, const std::string& id, const std::string& tenant) {
  v1::CreateMailboxRequest r;
  r.set_mailbox_id(id);
  r.set_tenant_id(tenant);
  r.set_owner_id("owner-" + id);
  r.set_kind(mailgrid::common::v1::MAILBOX_KIND_USER);
  ms::CallOptions o;
  o.timeout = absl::Seconds(60);
  return c.CreateMailbox(0, r, o).status();
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// A blocking LMTP client (RFC 2033) for the Dovecot side of the bench: one
// connection, commands in lock step (no PIPELINING), as a simple MTA does.
class Lmtp {
 public:
  ~Lmtp() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Connect(const std::string& hostport) {
    auto colon = hostport.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::atoi(hostport.c_str() + colon + 1)));
    if (colon == std::string::npos ||
        inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &sa.sin_addr) != 1)
      return absl::InvalidArgumentError("--lmtp wants ipv4:port");
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return absl::UnavailableError("lmtp connect failed");
    RETURN_IF_ERROR(Expect("220"));
    return Command("LHLO load.local\r\n", "250");
  }
  // One message to one recipient: MAIL, RCPT, DATA, the dot-stuffed body.
  absl::Status Deliver(const std::string& rcpt, const std::string& message) {
    RETURN_IF_ERROR(Command("MAIL FROM:<load@example.com>\r\n", "250"));
    RETURN_IF_ERROR(Command(absl::StrCat("RCPT TO:<", rcpt, ">\r\n"), "250"));
    RETURN_IF_ERROR(Command("DATA\r\n", "354"));
    std::string data;
    data.reserve(message.size() + 64);
    bool bol = true;
    for (char c : message) {
      if (bol && c == '.') data += '.';
      data += c;
      bol = c == '\n';
    }
    if (!bol) data += "\r\n";
    data += ".\r\n";
    return Command(data, "250");  // one reply per RCPT (one here)
  }

 private:
  absl::Status Command(const std::string& out, const char* want) {
    for (size_t off = 0; off < out.size();) {
      ssize_t n = ::send(fd_, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return absl::UnavailableError("lmtp send failed");
      off += static_cast<size_t>(n);
    }
    return Expect(want);
  }
  // Reads one (possibly multi-line) reply; its code must start with `want`.
  absl::Status Expect(const char* want) {
    for (;;) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        char tmp[4096];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) return absl::UnavailableError("lmtp connection closed");
        buf_.append(tmp, static_cast<size_t>(n));
      }
      std::string line = buf_.substr(0, eol);
      buf_.erase(0, eol + 2);
      if (line.size() >= 4 && line[3] == '-') continue;
      if (line.rfind(want, 0) != 0) return absl::InternalError("lmtp: " + line);
      return absl::OkStatus();
    }
  }
  int fd_ = -1;
  std::string buf_;
};

int LmtpBench(const Args& a) {
  std::atomic<int> next{0}, errors{0};
  std::mutex lmu;
  std::vector<double> lat;
  std::vector<std::thread> threads;
  std::string first_error;
  absl::Time start = absl::Now();
  for (int w = 0; w < a.writers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(1000 + w);  // the same bodies as Bench
      std::vector<double> mine;
      Lmtp conn;
      absl::Status s = conn.Connect(a.lmtp);
      std::string rcpt = absl::StrCat(a.prefix, "w", w, "@", a.lmtp_domain);
      for (;;) {
        int n = next++;
        if (n >= a.messages) break;
        std::string body = Body(rng, a.size, absl::StrCat("bench ", n), absl::StrCat("b", n));
        absl::Time t0 = absl::Now();
        if (s.ok()) s = conn.Deliver(rcpt, body);
        if (!s.ok()) {
          ++errors;
          std::lock_guard<std::mutex> l(lmu);
          if (first_error.empty()) first_error = s.ToString();
          continue;
        }
        mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      }
      std::lock_guard<std::mutex> l(lmu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  if (!first_error.empty()) std::fprintf(stderr, "lmtp: %s\n", first_error.c_str());
  std::printf("{\"append_messages\":%d,\"writers\":%d,\"size\":%d,\"seconds\":%.2f,"
              "\"messages_per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"errors\":%d}\n",
              a.messages, a.writers, a.size, secs, (a.messages - errors) / secs, Pct(lat, 0.5),
              Pct(lat, 0.99), errors.load());
  return errors == 0 ? 0 : 1;
}

int WatchFan(ms::MailstoreClient& c, const Args& a) {
  std::string mbx = a.prefix + "-fan";
  if (auto s = CreateMailbox(c, mbx, a.tenant); !s.ok()) {
    std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
    return 2;
  }
  std::atomic<int> ready{0}, seen{0}, ended{0};
  std::mutex mu;
  std::vector<double> at;  // ms after the append's answer
  absl::Time appended = absl::InfiniteFuture();
  std::vector<std::thread> streams;
  absl::Time t0 = absl::Now();
  for (int i = 0; i < a.streams; ++i) {
    streams.emplace_back([&] {
      v1::WatchRequest w;
      w.set_mailbox_id(mbx);
      ms::CallOptions o;
      o.timeout = absl::Minutes(10);
      (void)c.Watch(0, w, [&](const v1::WatchEvent& e) {
        if (e.kind() == v1::WATCH_EVENT_KIND_READY) ++ready;
        if (e.kind() != v1::WATCH_EVENT_KIND_MESSAGES_ADDED) return true;
        std::lock_guard<std::mutex> l(mu);
        at.push_back(absl::ToDoubleMilliseconds(absl::Now() - appended));
        ++seen;
        return false;
      }, nullptr, o);
      ++ended;
    });
  }
  while (ready.load() < a.streams && ended.load() == 0) absl::SleepFor(absl::Milliseconds(20));
  double open_s = absl::ToDoubleSeconds(absl::Now() - t0);
  v1::AppendRequest r;
  r.set_mailbox_id(mbx);
  r.mutable_folder()->set_name("INBOX");
  r.set_message("Subject: fan\r\n\r\nnew mail\r\n");
  absl::Time before = absl::Now();
  {
    std::lock_guard<std::mutex> l(mu);
    appended = before;
  }
  auto resp = c.Append(0, r);
  double append_ms = absl::ToDoubleMilliseconds(absl::Now() - before);
  while (seen.load() + ended.load() < a.streams) absl::SleepFor(absl::Milliseconds(5));
  for (auto& t : streams) t.join();
  std::printf("{\"streams\":%d,\"ready\":%d,\"saw_it\":%d,\"open_s\":%.1f,\"append_ms\":%.1f,"
              "\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"all_ms\":%.1f}\n",
              a.streams, ready.load(), seen.load(), open_s, append_ms, Pct(at, 0.5), Pct(at, 0.99),
              Pct(at, 1.0));
  return resp.ok() && seen.load() == a.streams ? 0 : 1;
}

int Chaos(ms::MailstoreClient& c, const Args& a) {
  std::string mbx = a.prefix + "-chaos";
  if (auto s = CreateMailbox(c, mbx, a.tenant); !s.ok()) {
    std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
    return 2;
  }
  // The watcher.
  std::mutex wmu;
  std::set<uint32_t> watched;
  std::atomic<int> reconnects{0};
  ms::WatchControl control;
  std::thread watcher([&] {
    v1::WatchRequest w;
    w.set_mailbox_id(mbx);
    ms::CallOptions o;
    o.timeout = absl::Seconds(120);
    auto s = c.Watch(0, w, [&](const v1::WatchEvent& e) {
      if (e.kind() == v1::WATCH_EVENT_KIND_READY) ++reconnects;
      if (e.kind() == v1::WATCH_EVENT_KIND_MESSAGES_ADDED) {
        std::lock_guard<std::mutex> l(wmu);
        for (const auto& r : e.uids().ranges())
          for (uint32_t u = r.first(); u <= r.last(); ++u) watched.insert(u);
      }
      return true;
    }, &control, o);
    if (!s.ok()) std::fprintf(stderr, "watch ended: %s\n", s.ToString().c_str());
  });
  absl::SleepFor(absl::Milliseconds(500));
  std::atomic<int> next{0}, failed{0}, backwards{0};
  std::mutex amu;
  std::map<std::string, uint32_t> acked;
  std::vector<std::thread> threads;
  absl::Time start = absl::Now();
  for (int w = 0; w < a.writers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(w);
      uint32_t last = 0;
      for (;;) {
        int n = next++;
        if (n >= a.messages) return;
        std::string key = absl::StrCat("k", n);
        v1::AppendRequest r;
        r.set_mailbox_id(mbx);
        r.mutable_folder()->set_name("INBOX");
        r.set_idempotency_key(key);
        r.set_message(Body(rng, 1024, absl::StrCat("chaos ", n), key));
        absl::Time give_up = absl::Now() + absl::Seconds(120);
        for (;;) {
          ms::CallOptions o;
          o.timeout = absl::Seconds(20);
          auto resp = c.Append(0, r, o);
          if (resp.ok()) {
            if (resp->uid() <= last) ++backwards;
            last = resp->uid();
            std::lock_guard<std::mutex> l(amu);
            acked[key] = resp->uid();
            break;
          }
          if (absl::Now() > give_up) {
            ++failed;
            std::fprintf(stderr, "append %s gave up: %s\n", key.c_str(), resp.status().ToString().c_str());
            break;
          }
          absl::SleepFor(absl::Milliseconds(100));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  // Every acknowledged append, exactly once, with its UID.
  std::map<std::string, std::vector<uint32_t>> found;
  v1::FetchRequest f;
  f.set_mailbox_id(mbx);
  f.mutable_folder()->set_name("INBOX");
  f.mutable_messages()->mutable_uids()->add_ranges()->set_first(1);
  f.mutable_messages()->mutable_uids()->mutable_ranges(0)->set_to_last(true);
  auto* sec = f.mutable_items()->add_sections();
  sec->set_text(v1::SECTION_TEXT_HEADER_FIELDS);
  sec->add_header_fields("X-Key");
  ms::CallOptions fo;
  fo.timeout = absl::Seconds(120);
  size_t total = 0;
  auto fs = c.Fetch(0, f, [&](v1::FetchResponse&& m) {
    ++total;
    std::string h = m.sections(0).data();  // "X-Key: kN\r\n\r\n"
    size_t colon = h.find(':');
    std::string key = colon == std::string::npos ? "" : h.substr(colon + 2, h.find('\r') - colon - 2);
    found[key].push_back(m.uid());
    return true;
  }, fo);
  if (!fs.ok()) {
    std::fprintf(stderr, "fetch: %s\n", fs.ToString().c_str());
    return 2;
  }
  absl::SleepFor(absl::Seconds(2));  // let the watcher drain
  control.Cancel();
  watcher.join();
  int missing = 0, dup = 0, wrong_uid = 0, watch_missing = 0;
  for (const auto& [key, uid] : acked) {
    auto it = found.find(key);
    if (it == found.end()) { ++missing; continue; }
    if (it->second.size() != 1) ++dup;
    if (it->second[0] != uid) ++wrong_uid;
    std::lock_guard<std::mutex> l(wmu);
    if (!watched.count(uid)) ++watch_missing;
  }
  bool ok = missing == 0 && dup == 0 && wrong_uid == 0 && backwards == 0 && watch_missing == 0 &&
            failed == 0 && static_cast<int>(acked.size()) == a.messages;
  std::printf("{\"ok\":%s,\"acked\":%zu,\"stored\":%zu,\"missing\":%d,\"duplicates\":%d,"
              "\"wrong_uid\":%d,\"uid_backwards\":%d,\"gave_up\":%d,\"watch_missing\":%d,"
              "\"watch_ready_events\":%d,\"seconds\":%.1f}\n",
              ok ? "true" : "false", acked.size(), total, missing, dup, wrong_uid, backwards.load(),
              failed.load(), watch_missing, reconnects.load(), secs);
  return ok ? 0 : 1;
}

int Bench(ms::MailstoreClient& c, const Args& a) {
  for (int w = 0; w < a.writers; ++w) {
    if (auto s = CreateMailbox(c, absl::StrCat(a.prefix, "-w", w), a.tenant); !s.ok()) {
      std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
      return 2;
    }
  }
  std::atomic<int> next{0}, errors{0};
  std::mutex lmu;
  std::vector<double> lat;
  std::vector<std::thread> threads;
  absl::Time start = absl::Now();
  for (int w = 0; w < a.writers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(1000 + w);
      std::vector<double> mine;
      for (;;) {
        int n = next++;
        if (n >= a.messages) break;
        v1::AppendRequest r;
        r.set_mailbox_id(absl::StrCat(a.prefix, "-w", w));
        r.mutable_folder()->set_name("INBOX");
        r.set_message(Body(rng, a.size, absl::StrCat("bench ", n), absl::StrCat("b", n)));
        absl::Time t0 = absl::Now();
        auto resp = c.Append(0, r);
        if (!resp.ok()) ++errors;
        mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      }
      std::lock_guard<std::mutex> l(lmu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("{\"append_messages\":%d,\"writers\":%d,\"size\":%d,\"seconds\":%.2f,"
              "\"messages_per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"errors\":%d}\n",
              a.messages, a.writers, a.size, secs, a.messages / secs, Pct(lat, 0.5), Pct(lat, 0.99),
              errors.load());
  std::fflush(stdout);
  if (a.large <= 0) return errors == 0 ? 0 : 1;

  // A large folder: N messages into one mailbox (writers share it).
  std::string big = a.prefix + "-large";
  if (auto s = CreateMailbox(c, big, a.tenant); !s.ok()) return 2;
  std::atomic<int> filled{0};
  threads.clear();
  absl::Time fill_start = absl::Now();
  for (int w = 0; w < 8; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(5000 + w);
      for (;;) {
        int n = filled++;
        if (n >= a.large) return;
        v1::AppendRequest r;
        r.set_mailbox_id(big);
        r.mutable_folder()->set_name("INBOX");
        if (n % 3 == 0) r.add_flags("\\Seen");
        std::string subject = n == a.large / 2 ? "needle unicorn" : absl::StrCat("bulk ", n);
        r.set_message(Body(rng, 2048, subject, absl::StrCat("L", n)));
        if (!c.Append(0, r).ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  double fill_secs = absl::ToDoubleSeconds(absl::Now() - fill_start);
  std::vector<double> status_ms, flags_ms, search_ms;
  uint32_t uidnext = 0;
  for (int i = 0; i < 50; ++i) {
    v1::FolderStatusRequest r;
    r.set_mailbox_id(big);
    r.mutable_folder()->set_name("INBOX");
    absl::Time t0 = absl::Now();
    auto s = c.FolderStatus(0, r);
    status_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    if (s.ok()) uidnext = s->folder().uidnext();
  }
  for (int i = 0; i < 50; ++i) {
    v1::FetchRequest f;
    f.set_mailbox_id(big);
    f.mutable_folder()->set_name("INBOX");
    auto* r = f.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(uidnext > 100 ? uidnext - 100 : 1);
    r->set_to_last(true);
    f.mutable_items()->set_flags(true);
    absl::Time t0 = absl::Now();
    auto got = c.FetchAll(0, f);
    flags_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    if (!got.ok() || got->size() != 100) ++errors;
  }
  uint32_t hits = 0;
  for (int i = 0; i < 10; ++i) {
    v1::SearchRequest s;
    s.set_mailbox_id(big);
    s.mutable_folder()->set_name("INBOX");
    s.mutable_query()->mutable_text()->set_field(v1::TEXT_FIELD_SUBJECT);
    s.mutable_query()->mutable_text()->set_value("unicorn");
    absl::Time t0 = absl::Now();
    auto res = c.Search(0, s);
    search_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    if (res.ok()) hits = res->count();
  }
  std::printf("{\"large_folder\":%d,\"fill_seconds\":%.1f,\"folder_status_p50_ms\":%.2f,"
              "\"folder_status_p99_ms\":%.2f,\"fetch_flags_last100_p50_ms\":%.2f,"
              "\"fetch_flags_last100_p99_ms\":%.2f,\"subject_search_p50_ms\":%.2f,\"search_hits\":%u,"
              "\"errors\":%d}\n",
              a.large, fill_secs, Pct(status_ms, 0.5), Pct(status_ms, 0.99), Pct(flags_ms, 0.5),
              Pct(flags_ms, 0.99), Pct(search_ms, 0.5), hits, errors.load());
  return errors == 0 ? 0 : 1;
}

int Deliver(ms::MailstoreClient& c, const Args& a) {
  for (int r = 0; r < a.recipients; ++r) {
    if (auto s = CreateMailbox(c, absl::StrCat(a.prefix, "-r", r), a.tenant); !s.ok()) {
      std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
      return 2;
    }
  }
  std::atomic<int> next{0}, errors{0}, copies{0};
  std::mutex lmu;
  std::vector<double> lat;
  std::vector<std::thread> threads;
  absl::Time start = absl::Now();
  for (int w = 0; w < a.writers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(9000 + w);
      std::vector<double> mine;
      for (;;) {
        int n = next++;
        if (n >= a.messages) break;
        v1::DeliverBatchRequest d;
        d.set_delivery_id(absl::StrCat(a.prefix, "-d", n));
        d.set_message(Body(rng, a.size, absl::StrCat("group ", n), absl::StrCat("g", n)));
        for (int r = 0; r < a.recipients; ++r) {
          auto* t = d.add_recipients();
          t->set_mailbox_id(absl::StrCat(a.prefix, "-r", r));
          t->set_prepend_headers(absl::StrCat("Delivered-To: r", r, "@example.com\r\n"));
        }
        absl::Time t0 = absl::Now();
        auto resp = c.DeliverBatch(0, d);
        mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
        if (!resp.ok()) {
          ++errors;
          continue;
        }
        for (const auto& res : resp->results()) {
          if (res.status() == v1::DELIVERY_STATUS_DELIVERED ||
              res.status() == v1::DELIVERY_STATUS_DUPLICATE) {
            ++copies;
          } else {
            ++errors;
          }
        }
      }
      std::lock_guard<std::mutex> l(lmu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  // Every mailbox holds each message exactly once.
  int wrong_count = 0;
  for (int r = 0; r < a.recipients; ++r) {
    v1::FolderStatusRequest s;
    s.set_mailbox_id(absl::StrCat(a.prefix, "-r", r));
    s.mutable_folder()->set_name("INBOX");
    auto st = c.FolderStatus(0, s);
    if (!st.ok() || st->folder().messages() != static_cast<uint32_t>(a.messages)) ++wrong_count;
  }
  std::printf("{\"deliver_calls\":%d,\"recipients\":%d,\"writers\":%d,\"size\":%d,\"seconds\":%.2f,"
              "\"calls_per_s\":%.2f,\"copies_per_s\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,"
              "\"errors\":%d,\"mailboxes_with_wrong_count\":%d}\n",
              a.messages, a.recipients, a.writers, a.size, secs, a.messages / secs,
              copies.load() / secs, Pct(lat, 0.5), Pct(lat, 0.99), errors.load(), wrong_count);
  return errors == 0 && wrong_count == 0 ? 0 : 1;
}

// Single-recipient deliveries: to one mailbox, then to one mailbox per writer.
int Onebox(ms::MailstoreClient& c, const Args& a) {
  std::string one = a.prefix + "-one";
  if (auto s = CreateMailbox(c, one, a.tenant); !s.ok()) {
    std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
    return 2;
  }
  for (int w = 0; w < a.writers; ++w)
    if (!CreateMailbox(c, absl::StrCat(a.prefix, "-many", w), a.tenant).ok()) return 2;
  int rc = 0;
  for (bool spread : {false, true}) {
    std::atomic<int> next{0}, errors{0};
    std::mutex lmu;
    std::vector<double> lat;
    std::vector<std::thread> threads;
    absl::Time start = absl::Now();
    for (int w = 0; w < a.writers; ++w) {
      threads.emplace_back([&, w] {
        std::mt19937_64 rng(7000 + w);
        std::vector<double> mine;
        for (;;) {
          int n = next++;
          if (n >= a.messages) break;
          v1::DeliverBatchRequest d;
          d.set_delivery_id(absl::StrCat(a.prefix, spread ? "-s" : "-o", n));
          d.set_message(Body(rng, a.size, absl::StrCat("one ", n), absl::StrCat(spread, "o", n)));
          d.add_recipients()->set_mailbox_id(spread ? absl::StrCat(a.prefix, "-many", w) : one);
          absl::Time t0 = absl::Now();
          auto resp = c.DeliverBatch(0, d);
          mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
          if (!resp.ok() || resp->results(0).status() != v1::DELIVERY_STATUS_DELIVERED) ++errors;
        }
        std::lock_guard<std::mutex> l(lmu);
        lat.insert(lat.end(), mine.begin(), mine.end());
      });
    }
    for (auto& t : threads) t.join();
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf("{\"target\":\"%s\",\"deliveries\":%d,\"writers\":%d,\"size\":%d,\"seconds\":%.2f,"
                "\"deliveries_per_s\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"errors\":%d}\n",
                spread ? "one mailbox per writer" : "ONE mailbox", a.messages, a.writers, a.size,
                secs, a.messages / secs, Pct(lat, 0.5), Pct(lat, 0.99), errors.load());
    std::fflush(stdout);
    if (errors != 0) rc = 1;
  }
  return rc;
}

template <typename F>
std::vector<double> Timed(int n, F&& f) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    absl::Time t0 = absl::Now();
    f();
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  return ms;
}

int LargeFill(ms::MailstoreClient& c, const Args& a, const std::string& big);
int LargeQueries(ms::MailstoreClient& c, const std::string& big, std::atomic<int>& errors);

// One folder of --large messages, then the reads a client does on it.
int Large(ms::MailstoreClient& c, const Args& a) {
  std::string big = a.prefix + "-large";
  std::atomic<int> errors{0};
  if (!a.no_fill) {
    int rc = LargeFill(c, a, big);
    if (rc != 0) return rc;
  }
  return LargeQueries(c, big, errors);
}

// Creates the large mailbox and fills it through DeliverBatch.
int LargeFill(ms::MailstoreClient& c, const Args& a, const std::string& big) {
  if (auto s = CreateMailbox(c, big, a.tenant); !s.ok()) {
    std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
    return 2;
  }
  constexpr int kGroup = 4;  // --mix: the other recipients of group mail
  if (a.mix) {
    for (int g = 0; g < kGroup; ++g) {
      if (auto s = CreateMailbox(c, absl::StrCat(big, "-g", g), a.tenant); !s.ok()) {
        std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
        return 2;
      }
    }
  }
  std::unique_ptr<rocksdb::DB> raw;
  if (!a.rawdb.empty()) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.compression = rocksdb::kNoCompression;
    o.bottommost_compression = rocksdb::kNoCompression;
    rocksdb::DB* db = nullptr;
    rocksdb::Status st = rocksdb::DB::Open(o, a.rawdb, &db);
    if (!st.ok()) {
      std::fprintf(stderr, "rawdb: %s\n", st.ToString().c_str());
      return 2;
    }
    raw.reset(db);
  }
  std::atomic<int> filled{0}, errors{0};
  std::atomic<uint64_t> raw_bytes{0};
  std::vector<std::thread> threads;
  absl::Time fill_start = absl::Now();
  const int step = std::max(1, a.large / 20);
  for (int w = 0; w < a.writers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(5000 + w);
      for (;;) {
        int n = filled++;
        if (n >= a.large) return;
        if (n % step == 0 && n > 0) {
          std::fprintf(stderr, "filled %d (%.0f s)\n", n,
                       absl::ToDoubleSeconds(absl::Now() - fill_start));
        }
        v1::DeliverBatchRequest d =
            mailgrid::bench::LargeDelivery(rng, a.prefix, big, n, a.large, w, a.size, a.mix);
        int copies = 1;
        if (a.mix && n % 5 == 0) {
          for (int g = 0; g < kGroup; ++g, ++copies) {
            auto* o = d.add_recipients();
            o->set_mailbox_id(absl::StrCat(big, "-g", g));
            o->set_prepend_headers(absl::StrCat("Delivered-To: g", g, "@example.com\r\n"));
          }
        }
        for (int attempt = 0;; ++attempt) {
          auto resp = c.DeliverBatch(0, d);
          if (resp.ok() && (resp->results(0).status() == v1::DELIVERY_STATUS_DELIVERED ||
                            resp->results(0).status() == v1::DELIVERY_STATUS_DUPLICATE))
            break;
          if (attempt >= 5) {
            ++errors;
            break;
          }
          absl::SleepFor(absl::Milliseconds(200));
        }
        // Raw: every recipient's copy, as a store without dedupe keeps it.
        for (int k = 0; k < copies; ++k) {
          const std::string& pre = d.recipients(k).prepend_headers();
          raw_bytes += pre.size() + d.message().size();
          if (raw) {
            std::string key;
            for (int i = 3; i >= 0; --i) key.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
            key.push_back(static_cast<char>(k));
            raw->Put(rocksdb::WriteOptions(), key, pre + d.message());
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double fill_secs = absl::ToDoubleSeconds(absl::Now() - fill_start);
  if (raw) {
    raw->Flush(rocksdb::FlushOptions());
    raw->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr);
    raw.reset();
  }
  std::printf("{\"large_folder\":%d,\"size\":%d,\"writers\":%d,\"fill_seconds\":%.1f,"
              "\"fill_messages_per_s\":%.1f,\"raw_bytes\":%llu,\"errors\":%d}\n",
              a.large, a.size, a.writers, fill_secs, a.large / fill_secs,
              static_cast<unsigned long long>(raw_bytes.load()), errors.load());
  std::fflush(stdout);
  return errors == 0 ? 0 : 1;
}

// The reads a client does on the large folder (and 10 flag changes).
int LargeQueries(ms::MailstoreClient& c, const std::string& big, std::atomic<int>& errors) {
  uint32_t uidnext = 0, messages = 0;
  auto status_ms = Timed(100, [&] {
    v1::FolderStatusRequest r;
    r.set_mailbox_id(big);
    r.mutable_folder()->set_name("INBOX");
    auto s = c.FolderStatus(0, r);
    if (s.ok()) uidnext = s->folder().uidnext(), messages = s->folder().messages();
    else ++errors;
  });
  auto flags_ms = Timed(100, [&] {
    v1::FetchRequest f;
    f.set_mailbox_id(big);
    f.mutable_folder()->set_name("INBOX");
    auto* r = f.mutable_messages()->mutable_uids()->add_ranges();
    r->set_first(uidnext > 100 ? uidnext - 100 : 1);
    r->set_to_last(true);
    f.mutable_items()->set_flags(true);
    auto got = c.FetchAll(0, f);
    if (!got.ok() || got->size() != 100) ++errors;
  });
  uint32_t rare_hits = 0, common_hits = 0;
  auto search = [&](const char* word, uint32_t* hits) {
    v1::SearchRequest s;
    s.set_mailbox_id(big);
    s.mutable_folder()->set_name("INBOX");
    s.mutable_query()->mutable_text()->set_field(v1::TEXT_FIELD_SUBJECT);
    s.mutable_query()->mutable_text()->set_value(word);
    auto res = c.Search(0, s);
    if (res.ok()) *hits = res->count();
    else ++errors;
  };
  auto rare_ms = Timed(20, [&] { search("unicorn", &rare_hits); });
  auto common_ms = Timed(10, [&] { search("invoice", &common_hits); });
  // Every subject has "bulk": the worst case, every message a hit.
  uint32_t all_hits = 0;
  auto all_ms = Timed(5, [&] { search("bulk", &all_hits); });
  // The last 10 changes: flags on 10 messages, then what changed since.
  uint64_t before = 0;
  {
    v1::FolderStatusRequest r;
    r.set_mailbox_id(big);
    r.mutable_folder()->set_name("INBOX");
    auto s = c.FolderStatus(0, r);
    if (s.ok()) before = s->folder().highest_modseq();
  }
  std::mt19937_64 rng(11);
  for (int i = 0; i < 10; ++i) {
    v1::StoreFlagsRequest sf;
    sf.set_mailbox_id(big);
    sf.mutable_folder()->set_name("INBOX");
    auto* r = sf.mutable_messages()->mutable_uids()->add_ranges();
    uint32_t uid = 1 + static_cast<uint32_t>(rng() % std::max<uint32_t>(1, uidnext - 1));
    r->set_first(uid);
    r->set_last(uid);
    sf.set_mode(v1::STORE_MODE_ADD);
    sf.add_flags(absl::StrCat("$bench", i));
    if (!c.StoreFlags(0, sf).ok()) ++errors;
  }
  // Attribute searches (a keyword on ~1 message; the internal date of
  // yesterday, before the fill: no hit): the folder's records are not read.
  uint32_t kw_hits = 0, date_hits = 0;
  auto attr_search = [&](const v1::SearchQuery& q, uint32_t* hits) {
    v1::SearchRequest s;
    s.set_mailbox_id(big);
    s.mutable_folder()->set_name("INBOX");
    *s.mutable_query() = q;
    auto res = c.Search(0, s);
    if (res.ok()) *hits = res->count();
    else ++errors;
  };
  v1::SearchQuery kw;
  kw.mutable_flag()->set_flag("$bench3");
  auto kw_ms = Timed(20, [&] { attr_search(kw, &kw_hits); });
  v1::SearchQuery on;
  absl::CivilDay yesterday = absl::ToCivilDay(absl::Now() - absl::Hours(24), absl::UTCTimeZone());
  on.mutable_date()->set_field(v1::DATE_FIELD_INTERNAL);
  on.mutable_date()->set_op(v1::DATE_OP_ON);
  on.mutable_date()->mutable_date()->set_year(static_cast<int>(yesterday.year()));
  on.mutable_date()->mutable_date()->set_month(yesterday.month());
  on.mutable_date()->mutable_date()->set_day(yesterday.day());
  auto date_ms = Timed(20, [&] { attr_search(on, &date_hits); });
  int changed = 0;
  auto changes_ms = Timed(100, [&] {
    v1::ChangesSinceRequest cs;
    cs.set_mailbox_id(big);
    cs.mutable_folder()->set_name("INBOX");
    cs.set_modseq(before);
    cs.set_include_vanished(true);
    auto got = c.ChangesSince(0, cs);
    if (got.ok()) changed = got->changed_size();
    else ++errors;
  });
  // p99 of n < 100 samples is the slowest of them.
  std::printf("{\"messages\":%u,\"folder_status_p50_ms\":%.2f,\"folder_status_p99_ms\":%.2f,"
              "\"fetch_flags_last100_p50_ms\":%.2f,\"fetch_flags_last100_p99_ms\":%.2f,"
              "\"search_rare_p50_ms\":%.2f,\"search_rare_p99_ms\":%.2f,\"search_rare_hits\":%u,"
              "\"search_common_p50_ms\":%.1f,\"search_common_p99_ms\":%.1f,\"search_common_hits\":%u,"
              "\"search_all_p50_ms\":%.1f,\"search_all_p99_ms\":%.1f,\"search_all_hits\":%u,"
              "\"changes_since_last10_p50_ms\":%.2f,\"changes_since_last10_p99_ms\":%.2f,"
              "\"changed\":%d,\"search_keyword_p50_ms\":%.2f,\"search_keyword_p99_ms\":%.2f,"
              "\"search_keyword_hits\":%u,\"search_on_yesterday_p50_ms\":%.2f,"
              "\"search_on_yesterday_p99_ms\":%.2f,\"search_on_yesterday_hits\":%u,\"errors\":%d}\n",
              messages, Pct(status_ms, 0.5), Pct(status_ms, 0.99), Pct(flags_ms, 0.5),
              Pct(flags_ms, 0.99), Pct(rare_ms, 0.5), Pct(rare_ms, 0.99), rare_hits,
              Pct(common_ms, 0.5), Pct(common_ms, 0.99), common_hits, Pct(all_ms, 0.5),
              Pct(all_ms, 0.99), all_hits, Pct(changes_ms, 0.5), Pct(changes_ms, 0.99), changed,
              Pct(kw_ms, 0.5), Pct(kw_ms, 0.99), kw_hits, Pct(date_ms, 0.5), Pct(date_ms, 0.99),
              date_hits, errors.load());
  std::fflush(stdout);
  // What IMAP SELECT asks (every UID for the sequence map, one call), and
  // header searches beyond the subject: FROM (indexed, every message a
  // hit) and an arbitrary header (X-Key of one message: not indexed).
  auto select_ms = Timed(10, [&] {
    v1::SelectFolderRequest r;
    r.set_mailbox_id(big);
    r.mutable_folder()->set_name("INBOX");
    r.set_include_uids(true);
    if (!c.SelectFolder(0, r).ok()) ++errors;
  });
  uint32_t from_hits = 0, xkey_hits = 0;
  auto text_search = [&](v1::TextField field, const std::string& header, const std::string& value,
                         uint32_t* hits) {
    v1::SearchRequest s;
    s.set_mailbox_id(big);
    s.mutable_folder()->set_name("INBOX");
    s.mutable_query()->mutable_text()->set_field(field);
    s.mutable_query()->mutable_text()->set_header_name(header);
    s.mutable_query()->mutable_text()->set_value(value);
    ms::CallOptions o;
    o.timeout = absl::Minutes(5);
    auto res = c.Search(0, s, o);
    if (res.ok()) *hits = res->count();
    else ++errors;
  };
  auto from_ms = Timed(5, [&] { text_search(v1::TEXT_FIELD_FROM, "", "load", &from_hits); });
  std::string needle = absl::StrCat("L", messages / 2);
  auto xkey_ms = Timed(3, [&] { text_search(v1::TEXT_FIELD_HEADER, "X-Key", needle, &xkey_hits); });
  std::printf("{\"select_with_uids_p50_ms\":%.2f,\"select_with_uids_p99_ms\":%.2f,"
              "\"search_from_all_p50_ms\":%.1f,\"search_from_all_p99_ms\":%.1f,"
              "\"search_from_all_hits\":%u,\"search_header_xkey_ms\":%.1f,"
              "\"search_header_xkey_p99_ms\":%.1f,\"search_header_xkey_hits\":%u,\"errors\":%d}\n",
              Pct(select_ms, 0.5), Pct(select_ms, 0.99), Pct(from_ms, 0.5), Pct(from_ms, 0.99),
              from_hits, Pct(xkey_ms, 0.5), Pct(xkey_ms, 0.99), xkey_hits, errors.load());
  return errors == 0 ? 0 : 1;
}

// The SST bytes of each column family of a stopped replica, after a full
// compaction (overwritten and deleted versions dropped, as for --rawdb).
// Options as libs/kv's engine (bloom filters except on the Raft log).
int DbStat(const Args& a) {
  rocksdb::DBOptions dbo;
  std::vector<std::string> names;
  rocksdb::Status st = rocksdb::DB::ListColumnFamilies(dbo, a.db, &names);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : names) {
    rocksdb::ColumnFamilyOptions cf;
    rocksdb::BlockBasedTableOptions table;
    if (n != "raft_log") table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    descs.emplace_back(n, cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  st = rocksdb::DB::Open(dbo, a.db, descs, &handles, &db);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  std::string out = "{";
  for (size_t i = 0; i < handles.size(); ++i) {
    db->Flush(rocksdb::FlushOptions(), handles[i]);
    db->CompactRange(rocksdb::CompactRangeOptions(), handles[i], nullptr, nullptr);
    uint64_t sst = 0;
    db->GetIntProperty(handles[i], "rocksdb.total-sst-files-size", &sst);
    out += absl::StrCat(i ? "," : "", "\"", names[i], "\":", sst);
    if (names[i].rfind("data", 0) != 0) continue;
    // Logical bytes (key + value, before block compression) per record
    // kind of services/mailstore/keys.h: what the space goes to.
    std::map<std::string, std::pair<uint64_t, uint64_t>> kinds;  // kind -> (count, bytes)
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[i]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string k = it->key().ToString();
      std::string kind = "other";
      size_t t = k.rfind("t/", 0) == 0 ? k.find('/', 2) : std::string::npos;
      if (t != std::string::npos && k.size() > t + 2) {
        char c = k[t + 1];
        if (c == 'b') {
          kind = k.find("/c", t + 3) != std::string::npos && k.find("/terms") == std::string::npos
                     ? "body chunk" : (k.find("/terms") != std::string::npos ? "body terms" : "body record");
        } else if (c == 'm') {
          size_t mb = k.find('/', t + 3);
          kind = mb == std::string::npos ? "mailbox record" : absl::StrCat("m/", k.substr(mb + 1, 1));
        } else {
          kind = std::string(1, c);
        }
      }
      auto& e = kinds[kind];
      e.first += 1;
      e.second += it->key().size() + it->value().size();
    }
    for (const auto& [kind, e] : kinds)
      std::fprintf(stderr, "  %-16s %10llu records %12llu bytes\n", kind.c_str(),
                   static_cast<unsigned long long>(e.first), static_cast<unsigned long long>(e.second));
  }
  out += "}";
  std::printf("%s\n", out.c_str());
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: mailstore_load --mailstored=h:p,... --signing-key=PEM [--mode=bench|chaos|deliver|onebox|large|dbstat|lmtp] "
                 "[--writers=N] [--recipients=N] [--messages=N] [--size=B] [--large=N] [--tenant=T] [--prefix=P] [--rawdb=DIR] [--db=DIR] [--lmtp=ip:port --lmtp-domain=D]\n");
    return 2;
  }
  if (a.mode == "dbstat") return DbStat(a);
  if (a.mode == "lmtp") return LmtpBench(a);
  std::unique_ptr<ms::MailstoreClient> client = ConnectMailstore(a.mailstored, a.key, "relayd");
  if (client == nullptr) return 2;
  if (a.mode == "chaos") return Chaos(*client, a);
  if (a.mode == "deliver") return Deliver(*client, a);
  if (a.mode == "onebox") return Onebox(*client, a);
  if (a.mode == "large") return Large(*client, a);
  if (a.mode == "watchfan") return WatchFan(*client, a);
  return Bench(*client, a);
}
