#include "libs/mailauth/dns.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"

namespace mailgrid::mailauth {
namespace {

const char kHex[] = "0123456789abcdef";

}  // namespace

std::string_view RrTypeName(RrType type) {
  switch (type) {
    case RrType::kTxt:
      return "TXT";
    case RrType::kA:
      return "A";
    case RrType::kAaaa:
      return "AAAA";
    case RrType::kMx:
      return "MX";
    case RrType::kPtr:
      return "PTR";
  }
  return "?";
}

std::string CanonicalDnsName(std::string_view name) {
  std::string s(name);
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  std::string s(text);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (s.size() > 64 || s.find('\0') != std::string::npos) return std::nullopt;
  IpAddress ip;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;
    return ip;
  }
  if (s.size() > 5 && (s.compare(0, 5, "IPv6:") == 0 || s.compare(0, 5, "ipv6:") == 0))
    s = s.substr(5);
  ip.v6 = true;
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;
  return ip;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof(buf));
  return buf;
}

IpAddress IpAddress::AsV4() const {
  if (!v6) return *this;
  for (int i = 0; i < 10; ++i) {
    if (bytes[i] != 0) return *this;
  }
  if (bytes[10] != 0xff || bytes[11] != 0xff) return *this;
  IpAddress v4;
  std::copy(bytes.begin() + 12, bytes.end(), v4.bytes.begin());
  return v4;
}

bool IpAddress::InNetwork(const IpAddress& network, int prefix) const {
  if (v6 != network.v6) return false;
  int max = v6 ? 128 : 32;
  if (prefix < 0 || prefix > max) return false;
  int full = prefix / 8;
  for (int i = 0; i < full; ++i) {
    if (bytes[i] != network.bytes[i]) return false;
  }
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[full] & mask) == (network.bytes[full] & mask);
}

std::string IpAddress::ReverseName() const {
  std::string out;
  if (!v6) {
    for (int i = 3; i >= 0; --i) absl::StrAppend(&out, bytes[i], ".");
    return out + "in-addr.arpa";
  }
  for (int i = 15; i >= 0; --i) {
    out.push_back(kHex[bytes[i] & 0xf]);
    out.push_back('.');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back('.');
  }
  return out + "ip6.arpa";
}

std::string IpAddress::SpfMacroForm() const {
  if (!v6) return ToString();
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i > 0) out.push_back('.');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back('.');
    out.push_back(kHex[bytes[i] & 0xf]);
  }
  return out;
}

void MemoryResolver::AddTxt(std::string_view name, std::string value) {
  DnsResult& r = table_[{CanonicalDnsName(name), RrType::kTxt}];
  r.status = DnsStatus::kOk;
  r.values.push_back(std::move(value));
}

void MemoryResolver::AddA(std::string_view name, std::string address) {
  DnsResult& r = table_[{CanonicalDnsName(name), RrType::kA}];
  r.status = DnsStatus::kOk;
  r.values.push_back(std::move(address));
}

void MemoryResolver::AddAaaa(std::string_view name, std::string address) {
  DnsResult& r = table_[{CanonicalDnsName(name), RrType::kAaaa}];
  r.status = DnsStatus::kOk;
  r.values.push_back(std::move(address));
}

void MemoryResolver::AddMx(std::string_view name, uint16_t preference, std::string host) {
  DnsResult& r = table_[{CanonicalDnsName(name), RrType::kMx}];
  r.status = DnsStatus::kOk;
  r.mx.push_back({preference, CanonicalDnsName(host)});
  std::stable_sort(r.mx.begin(), r.mx.end(),
                   [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
  r.values.clear();
  for (const MxHost& m : r.mx) r.values.push_back(m.host);
}

void MemoryResolver::AddPtr(std::string_view ip, std::string host) {
  auto addr = IpAddress::Parse(ip);
  if (!addr) return;
  DnsResult& r = table_[{addr->ReverseName(), RrType::kPtr}];
  r.status = DnsStatus::kOk;
  r.values.push_back(CanonicalDnsName(host));
}

void MemoryResolver::FailWith(std::string_view name, RrType type, std::string error) {
  DnsResult& r = table_[{CanonicalDnsName(name), type}];
  r.status = DnsStatus::kTempError;
  r.values.clear();
  r.error = std::move(error);
}

DnsResult MemoryResolver::Lookup(std::string_view name, RrType type) {
  std::string key = CanonicalDnsName(name);
  queries_.push_back(absl::StrCat(ToAbsl(RrTypeName(type)), " ", key));
  auto it = table_.find({key, type});
  if (it != table_.end()) return it->second;
  DnsResult r;
  for (const auto& [k, v] : table_) {
    if (k.first == key) {
      r.status = DnsStatus::kOk;  // NODATA: the name exists with other types
      return r;
    }
  }
  r.status = DnsStatus::kNxDomain;
  return r;
}

}  // namespace mailgrid::mailauth
