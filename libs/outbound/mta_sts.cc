#include "libs/outbound/mta_sts.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/log.h"
#include "libs/base/net.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

constexpr size_t kMaxResponse = 64 << 10;
constexpr int64_t kMaxMaxAge = 31557600;  // §3.2

std::string Lower(std::string_view s) { return absl::AsciiStrToLower(ToAbslView(s)); }

// A blocking TLS connection for one HTTP exchange.
class TlsSocket {
 public:
  ~TlsSocket() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }

  absl::Status Connect(const std::string& ip, uint16_t port, const std::string& host,
                       const std::string& ca_file, absl::Duration timeout) {
    absl::StatusOr<net::SocketAddress> addr = net::ToSocketAddress(ip, port);
    if (!addr.ok()) return addr.status();
    fd_ = socket(addr->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
    timeval tv = absl::ToTimeval(timeout);
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd_, addr->get(), addr->length) != 0) {
      return absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
    }
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) return absl::InternalError("TLS: no context");
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // Many HTTPS servers close without close_notify; a truncated body is
    // caught by the Content-Length check instead (FetchMtaStsPolicy).
    SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (ca_file.empty()) {
      SSL_CTX_set_default_verify_paths(ctx_);
    } else if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) {
      return absl::FailedPreconditionError("TLS: cannot load CA file");
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
    if (SSL_connect(ssl_) != 1) {
      long v = SSL_get_verify_result(ssl_);
      return absl::UnavailableError(absl::StrCat(
          "TLS handshake with ", host, " failed: ",
          v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake error"));
    }
    return absl::OkStatus();
  }

  bool Write(std::string_view data) {
    while (!data.empty()) {
      int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Everything until the server closes, at most `limit` bytes.
  absl::StatusOr<std::string> ReadAll(size_t limit) {
    std::string out;
    char buf[4096];
    while (true) {
      int n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) {
        int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) break;  // closed
        return absl::UnavailableError("read error or timeout");
      }
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > limit) return absl::ResourceExhaustedError("policy response too large");
    }
    return out;
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

absl::StatusOr<std::string> Dechunk(std::string_view body) {
  std::string out;
  while (true) {
    size_t eol = body.find("\r\n");
    if (eol == std::string_view::npos) return absl::DataLossError("bad chunked encoding");
    std::string_view size_text = body.substr(0, eol);
    size_t semi = size_text.find(';');
    if (semi != std::string_view::npos) size_text = size_text.substr(0, semi);
    uint64_t size = 0;
    if (!absl::SimpleHexAtoi(ToAbslView(size_text), &size) || size > kMaxResponse) {
      return absl::DataLossError("bad chunk size");
    }
    body.remove_prefix(eol + 2);
    if (size == 0) return out;
    if (body.size() < size + 2) return absl::DataLossError("truncated chunk");
    out.append(body.substr(0, size));
    body.remove_prefix(size + 2);
  }
}

}  // namespace

bool MtaStsPolicy::MxMatches(std::string_view host_in) const {
  std::string host = Lower(host_in);
  while (!host.empty() && host.back() == '.') host.pop_back();
  for (const std::string& p : mx) {
    if (absl::StartsWith(p, "*.")) {
      size_t dot = host.find('.');
      if (dot != std::string::npos && dot > 0 && host.substr(dot) == p.substr(1)) return true;
    } else if (host == p) {
      return true;
    }
  }
  return false;
}

const char* MtaStsModeName(MtaStsPolicy::Mode mode) {
  switch (mode) {
    case MtaStsPolicy::Mode::kEnforce:
      return "enforce";
    case MtaStsPolicy::Mode::kTesting:
      return "testing";
    default:
      return "none";
  }
}

absl::StatusOr<MtaStsPolicy> ParseMtaStsPolicy(std::string_view body) {
  MtaStsPolicy p;
  bool version = false, mode = false, max_age = false;
  for (absl::string_view raw : absl::StrSplit(ToAbslView(body), '\n')) {
    absl::string_view line = absl::StripTrailingAsciiWhitespace(raw);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return absl::InvalidArgumentError("policy: line without ':'");
    std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    if (key == "version") {
      if (value != "STSv1") return absl::InvalidArgumentError("policy: version is not STSv1");
      version = true;
    } else if (key == "mode") {
      if (value == "enforce") {
        p.mode = MtaStsPolicy::Mode::kEnforce;
      } else if (value == "testing") {
        p.mode = MtaStsPolicy::Mode::kTesting;
      } else if (value == "none") {
        p.mode = MtaStsPolicy::Mode::kNone;
      } else {
        return absl::InvalidArgumentError("policy: unknown mode");
      }
      mode = true;
    } else if (key == "mx") {
      std::string mx = absl::AsciiStrToLower(value);
      while (!mx.empty() && mx.back() == '.') mx.pop_back();
      if (mx.empty() || mx.size() > 253 || mx.find_first_of(" \t") != std::string::npos) {
        return absl::InvalidArgumentError("policy: bad mx");
      }
      p.mx.push_back(std::move(mx));
    } else if (key == "max_age") {
      int64_t seconds = 0;
      if (!absl::SimpleAtoi(value, &seconds) || seconds < 0 || seconds > kMaxMaxAge) {
        return absl::InvalidArgumentError("policy: bad max_age");
      }
      p.max_age = absl::Seconds(seconds);
      max_age = true;
    }
    // Unknown keys are ignored (§3.2: extensions).
  }
  if (!version || !mode || !max_age) {
    return absl::InvalidArgumentError("policy: version, mode and max_age are required");
  }
  if (p.mode != MtaStsPolicy::Mode::kNone && p.mx.empty()) {
    return absl::InvalidArgumentError("policy: no mx");
  }
  return p;
}

std::optional<std::string> ParseMtaStsTxt(const std::vector<std::string>& records) {
  std::optional<std::string> id;
  int valid = 0;
  for (const std::string& r : records) {
    if (!absl::StartsWith(r, "v=STSv1")) continue;
    std::optional<std::string> this_id;
    bool first = true;
    bool ok = true;
    for (absl::string_view field : absl::StrSplit(r, ';', absl::SkipWhitespace())) {
      field = absl::StripAsciiWhitespace(field);
      size_t eq = field.find('=');
      if (eq == absl::string_view::npos) {
        ok = false;
        break;
      }
      absl::string_view k = field.substr(0, eq), v = field.substr(eq + 1);
      if (first && (k != "v" || v != "STSv1")) ok = false;
      first = false;
      if (k == "id") {
        // §3.1: 1 to 32 alphanumeric characters.
        if (v.empty() || v.size() > 32) ok = false;
        for (char c : v) {
          if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) ok = false;
        }
        this_id = std::string(v);
      }
    }
    if (!ok || !this_id) continue;
    ++valid;
    id = this_id;
  }
  if (valid != 1) return std::nullopt;
  return id;
}

absl::StatusOr<std::string> FetchMtaStsPolicy(mailauth::Resolver* resolver,
                                              const std::string& domain,
                                              const MtaStsOptions& options) {
  const std::string host = absl::StrCat("mta-sts.", domain);
  std::vector<std::string> ips;
  for (auto type : {mailauth::RrType::kA, mailauth::RrType::kAaaa}) {
    mailauth::DnsResult r = resolver->Lookup(host, type);
    for (const auto& ip : r.values) ips.push_back(ip);
  }
  if (ips.empty()) return absl::UnavailableError(absl::StrCat("no address for ", host));
  absl::Status last = absl::UnavailableError("not tried");
  for (const std::string& ip : ips) {
    TlsSocket s;
    last = s.Connect(ip, options.port, host, options.ca_file, options.timeout);
    if (!last.ok()) continue;
    std::string request = absl::StrCat("GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ", host,
                                       "\r\nUser-Agent: mailgrid-relayd\r\nConnection: close\r\n\r\n");
    if (!s.Write(request)) {
      last = absl::UnavailableError("write failed");
      continue;
    }
    absl::StatusOr<std::string> response = s.ReadAll(kMaxResponse);
    if (!response.ok()) {
      last = response.status();
      continue;
    }
    size_t head_end = response->find("\r\n\r\n");
    if (head_end == std::string::npos) return absl::DataLossError("no HTTP header end");
    std::string head = absl::AsciiStrToLower(response->substr(0, head_end));
    std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
    // "http/1.x 200 ..." only: §3.3 forbids following redirects.
    std::vector<std::string> status = absl::StrSplit(lines[0], ' ');
    if (status.size() < 2 || !absl::StartsWith(status[0], "http/1.") || status[1] != "200") {
      return absl::UnavailableError(absl::StrCat("policy fetch answered ", lines[0]));
    }
    bool text_plain = false, chunked = false;
    std::optional<uint64_t> length;
    for (size_t i = 1; i < lines.size(); ++i) {
      if (absl::StartsWith(lines[i], "content-length:")) {
        uint64_t n = 0;
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(lines[i].substr(15)), &n)) length = n;
      }
      if (absl::StartsWith(lines[i], "content-type:")) {
        text_plain = absl::StrContains(lines[i], "text/plain");
      }
      if (absl::StartsWith(lines[i], "transfer-encoding:")) {
        chunked = absl::StrContains(lines[i], "chunked");
      }
    }
    if (!text_plain) return absl::InvalidArgumentError("policy is not text/plain");
    std::string body = response->substr(head_end + 4);
    if (chunked) return Dechunk(body);
    if (length && body.size() != *length) return absl::DataLossError("policy body truncated");
    return body;
  }
  return last;
}

MtaSts::MtaSts(mailauth::Resolver* resolver, MtaStsOptions options)
    : resolver_(resolver), options_(std::move(options)) {
  fetch_ = [this](const std::string& domain) {
    return FetchMtaStsPolicy(resolver_, domain, options_);
  };
}

std::optional<MtaStsPolicy> MtaSts::PolicyFor(const std::string& domain, absl::Time now) {
  std::optional<MtaStsPolicy> cached;
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(domain);
    if (it != cache_.end()) {
      Cached& c = it->second;
      bool valid = c.policy && now < c.expires;
      if (valid && now - c.txt_checked < options_.txt_recheck) {
        if (c.policy->mode == MtaStsPolicy::Mode::kNone) return std::nullopt;
        return c.policy;
      }
      if (!c.policy && now < c.retry_after) return std::nullopt;  // no policy, recently asked
      if (valid) cached = c.policy;
    }
  }
  // Recheck the TXT record (outside the lock: DNS and HTTPS may be slow).
  mailauth::DnsResult txt = resolver_->Lookup(absl::StrCat("_mta-sts.", domain),
                                              mailauth::RrType::kTxt);
  std::optional<std::string> id;
  if (txt.ok()) id = ParseMtaStsTxt(txt.values);
  std::optional<MtaStsPolicy> result = cached;
  bool failed = false;
  if (id && (!cached || cached->id != *id)) {
    absl::StatusOr<std::string> body = fetch_(domain);
    absl::StatusOr<MtaStsPolicy> parsed =
        body.ok() ? ParseMtaStsPolicy(*body) : absl::StatusOr<MtaStsPolicy>(body.status());
    if (parsed.ok()) {
      parsed->id = *id;
      result = *std::move(parsed);
    } else {
      failed = true;
      log::Warn("MTA-STS policy not fetched",
                {{"domain", domain}, {"status", parsed.status()}, {"cached", cached.has_value()}});
    }
  }
  absl::MutexLock lock(&mu_);
  if (cache_.size() > 10000) cache_.clear();
  Cached& c = cache_[domain];
  c.txt_checked = now;
  if (result && (!cached || result->id != cached->id)) {
    c.policy = result;
    c.expires = now + result->max_age;
  }
  if (!result) {
    c.policy.reset();
    c.retry_after = now + (failed ? options_.failure_retry : options_.txt_recheck);
  }
  if (!result || result->mode == MtaStsPolicy::Mode::kNone) return std::nullopt;
  return result;
}

}  // namespace mailgrid::outbound
