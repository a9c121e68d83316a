// The DNS interface SPF, DKIM and DMARC look records up through: an abstract,
// synchronous Resolver (one question in, records or NXDOMAIN or a temporary
// error out), an in-memory implementation for tests, and IP address helpers.
// The c-ares implementation is in cares_resolver.h.
//
// SECURITY: answers are hostile input. Callers bound how many lookups one
// message may cause (SPF's 10-lookup and 2-void limits, DKIM's signature cap).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgrid::mailauth {

enum class RrType : uint8_t { kTxt, kA, kAaaa, kMx, kPtr };
std::string_view RrTypeName(RrType type);  // "TXT", "A", ...

enum class DnsStatus : uint8_t {
  kOk,         // the name exists; `values` may be empty (NODATA)
  kNxDomain,   // the name does not exist
  kTempError,  // SERVFAIL, timeout, unreachable resolver, unparsable answer
};

struct MxHost {
  uint16_t preference = 0;
  std::string host;  // lower case, no trailing dot ("" for a null MX ".")
  friend bool operator==(const MxHost&, const MxHost&) = default;
};

struct DnsResult {
  DnsStatus status = DnsStatus::kTempError;
  // TXT: one string per record, its character-strings concatenated (RFC 7208
  // §3.3, RFC 6376 §3.6.2.2). A/AAAA: textual addresses (inet_ntop). PTR:
  // names, lower case, no trailing dot. MX: the hosts, in `mx` order.
  std::vector<std::string> values;
  std::vector<MxHost> mx;  // MX only, sorted by preference
  std::string error;       // kTempError: why ("Timeout", "Connection refused")

  bool ok() const { return status == DnsStatus::kOk; }
  // NXDOMAIN, or a name with no records of the type: a "void lookup" (RFC 7208 §4.6.4).
  bool empty() const { return status == DnsStatus::kNxDomain || (ok() && values.empty()); }
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Blocking. `name` without a trailing dot; for kPtr the name is the
  // reverse name (ReverseName()). Must be safe to call from several threads.
  virtual DnsResult Lookup(std::string_view name, RrType type) = 0;
};

// An IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// kept as IPv6; SPF treats them as IPv4 (RFC 7208 §5 note), see AsV4().
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // v4: the first 4 bytes

  static std::optional<IpAddress> Parse(std::string_view text);
  std::string ToString() const;
  // The IPv4 address an IPv4-mapped IPv6 address carries, or itself.
  IpAddress AsV4() const;
  // True when the first `prefix` bits of both addresses (same family) agree.
  bool InNetwork(const IpAddress& network, int prefix) const;
  // "4.3.2.1.in-addr.arpa" or the nibble form under ip6.arpa.
  std::string ReverseName() const;
  // SPF %{i}: dotted v4, or dot-separated nibbles for v6 (RFC 7208 §7.3).
  std::string SpfMacroForm() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// Lower case, trailing dot removed.
std::string CanonicalDnsName(std::string_view name);

// A resolver answering from a table: for unit tests, fuzzers and replays.
// Not thread-safe (it records the questions asked); fill it, then use it
// from one thread.
// Names are matched after CanonicalDnsName. A name with no entry of any type
// is NXDOMAIN; a name with entries of other types only is NODATA.
class MemoryResolver final : public Resolver {
 public:
  void AddTxt(std::string_view name, std::string value);
  void AddA(std::string_view name, std::string address);     // "192.0.2.1"
  void AddAaaa(std::string_view name, std::string address);  // "2001:db8::1"
  void AddMx(std::string_view name, uint16_t preference, std::string host);
  void AddPtr(std::string_view ip, std::string host);  // by address, "192.0.2.1"
  // Every lookup of (name, type) answers a temporary error.
  void FailWith(std::string_view name, RrType type, std::string error = "SERVFAIL");

  DnsResult Lookup(std::string_view name, RrType type) override;
  // Every question asked, in order: "TXT example.com".
  const std::vector<std::string>& queries() const { return queries_; }
  void ClearQueries() { queries_.clear(); }

 private:
  std::map<std::pair<std::string, RrType>, DnsResult> table_;
  std::vector<std::string> queries_;
};

}  // namespace mailgrid::mailauth
