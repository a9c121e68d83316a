#include "libs/mailauth/cares_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <poll.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace mailgrid::mailauth {
namespace {

int QueryType(RrType t) {
  switch (t) {
    case RrType::kTxt:
      return ns_t_txt;
    case RrType::kA:
      return ns_t_a;
    case RrType::kAaaa:
      return ns_t_aaaa;
    case RrType::kMx:
      return ns_t_mx;
    case RrType::kPtr:
      return ns_t_ptr;
  }
  return ns_t_txt;
}

// The answers of type `want` in a raw response: A/AAAA as text, PTR names.
// c-ares' own PTR parser wants the address back, and its A parser drops
// nothing we need, but one small walker for the three is simpler.
bool ParseRaw(const unsigned char* buf, int len, int want, std::vector<std::string>* out) {
  if (len < 12) return false;
  int qd = (buf[4] << 8) | buf[5];
  int an = (buf[6] << 8) | buf[7];
  const unsigned char* p = buf + 12;
  const unsigned char* end = buf + len;
  auto skip_name = [&]() -> bool {
    char* name = nullptr;
    long n = 0;
    if (ares_expand_name(p, buf, len, &name, &n) != ARES_SUCCESS) return false;
    ares_free_string(name);
    p += n;
    return p <= end;
  };
  for (int i = 0; i < qd; ++i) {
    if (!skip_name() || end - p < 4) return false;
    p += 4;
  }
  for (int i = 0; i < an; ++i) {
    if (!skip_name() || end - p < 10) return false;
    int type = (p[0] << 8) | p[1];
    int rdlen = (p[8] << 8) | p[9];
    p += 10;
    if (end - p < rdlen) return false;
    if (type == want) {
      char text[INET6_ADDRSTRLEN] = {0};
      if (want == ns_t_a && rdlen == 4) {
        inet_ntop(AF_INET, p, text, sizeof(text));
        out->push_back(text);
      } else if (want == ns_t_aaaa && rdlen == 16) {
        inet_ntop(AF_INET6, p, text, sizeof(text));
        out->push_back(text);
      } else if (want == ns_t_ptr) {
        char* name = nullptr;
        long n = 0;
        if (ares_expand_name(p, buf, len, &name, &n) == ARES_SUCCESS) {
          out->push_back(CanonicalDnsName(name));
          ares_free_string(name);
        }
      }
    }
    p += rdlen;
  }
  return true;
}

struct Pending {
  RrType type;
  DnsResult result;
  bool done = false;
};

void Fill(Pending* q, unsigned char* abuf, int alen) {
  DnsResult& r = q->result;
  r.status = DnsStatus::kOk;
  if (q->type == RrType::kTxt) {
    ares_txt_ext* txt = nullptr;
    int rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (rc == ARES_SUCCESS) {
      // A record's several character-strings are one value (RFC 7208 §3.3).
      for (ares_txt_ext* t = txt; t != nullptr; t = t->next) {
        std::string part(reinterpret_cast<const char*>(t->txt), t->length);
        if (t->record_start || r.values.empty()) {
          r.values.push_back(std::move(part));
        } else {
          r.values.back() += part;
        }
      }
      ares_free_data(txt);
    } else if (rc != ARES_ENODATA) {
      r.status = DnsStatus::kTempError;
      r.error = absl::StrCat("unparsable TXT answer: ", ares_strerror(rc));
    }
  } else if (q->type == RrType::kMx) {
    ares_mx_reply* mx = nullptr;
    int rc = ares_parse_mx_reply(abuf, alen, &mx);
    if (rc == ARES_SUCCESS) {
      for (ares_mx_reply* m = mx; m != nullptr; m = m->next)
        r.mx.push_back({m->priority, CanonicalDnsName(m->host)});
      ares_free_data(mx);
      std::stable_sort(r.mx.begin(), r.mx.end(), [](const MxHost& a, const MxHost& b) {
        return a.preference < b.preference;
      });
      for (const MxHost& m : r.mx) r.values.push_back(m.host);
    } else if (rc != ARES_ENODATA) {
      r.status = DnsStatus::kTempError;
      r.error = absl::StrCat("unparsable MX answer: ", ares_strerror(rc));
    }
  } else if (!ParseRaw(abuf, alen, QueryType(q->type), &r.values)) {
    r.status = DnsStatus::kTempError;
    r.error = "unparsable answer";
    r.values.clear();
  }
}

void OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* q = static_cast<Pending*>(arg);
  q->done = true;
  if (status == ARES_ENOTFOUND) {
    q->result.status = DnsStatus::kNxDomain;
  } else if (status == ARES_ENODATA) {
    q->result.status = DnsStatus::kOk;
  } else if (status != ARES_SUCCESS) {
    q->result.status = DnsStatus::kTempError;
    q->result.error = ares_strerror(status);
  } else {
    Fill(q, abuf, alen);
  }
}

}  // namespace

CaresResolver::CaresResolver(std::string servers, absl::Duration timeout)
    : servers_(std::move(servers)), timeout_(timeout) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

DnsResult CaresResolver::Lookup(std::string_view name, RrType type) {
  Pending q{type, {}, false};
  ares_options opts{};
  opts.timeout = static_cast<int>(std::max<int64_t>(absl::ToInt64Milliseconds(timeout_) / 2, 100));
  opts.tries = 2;
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
  opts.ednspsz = 4096;  // RSA-4096 DKIM keys do not fit in 512 bytes
  ares_channel channel = nullptr;
  int rc = ares_init_options(
      &channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ);
  if (rc != ARES_SUCCESS) {
    q.result.error = absl::StrCat("c-ares init: ", ares_strerror(rc));
    return q.result;
  }
  if (!servers_.empty()) {
    rc = ares_set_servers_ports_csv(channel, servers_.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(channel);
      q.result.error = absl::StrCat("resolver ", servers_, ": ", ares_strerror(rc));
      return q.result;
    }
  }
  std::string qname(name);
  ares_query(channel, qname.c_str(), ns_c_in, QueryType(type), OnAnswer, &q);
  while (!q.done) {
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int mask = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
    std::vector<pollfd> fds;
    for (int s = 0; s < ARES_GETSOCK_MAXNUM; ++s) {
      short events = 0;
      if (ARES_GETSOCK_READABLE(mask, s)) events |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(mask, s)) events |= POLLOUT;
      if (events != 0) fds.push_back({socks[s], events, 0});
    }
    if (fds.empty()) break;
    timeval tv{};
    timeval* tvp = ares_timeout(channel, nullptr, &tv);
    int wait_ms =
        tvp == nullptr ? 1000 : static_cast<int>(tvp->tv_sec * 1000 + tvp->tv_usec / 1000);
    int n = poll(fds.data(), fds.size(), std::max(wait_ms, 1));
    if (n <= 0) {
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
      continue;
    }
    for (const pollfd& p : fds) {
      ares_socket_t r = (p.revents & (POLLIN | POLLERR | POLLHUP)) ? p.fd : ARES_SOCKET_BAD;
      ares_socket_t w = (p.revents & POLLOUT) ? p.fd : ARES_SOCKET_BAD;
      if (r != ARES_SOCKET_BAD || w != ARES_SOCKET_BAD) ares_process_fd(channel, r, w);
    }
  }
  ares_destroy(channel);  // fails a query still pending (ARES_EDESTRUCTION)
  return q.result;
}

}  // namespace mailgrid::mailauth
