#include "services/tenant/dns_check.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <poll.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/strings.h"
#include "services/tenant/dkim.h"
#include "services/tenant/tenant_store.h"

namespace mailgrid::tenant {
namespace {

std::string Canonical(std::string_view name) {
  std::string s = absl::AsciiStrToLower(ToAbsl(name));
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

int AresType(v1::DnsRecordType t) {
  switch (t) {
    case v1::DNS_RECORD_TYPE_MX:
      return ns_t_mx;
    case v1::DNS_RECORD_TYPE_TXT:
      return ns_t_txt;
    case v1::DNS_RECORD_TYPE_CNAME:
      return ns_t_cname;
    default:
      return 0;
  }
}

// Answers of type CNAME in a raw DNS response (c-ares has no CNAME parser).
std::vector<std::string> ParseCnames(const unsigned char* buf, int len) {
  std::vector<std::string> out;
  if (len < 12) return out;
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
    if (!skip_name() || end - p < 4) return out;
    p += 4;
  }
  for (int i = 0; i < an; ++i) {
    if (!skip_name() || end - p < 10) return out;
    int type = (p[0] << 8) | p[1];
    int rdlen = (p[8] << 8) | p[9];
    p += 10;
    if (end - p < rdlen) return out;
    if (type == ns_t_cname) {
      char* target = nullptr;
      long n = 0;
      if (ares_expand_name(p, buf, len, &target, &n) == ARES_SUCCESS) {
        out.push_back(Canonical(target));
        ares_free_string(target);
      }
    }
    p += rdlen;
  }
  return out;
}

struct Pending {
  v1::DnsRecordType type;
  LookupResult* result;
};

void OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* q = static_cast<Pending*>(arg);
  LookupResult& r = *q->result;
  if (status == ARES_ENODATA || status == ARES_ENOTFOUND) {
    r.kind = LookupResult::Kind::kNoData;
    return;
  }
  if (status != ARES_SUCCESS) {
    r.kind = LookupResult::Kind::kFailed;
    r.error = ares_strerror(status);
    r.network_error =
        status == ARES_ECONNREFUSED || status == ARES_ETIMEOUT || status == ARES_EDESTRUCTION;
    return;
  }
  r.kind = LookupResult::Kind::kFound;
  if (q->type == v1::DNS_RECORD_TYPE_MX) {
    ares_mx_reply* mx = nullptr;
    int rc = ares_parse_mx_reply(abuf, alen, &mx);
    if (rc == ARES_SUCCESS) {
      for (ares_mx_reply* m = mx; m != nullptr; m = m->next)
        r.values.push_back(absl::StrCat(m->priority, " ", Canonical(m->host)));
      ares_free_data(mx);
    } else if (rc != ARES_ENODATA) {
      r.kind = LookupResult::Kind::kFailed;
      r.error = ares_strerror(rc);
    }
  } else if (q->type == v1::DNS_RECORD_TYPE_TXT) {
    ares_txt_ext* txt = nullptr;
    int rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (rc == ARES_SUCCESS) {
      // A record's several character-strings are one value (RFC 7208 §3.3).
      for (ares_txt_ext* t = txt; t != nullptr; t = t->next) {
        std::string part(reinterpret_cast<const char*>(t->txt), t->length);
        if (t->record_start || r.values.empty()) {
          r.values.push_back(part);
        } else {
          r.values.back() += part;
        }
      }
      ares_free_data(txt);
    } else if (rc != ARES_ENODATA) {
      r.kind = LookupResult::Kind::kFailed;
      r.error = ares_strerror(rc);
    }
  } else {
    r.values = ParseCnames(abuf, alen);
  }
  if (r.kind == LookupResult::Kind::kFound && r.values.empty())
    r.kind = LookupResult::Kind::kNoData;
}

bool NetworkFailure(const LookupResult& r) {
  return r.kind == LookupResult::Kind::kFailed && r.network_error;
}

}  // namespace

CaresResolver::CaresResolver(std::string server, absl::Duration timeout)
    : server_(std::move(server)), timeout_(timeout) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

absl::StatusOr<Lookups> CaresResolver::LookupAll(const std::vector<LookupKey>& queries) {
  Lookups out;
  if (queries.empty()) return out;
  ares_options opts{};
  opts.timeout = static_cast<int>(std::max<int64_t>(absl::ToInt64Milliseconds(timeout_) / 2, 100));
  opts.tries = 2;
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  ares_channel channel = nullptr;
  int rc = ares_init_options(&channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
  if (rc != ARES_SUCCESS)
    return absl::InternalError(absl::StrCat("c-ares init: ", ares_strerror(rc)));
  if (!server_.empty()) {
    rc = ares_set_servers_ports_csv(channel, server_.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(channel);
      return absl::InvalidArgumentError(
          absl::StrCat("--dns-resolver ", server_, ": ", ares_strerror(rc)));
    }
  }
  std::vector<Pending> pending;
  pending.reserve(queries.size());
  for (const LookupKey& key : queries) {
    LookupResult& slot = out[key];
    if (AresType(key.second) == 0) continue;
    pending.push_back({key.second, &slot});
  }
  size_t i = 0;
  for (const LookupKey& key : queries) {
    if (AresType(key.second) == 0) continue;
    ares_query(channel, key.first.c_str(), ns_c_in, AresType(key.second), OnAnswer, &pending[i++]);
  }
  // Drive the channel until every query has answered or timed out.
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
  ares_destroy(channel);  // fails whatever is left (callbacks with ARES_EDESTRUCTION)
  bool all_network = !out.empty() && std::all_of(out.begin(), out.end(), [](const auto& kv) {
    return NetworkFailure(kv.second);
  });
  if (all_network) {
    return absl::UnavailableError(absl::StrCat("DNS resolver ",
                                               server_.empty() ? "(system)" : server_,
                                               " unreachable: ", out.begin()->second.error));
  }
  return out;
}

std::string CanonicalName(std::string_view name) { return Canonical(name); }

std::vector<LookupKey> QueriesFor(const std::vector<v1::DnsRecord>& records) {
  std::set<LookupKey> seen;
  std::vector<LookupKey> out;
  for (const auto& r : records) {
    LookupKey key{Canonical(r.name()), r.type()};
    if (seen.insert(key).second) out.push_back(key);
  }
  return out;
}

namespace {

v1::RecordCheck Check(v1::RecordCheckStatus status, std::string detail,
                      const std::vector<std::string>& found, absl::Time now) {
  v1::RecordCheck c;
  c.set_status(status);
  c.set_detail(std::move(detail));
  for (const auto& f : found) c.add_found(f);
  *c.mutable_checked_at() = ToProto(now);
  return c;
}

std::vector<std::string> WithPrefix(const std::vector<std::string>& values,
                                    std::string_view prefix) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    if (absl::StartsWithIgnoreCase(absl::StripLeadingAsciiWhitespace(v), ToAbsl(prefix)))
      out.push_back(v);
  }
  return out;
}

// The value of tag `name` in a "k=v; k=v" record, lower case, or "".
std::string Tag(std::string_view record, std::string_view name) {
  for (absl::string_view part : absl::StrSplit(ToAbsl(record), ';')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(kv.first), ToAbsl(name))) {
      return absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv.second));
    }
  }
  return "";
}

v1::RecordCheck EvaluateMx(const v1::DnsRecord& want, const LookupResult& got, absl::Time now) {
  for (const std::string& v : got.values) {
    std::pair<std::string, std::string> pr = absl::StrSplit(v, absl::MaxSplits(' ', 1));
    if (Canonical(pr.second) != Canonical(want.value())) continue;
    uint32_t prio = 0;
    std::string detail;
    if (absl::SimpleAtoi(pr.first, &prio) && prio != want.priority()) {
      detail = absl::StrCat("published with priority ", prio, " (suggested ", want.priority(), ")");
    }
    return Check(v1::RECORD_CHECK_STATUS_OK, detail, got.values, now);
  }
  return Check(v1::RECORD_CHECK_STATUS_WRONG, absl::StrCat("no MX points to ", want.value()),
               got.values, now);
}

v1::RecordCheck EvaluateSpf(const v1::DnsRecord& want, const LookupResult& got, absl::Time now) {
  auto spf = WithPrefix(got.values, "v=spf1");
  if (spf.empty())
    return Check(v1::RECORD_CHECK_STATUS_MISSING, "no SPF (v=spf1) TXT record", got.values, now);
  if (spf.size() > 1) {
    return Check(v1::RECORD_CHECK_STATUS_WRONG,
                 "more than one SPF record (a permanent error, RFC 7208 4.5)", spf, now);
  }
  std::vector<std::string> have =
      absl::StrSplit(absl::AsciiStrToLower(spf[0]), ' ', absl::SkipEmpty());
  for (absl::string_view term : absl::StrSplit(want.value(), ' ', absl::SkipEmpty())) {
    if (!absl::StartsWith(term, "include:")) continue;
    if (std::find(have.begin(), have.end(), absl::AsciiStrToLower(term)) == have.end()) {
      return Check(v1::RECORD_CHECK_STATUS_WRONG, absl::StrCat("SPF record lacks ", term), spf,
                   now);
    }
  }
  return Check(v1::RECORD_CHECK_STATUS_OK, "", spf, now);
}

v1::RecordCheck EvaluateDkim(const v1::DnsRecord& want, const LookupResult& got, absl::Time now) {
  std::string key = DkimPublicKeyTag(want.value());
  for (const auto& v : got.values) {
    if (DkimPublicKeyTag(v) == key) return Check(v1::RECORD_CHECK_STATUS_OK, "", {v}, now);
  }
  return Check(v1::RECORD_CHECK_STATUS_WRONG, "the published p= is not this selector's public key",
               got.values, now);
}

v1::RecordCheck EvaluateDmarc(const v1::DnsRecord& want, const LookupResult& got, absl::Time now) {
  auto dmarc = WithPrefix(got.values, "v=DMARC1");
  if (dmarc.empty())
    return Check(v1::RECORD_CHECK_STATUS_MISSING, "no DMARC (v=DMARC1) TXT record", got.values,
                 now);
  if (dmarc.size() > 1)
    return Check(v1::RECORD_CHECK_STATUS_WRONG, "more than one DMARC record", dmarc, now);
  std::string p = Tag(dmarc[0], "p");
  if (p == "quarantine" || p == "reject") {
    std::string detail =
        p == Tag(want.value(), "p") ? "" : absl::StrCat("policy p=", p, " (suggested quarantine)");
    return Check(v1::RECORD_CHECK_STATUS_OK, detail, dmarc, now);
  }
  return Check(v1::RECORD_CHECK_STATUS_WRONG,
               p.empty() ? "DMARC record has no p= policy"
                         : absl::StrCat("DMARC policy p=", p, " does not protect the domain"),
               dmarc, now);
}

}  // namespace

v1::RecordCheck Evaluate(const v1::DnsRecord& want, const LookupResult& got, absl::Time now) {
  if (got.kind == LookupResult::Kind::kFailed) {
    return Check(v1::RECORD_CHECK_STATUS_LOOKUP_FAILED, absl::StrCat("lookup failed: ", got.error),
                 {}, now);
  }
  if (got.kind == LookupResult::Kind::kNoData || got.values.empty()) {
    return Check(v1::RECORD_CHECK_STATUS_MISSING,
                 absl::StrCat("no ", v1::DnsRecordType_Name(want.type()).substr(16), " record at ",
                              want.name()),
                 {}, now);
  }
  switch (want.purpose()) {
    case v1::DNS_RECORD_PURPOSE_MX:
      return EvaluateMx(want, got, now);
    case v1::DNS_RECORD_PURPOSE_SPF:
      return EvaluateSpf(want, got, now);
    case v1::DNS_RECORD_PURPOSE_DKIM:
      return EvaluateDkim(want, got, now);
    case v1::DNS_RECORD_PURPOSE_DMARC:
      return EvaluateDmarc(want, got, now);
    default:
      break;
  }
  // Verification TXT and the CNAMEs: one exact value.
  for (const auto& v : got.values) {
    bool same = want.type() == v1::DNS_RECORD_TYPE_CNAME ? Canonical(v) == Canonical(want.value())
                                                         : v == want.value();
    if (same) return Check(v1::RECORD_CHECK_STATUS_OK, "", got.values, now);
  }
  return Check(v1::RECORD_CHECK_STATUS_WRONG, absl::StrCat("expected ", want.value()), got.values,
               now);
}

}  // namespace mailgrid::tenant
