// Delivery status notifications (RFC 3464 multipart/report, RFC 3462/6522)
// as pure functions: a delay warning or a failure notice to the envelope
// sender, with a human-readable part, a message/delivery-status part (one
// per-recipient block each) and the original message's header
// (text/rfc822-headers, never the body: smaller, and no content is bounced
// back to a possibly forged sender).
//
// Never bounce a bounce: a message with the null sender ("") gets no DSN
// (RFC 5321 §4.5.5); MakeDsn returns nullopt for it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "libs/outbound/queue.h"

namespace mailgrid::outbound {

enum class DsnKind { kFailure, kDelay };

struct DsnRecipient {
  std::string address;     // Final-Recipient (rfc822)
  // Original-Recipient "type;address" from the RCPT's ORCPT (RFC 3464
  // §2.3.1: MUST when ORCPT was given); "" when none.
  std::string original_recipient;
  std::string status;      // RFC 3463 "5.1.1"
  std::string remote_mta;  // host name, "" when none answered
  std::string diagnostic;  // "550 5.1.1 no such user" (smtp;) or a local error
  bool diagnostic_is_smtp = false;
  absl::Time last_attempt = absl::InfinitePast();
};

struct DsnInput {
  DsnKind kind = DsnKind::kFailure;
  std::string reporting_mta;  // our host name: Reporting-MTA and From's domain
  std::string envelope_from;  // the original sender: the DSN goes to them
  std::string queue_id;       // X-Postfix-like queue id for the reader
  absl::Time arrival = absl::InfinitePast();
  absl::Time will_retry_until = absl::InfinitePast();  // kDelay
  absl::Time now = absl::InfinitePast();
  std::vector<DsnRecipient> recipients;
  std::string original_message;  // headers are taken from it
  std::string boundary;          // unique token for the MIME boundary
};

// The status code to report: the reply's enhanced code, else the class of
// its code ("5.0.0", "4.0.0"), else "4.4.1" (no answer) or for a failure
// with no answer "5.4.7" (delivery time expired).
std::string DsnStatusOf(const SmtpReply& reply, DsnKind kind);

// The header block of a message (up to, excluding, the first empty line),
// with CRLF line ends.
std::string OriginalHeaders(std::string_view message);

// The complete DSN message (headers + multipart body, CRLF).
std::string BuildDsn(const DsnInput& input);

// A queue entry's DSN ready to enqueue (null sender, to the original
// sender), or nullopt when the original had the null sender or there is
// nobody to report.
std::optional<NewMessage> MakeDsn(const QueueEntry& entry,
                                  const std::vector<QueueRecipient>& recipients,
                                  std::string_view original_message, DsnKind kind,
                                  std::string_view reporting_mta, absl::Time now);

}  // namespace mailgrid::outbound
