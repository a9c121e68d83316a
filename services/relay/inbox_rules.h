// Inbox rules at local delivery: each local user's Sieve script (libs/sieve,
// stored by tenantd, fetched with DirectoryService.GetSieveScript) decides
// where that user's copy goes — which folder, which flags, no copy at all,
// a refusal, a redirect, an auto-reply.
//
// The SMTP session's DATA step hands each per-shard DeliverBatch to
// InboxRules::Deliver instead of Backend::Deliver; the request is rewritten
// per recipient and the response keeps the shape the caller expects (one
// result per request recipient, in order), so the session's 250/451/552
// logic is unchanged.
//
// Failure stance: a rule never loses mail. tenantd unreachable, a script
// that no longer compiles, a runtime error in the script → that user's copy
// goes to INBOX as if there were no rules (logged). Redirects are sent
// before the 250 (failure → 451, the client retries; the copies already
// committed are deduplicated by mailstored, a redirect already sent is
// remembered in Redis). Vacation replies are best effort after the copies
// are committed. Threads: called on the worker pool; the script cache is
// guarded by a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/sieve/sieve.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "services/relay/backend.h"
#include "services/relay/submitter.h"

namespace mailgrid::relay {

// One local mailbox of the message, as RCPT's Resolve named it.
struct InboxRecipient {
  std::string mailbox_id;
  std::string user_id;        // empty: not a user's mailbox (shared): no rules
  std::string address;        // the mailbox's primary address
  std::string rcpt;           // RCPT TO as given (Sieve's envelope "to"; may carry +detail)
  int64_t sieve_version = 0;  // from Resolve; 0: the user has no script
};

// What the rules of one message need besides the DeliverBatch request.
struct InboxMessage {
  std::string envelope_from;  // "" for <>
  // Every local recipient of the message (all shards): a reject is only
  // answered 550 when it is the only one.
  std::vector<InboxRecipient> recipients;
  size_t other_recipients = 0;  // remote ones, queued by the caller
};

struct InboxRulesOptions {
  std::string hostname = "localhost";  // Message-ID of vacation replies
  absl::Duration cache_ttl = absl::Minutes(1);
  size_t cache_max_entries = 10000;
  // fileinto a folder that does not exist creates it (else INBOX gets it).
  bool create_folders = true;
  // A message with more Received fields than this is not redirected (a
  // loop through remote forwarders); the user keeps it instead.
  int max_received_for_redirect = 30;
};

class InboxRules {
 public:
  // `submitter` may be null: redirects then become keeps and no vacation
  // reply is sent. `registry` may be null.
  InboxRules(Backend* backend, OutboundSubmitter* submitter, InboxRulesOptions options,
             prometheus::Registry* registry = nullptr);

  // Backend::Deliver with each recipient's rules applied. Errors: those of
  // Backend::Deliver; PERMISSION_DENIED whose message is the reason when
  // the only recipient of the message rejects it (answer 550 5.7.1,
  // nothing was stored); UNAVAILABLE when a redirect could not be handed
  // to the outbound path (answer 451).
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& request,
      const InboxMessage& message);

  // The user's compiled script; null when the user has no rules. Cached by
  // user and version.
  std::shared_ptr<const sieve::Script> ScriptFor(const InboxRecipient& recipient);

 private:
  struct CacheEntry {
    int64_t version = 0;
    std::shared_ptr<const sieve::Script> script;  // null: no rules
    absl::Time fetched;
  };
  struct Plan;
  void Count(const char* action);
  absl::Status SendRedirect(const std::string& delivery_id, const InboxRecipient& r,
                            const std::string& envelope_from, const std::string& message,
                            const std::string& address);
  void SendVacation(const InboxRecipient& r, const sieve::MessageContext& context,
                    const sieve::Vacation& vacation);

  Backend* backend_;
  OutboundSubmitter* submitter_;
  InboxRulesOptions options_;
  prometheus::Family<prometheus::Counter>* actions_ = nullptr;  // {action}
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, CacheEntry> cache_ ABSL_GUARDED_BY(mu_);
};

// IMAP flags that mailstored accepts: the system flags but \Recent, and
// keyword atoms of at most 64 bytes; others are dropped (a script cannot
// make a delivery fail with a bad flag).
std::vector<std::string> StorableFlags(const std::vector<std::string>& flags);

}  // namespace mailgrid::relay
