#include "services/tenant/config.h"

#include <fstream>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/tenant/replicated_store.h"

namespace mailgrid::tenant {

void AddFlags(config::Flags& f, Options& o) {
  f.String("store", &o.store,
           "where tenantd keeps its data: replicated (a Raft replica in --data-dir, peers "
           "--raft-peers) or local "
           "(one unreplicated RocksDB in --data-dir)");
  f.Int("raft-id", &o.raft_id, "this replica's Raft id (replicated store)");
  f.String("raft-peers", &o.raft_peers,
           "the Raft group: 1=host:port,2=host:port,... (replicated store)");
  f.Bool("raft-join", &o.raft_join,
         "join an existing group instead of bootstrapping (replicated store)");
  f.Bool("raft-wire", &o.raft_wire,
         "also carry raft messages between replicas over plain TCP on any free port (the raft "
         "wire; gRPC remains the fallback); off with TLS between replicas (replicated store)");
  f.StringList("token-public-key", &o.token_public_keys,
               "PEM files of the Ed25519 public keys that verify access tokens (comma list)");
  f.String("token-issuer", &o.token_issuer, "the issuer (iss) access tokens must carry");
  f.Duration("onboarding-token-ttl", &o.onboarding_token_ttl,
             "lifetime of a tenant onboarding token");
  f.Int64("max-document-bytes", &o.max_document_bytes, "largest verification document accepted");
  f.StringList(
      "mx-hosts", &o.mx_hosts_raw,
      "MX hosts tenants publish, host:priority comma list (default <cluster-hostname>:10)");
  f.String("cluster-hostname", &o.cluster_hostname,
           "the cluster's public host name (mail./autoconfig./autodiscover. CNAME target)");
  f.String("spf-include", &o.spf_include,
           "domain SPF records include (default _spf.<cluster-hostname>)");
  f.String("dns-resolver", &o.dns_resolver,
           "host:port of the DNS resolver for domain checks (default: system)");
  f.Duration("dns-timeout", &o.dns_timeout, "time allowed for one domain check's DNS lookups");
  f.Duration(
      "domain-recheck-interval", &o.domain_recheck_interval,
      "how often every domain's DNS records are checked again (drift detection); 0 disables");
  f.String(
      "dkim-master-key-file", &o.dkim_master_key_file,
      "file with the 32-byte key that encrypts DKIM private keys at rest (raw, hex or base64)");
  f.String("dkim-master-key", &o.dkim_master_key, "the DKIM master key itself (hex or base64)",
           /*secret=*/true);
  f.String("tls-ca", &o.tls_ca,
           "CA (PEM) that verifies peers (replicas, identityd, mailstored, relayd) over gRPC TLS; "
           "used only when this daemon's listener has TLS (--tls-cert): mTLS mode");
  f.StringList("identityd", &o.identityd,
               "identityd replicas (comma list) for initial passwords; empty: skipped, pending");
  f.StringList("mailstored", &o.mailstored,
               "mailstored shard map: h:p,h:p (shard 0) or 0=h:p,h:p;1=h:p,...; empty: mailbox "
               "creation is pending");
  f.StringList("relayd", &o.relayd,
               "relayd instances (comma list) for welcome notices (SubmitMessage); empty: the "
               "notices wait (welcome pending) until relayd is configured");
  f.String("login-host", &o.login_host,
           "host name employees use for IMAP/SMTP, named in welcome notices (default: "
           "mail.<the user's domain>)");
  f.Int("mailstore-shards", &o.mailstore_shards,
        "number of mailstored shards mailboxes are placed on (least-loaded first)");
  f.String("token-signing-key", &o.token_signing_key,
           "PEM file of the Ed25519 key that signs tenantd's service tokens");
  f.Duration("resolve-max-staleness", &o.resolve_max_staleness,
             "Resolve answers reflect every directory change committed this long before the "
             "call; a replica that cannot show it is that current reads through the leader");
  f.Duration("resolve-index-period", &o.resolve_index_period,
             "while Resolve calls arrive, how often the index proves this replica current "
             "(changes made through other replicas show in about this long; idle: a quarter "
             "of --resolve-max-staleness)");
  f.Int64("resolve-cache-entries", &o.resolve_cache_entries,
          "Resolve index size (answers; every user's address is kept)");
  f.Int64("store-cache-mb", &o.store_cache_mb,
          "RocksDB block cache of the replica in MiB (memtables take up to half of it)");
  f.Duration("user-grace-period", &o.user_grace_period,
             "how long a deleted user's mailbox is kept before the purge");
}

namespace {

absl::StatusOr<std::string> DecodeKey(std::string text, const std::string& what) {
  if (text.size() == 32) return text;  // raw bytes in a file
  std::string trimmed(absl::StripAsciiWhitespace(text));
  std::string out;
  if (trimmed.size() == 64 &&
      absl::c_all_of(trimmed, [](char c) { return absl::ascii_isxdigit(c); })) {
    out = absl::HexStringToBytes(trimmed);
  } else if (!absl::Base64Unescape(trimmed, &out)) {
    out.clear();
  }
  if (out.size() != 32)
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a 32-byte key (raw, hex or base64)"));
  return out;
}

}  // namespace

absl::Status Finish(Options& o) {
  if (o.store != "local" && o.store != "replicated") {
    return absl::InvalidArgumentError("--store: must be local or replicated");
  }
  o.mx_hosts.clear();
  for (const std::string& item : o.mx_hosts_raw) {
    MxHost mx;
    size_t colon = item.rfind(':');
    mx.host = item.substr(0, colon);
    if (colon != std::string::npos) {
      if (!absl::SimpleAtoi(item.substr(colon + 1), &mx.priority) || mx.priority > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("--mx-hosts: bad priority in \"", item, "\""));
      }
    }
    mx.host = absl::AsciiStrToLower(mx.host);
    if (mx.host.empty())
      return absl::InvalidArgumentError(absl::StrCat("--mx-hosts: empty host in \"", item, "\""));
    o.mx_hosts.push_back(mx);
  }
  o.cluster_hostname = absl::AsciiStrToLower(o.cluster_hostname);
  if (o.mx_hosts.empty()) o.mx_hosts.push_back({o.cluster_hostname, 10});
  if (o.spf_include.empty()) o.spf_include = "_spf." + o.cluster_hostname;
  if (!o.dkim_master_key.empty()) {
    auto k = DecodeKey(o.dkim_master_key, "--dkim-master-key");
    if (!k.ok()) return k.status();
    o.dkim_master_key_bytes = *k;
  } else if (!o.dkim_master_key_file.empty()) {
    std::ifstream in(o.dkim_master_key_file, std::ios::binary);
    if (!in)
      return absl::InvalidArgumentError(
          absl::StrCat("--dkim-master-key-file: cannot read ", o.dkim_master_key_file));
    std::stringstream ss;
    ss << in.rdbuf();
    auto k = DecodeKey(ss.str(), "--dkim-master-key-file");
    if (!k.ok()) return k.status();
    o.dkim_master_key_bytes = *k;
  }
  if (o.mailstore_shards < 1 || o.mailstore_shards > 4096)
    return absl::InvalidArgumentError("--mailstore-shards: must be 1..4096");
  if (o.max_document_bytes <= 0)
    return absl::InvalidArgumentError("--max-document-bytes: must be positive");
  return absl::OkStatus();
}

}  // namespace mailgrid::tenant
