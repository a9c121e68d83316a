#include "services/relay/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <poll.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"

namespace mailgrid::relay {
namespace {

struct Pending {
  int type;
  DnsAnswer* out;
};

void OnAnswer(void* arg, int status, int, unsigned char* abuf, int alen) {
  auto* q = static_cast<Pending*>(arg);
  DnsAnswer& r = *q->out;
  if (status == ARES_ENOTFOUND) {
    r.kind = DnsAnswer::Kind::kNxDomain;
    return;
  }
  if (status == ARES_ENODATA) {
    r.kind = DnsAnswer::Kind::kNoData;
    return;
  }
  if (status != ARES_SUCCESS) {
    r.kind = DnsAnswer::Kind::kError;
    return;
  }
  r.kind = DnsAnswer::Kind::kFound;
  int rc = ARES_SUCCESS;
  if (q->type == 16) {
    ares_txt_ext* txt = nullptr;
    rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (rc == ARES_SUCCESS) {
      for (ares_txt_ext* t = txt; t != nullptr; t = t->next) {
        std::string part(reinterpret_cast<const char*>(t->txt), t->length);
        if (t->record_start || r.values.empty()) {
          r.values.push_back(part);
        } else {
          r.values.back() += part;  // RFC 7208 §3.3: strings of one record join
        }
      }
      ares_free_data(txt);
    }
  } else if (q->type == 15) {
    ares_mx_reply* mx = nullptr;
    rc = ares_parse_mx_reply(abuf, alen, &mx);
    if (rc == ARES_SUCCESS) {
      for (ares_mx_reply* m = mx; m != nullptr; m = m->next) r.values.emplace_back(m->host);
      ares_free_data(mx);
    }
  } else if (q->type == 1) {
    ares_addrttl addrs[32];
    int n = 32;
    rc = ares_parse_a_reply(abuf, alen, nullptr, addrs, &n);
    if (rc == ARES_SUCCESS) {
      for (int i = 0; i < n; ++i) {
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &addrs[i].ipaddr, buf, sizeof buf);
        r.values.emplace_back(buf);
      }
    }
  } else {
    ares_addr6ttl addrs[32];
    int n = 32;
    rc = ares_parse_aaaa_reply(abuf, alen, nullptr, addrs, &n);
    if (rc == ARES_SUCCESS) {
      for (int i = 0; i < n; ++i) {
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &addrs[i].ip6addr, buf, sizeof buf);
        r.values.emplace_back(buf);
      }
    }
  }
  if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && r.values.empty())) {
    r.kind = DnsAnswer::Kind::kNoData;
  } else if (rc != ARES_SUCCESS) {
    r.kind = DnsAnswer::Kind::kError;
  }
}

}  // namespace

CaresDns::CaresDns(std::string server, absl::Duration timeout)
    : server_(std::move(server)), timeout_(timeout) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

DnsAnswer CaresDns::Lookup(const std::string& name, int type) {
  std::pair<int, std::string> key(type, absl::AsciiStrToLower(name));
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.expires > now) return it->second.answer;
  }
  DnsAnswer a = Query(name, type);
  absl::MutexLock lock(&mu_);
  if (cache_.size() > 10000) cache_.clear();
  cache_[key] = {a, now + (a.kind == DnsAnswer::Kind::kError ? absl::Seconds(30) : absl::Minutes(5))};
  return a;
}

DnsAnswer CaresDns::Query(const std::string& name, int type) {
  DnsAnswer out;
  ares_options opts{};
  opts.timeout = static_cast<int>(std::max<int64_t>(absl::ToInt64Milliseconds(timeout_) / 2, 100));
  opts.tries = 2;
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  ares_channel channel = nullptr;
  if (ares_init_options(&channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS) !=
      ARES_SUCCESS) {
    return out;
  }
  if (!server_.empty() && ares_set_servers_ports_csv(channel, server_.c_str()) != ARES_SUCCESS) {
    ares_destroy(channel);
    return out;
  }
  Pending p{type, &out};
  ares_query(channel, name.c_str(), ns_c_in, type, OnAnswer, &p);
  for (;;) {
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
    int wait_ms = tvp == nullptr ? 1000 : static_cast<int>(tvp->tv_sec * 1000 + tvp->tv_usec / 1000);
    int n = poll(fds.data(), fds.size(), std::max(wait_ms, 1));
    if (n <= 0) {
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      continue;
    }
    for (const pollfd& f : fds) {
      ares_socket_t r = (f.revents & (POLLIN | POLLERR | POLLHUP)) ? f.fd : ARES_SOCKET_BAD;
      ares_socket_t w = (f.revents & POLLOUT) ? f.fd : ARES_SOCKET_BAD;
      if (r != ARES_SOCKET_BAD || w != ARES_SOCKET_BAD) ares_process_fd(channel, r, w);
    }
  }
  ares_destroy(channel);
  return out;
}

}  // namespace mailgrid::relay
