#include "libs/outbound/dsn.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

std::string Rfc5322Date(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", t, absl::UTCTimeZone());
}

// Keeps a field value on one line: CR/LF/NUL and other controls become
// spaces (reply text comes from a remote server: no header injection).
std::string OneLine(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
  return out;
}

std::string HumanPart(const DsnInput& in) {
  std::string text;
  if (in.kind == DsnKind::kFailure) {
    absl::StrAppend(&text, "This is the mail system at host ", in.reporting_mta, ".\r\n\r\n",
                    "Your message could not be delivered to one or more recipients.\r\n",
                    "It is attached below (headers only).\r\n\r\n");
  } else {
    absl::StrAppend(&text, "This is the mail system at host ", in.reporting_mta, ".\r\n\r\n",
                    "####################################################################\r\n",
                    "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n",
                    "####################################################################\r\n\r\n",
                    "Your message could not be delivered yet. The mail system will keep\r\n",
                    "trying until ", Rfc5322Date(in.will_retry_until), ".\r\n\r\n");
  }
  for (const auto& r : in.recipients) {
    absl::StrAppend(&text, "<", OneLine(r.address), ">: ", OneLine(r.diagnostic), "\r\n");
  }
  return text;
}

std::string StatusPart(const DsnInput& in) {
  std::string s;
  absl::StrAppend(&s, "Reporting-MTA: dns; ", OneLine(in.reporting_mta), "\r\n");
  if (!in.queue_id.empty()) absl::StrAppend(&s, "X-Mailgrid-Queue-ID: ", in.queue_id, "\r\n");
  if (!in.envelope_from.empty()) {
    absl::StrAppend(&s, "X-Original-Sender: rfc822; ", OneLine(in.envelope_from), "\r\n");
  }
  if (in.arrival != absl::InfinitePast()) {
    absl::StrAppend(&s, "Arrival-Date: ", Rfc5322Date(in.arrival), "\r\n");
  }
  for (const auto& r : in.recipients) {
    s += "\r\n";
    if (!r.original_recipient.empty()) {
      absl::StrAppend(&s, "Original-Recipient: ", OneLine(r.original_recipient), "\r\n");
    }
    absl::StrAppend(&s, "Final-Recipient: rfc822; ", OneLine(r.address), "\r\n",
                    "Action: ", in.kind == DsnKind::kFailure ? "failed" : "delayed", "\r\n",
                    "Status: ", OneLine(r.status), "\r\n");
    if (!r.remote_mta.empty()) {
      absl::StrAppend(&s, "Remote-MTA: dns; ", OneLine(r.remote_mta), "\r\n");
    }
    if (!r.diagnostic.empty()) {
      absl::StrAppend(&s, "Diagnostic-Code: ", r.diagnostic_is_smtp ? "smtp; " : "X-mailgrid; ",
                      OneLine(r.diagnostic), "\r\n");
    }
    if (r.last_attempt != absl::InfinitePast()) {
      absl::StrAppend(&s, "Last-Attempt-Date: ", Rfc5322Date(r.last_attempt), "\r\n");
    }
    if (in.kind == DsnKind::kDelay && in.will_retry_until != absl::InfinitePast()) {
      absl::StrAppend(&s, "Will-Retry-Until: ", Rfc5322Date(in.will_retry_until), "\r\n");
    }
  }
  return s;
}

}  // namespace

std::string DsnStatusOf(const SmtpReply& reply, DsnKind kind) {
  if (!reply.enhanced_code().empty()) {
    if (kind == DsnKind::kFailure || reply.enhanced_code()[0] == '4') return reply.enhanced_code();
  }
  if (reply.code() >= 500) return "5.0.0";
  if (kind == DsnKind::kFailure) return reply.code() >= 400 ? "4.0.0" : "4.4.7";
  return reply.code() >= 400 ? "4.0.0" : "4.4.1";
}

std::string OriginalHeaders(std::string_view message) {
  std::string out;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    std::string_view line =
        message.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    absl::StrAppend(&out, ToAbslView(line), "\r\n");
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return out;
}

std::string BuildDsn(const DsnInput& in) {
  const std::string boundary = absl::StrCat(in.boundary, "/", in.reporting_mta);
  std::string m;
  absl::StrAppend(&m, "From: Mail Delivery System <MAILER-DAEMON@", OneLine(in.reporting_mta),
                  ">\r\n", "To: <", OneLine(in.envelope_from), ">\r\n", "Subject: ",
                  in.kind == DsnKind::kFailure ? "Undelivered Mail Returned to Sender"
                                               : "Delayed Mail (still being retried)",
                  "\r\n", "Date: ", Rfc5322Date(in.now), "\r\n", "Message-ID: <", in.boundary, "@",
                  OneLine(in.reporting_mta), ">\r\n", "Auto-Submitted: auto-replied\r\n",
                  "MIME-Version: 1.0\r\n",
                  "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                  "\tboundary=\"",
                  boundary, "\"\r\n", "\r\n", "This is a MIME-encapsulated message.\r\n\r\n");
  absl::StrAppend(&m, "--", boundary, "\r\n",
                  "Content-Description: Notification\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                  HumanPart(in), "\r\n");
  absl::StrAppend(&m, "--", boundary, "\r\n",
                  "Content-Description: Delivery report\r\n"
                  "Content-Type: message/delivery-status\r\n\r\n",
                  StatusPart(in), "\r\n");
  absl::StrAppend(&m, "--", boundary, "\r\n",
                  "Content-Description: Undelivered Message Headers\r\n"
                  "Content-Type: text/rfc822-headers\r\n\r\n",
                  OriginalHeaders(in.original_message), "\r\n");
  absl::StrAppend(&m, "--", boundary, "--\r\n");
  return m;
}

std::optional<NewMessage> MakeDsn(const QueueEntry& entry,
                                  const std::vector<QueueRecipient>& recipients,
                                  std::string_view original_message, DsnKind kind,
                                  std::string_view reporting_mta, absl::Time now) {
  // Never bounce a bounce (null sender), and nothing to say without recipients.
  if (entry.envelope_from().empty() || recipients.empty()) return std::nullopt;
  DsnInput in;
  in.kind = kind;
  in.reporting_mta = std::string(reporting_mta);
  in.envelope_from = entry.envelope_from();
  in.queue_id = entry.queue_id();
  in.arrival = FromProto(entry.created_at());
  in.will_retry_until = FromProto(entry.expires_at());
  in.now = now;
  in.original_message = std::string(original_message);
  unsigned char random[8];
  RAND_bytes(random, sizeof(random));
  in.boundary = absl::StrCat(entry.queue_id(), ".",
                             absl::BytesToHexString(absl::string_view(
                                 reinterpret_cast<const char*>(random), sizeof(random))));
  for (const auto& r : recipients) {
    DsnRecipient d;
    d.address = r.address();
    d.status = DsnStatusOf(r.last_reply(), kind);
    d.remote_mta = r.last_reply().remote_host();
    if (r.last_reply().code() != 0) {
      d.diagnostic_is_smtp = true;
      d.diagnostic =
          absl::StrCat(r.last_reply().code(), " ", r.last_reply().enhanced_code(),
                       r.last_reply().enhanced_code().empty() ? "" : " ", r.last_reply().text());
    } else {
      d.diagnostic =
          r.last_reply().error().empty() ? "delivery time expired" : r.last_reply().error();
    }
    if (r.has_last_attempt_at()) d.last_attempt = FromProto(r.last_attempt_at());
    in.recipients.push_back(std::move(d));
  }
  NewMessage dsn;
  dsn.tenant_id = entry.tenant_id();
  dsn.envelope_from = "";  // DSNs use the null sender: never bounced again
  dsn.recipients = {entry.envelope_from()};
  dsn.body = BuildDsn(in);
  return dsn;
}

}  // namespace mailgrid::outbound
