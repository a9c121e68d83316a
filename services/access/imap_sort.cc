#include "services/access/imap_sort.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "services/access/imap_thread.h"

namespace mailgrid::access {
namespace {

namespace ms = ::mailgrid::mailstore::v1;
using imap::SortCriterion;
using imap::SortKey;

bool Wants(const std::vector<SortCriterion>& criteria, SortKey key) {
  return std::any_of(criteria.begin(), criteria.end(),
                     [key](const SortCriterion& c) { return c.key == key; });
}

// RFC 5256 §3: "addr-mailbox of the first ... address". Group markers
// (RFC 3501 envelope: no host) are not addresses; a header with none, or
// no header, sorts as "".
std::string FirstMailbox(const google::protobuf::RepeatedPtrField<ms::EnvelopeAddress>& list) {
  for (const ms::EnvelopeAddress& a : list) {
    if (a.has_host()) return absl::AsciiStrToUpper(a.mailbox());
  }
  return "";
}

// <0, 0, >0 for one key, ascending.
int CompareKey(const SortMessage& a, const SortMessage& b, SortKey key) {
  auto three = [](const auto& x, const auto& y) { return x < y ? -1 : (y < x ? 1 : 0); };
  switch (key) {
    case SortKey::kArrival:
      return three(a.arrival, b.arrival);
    case SortKey::kDate:
      return three(a.sent, b.sent);
    case SortKey::kSize:
      return three(a.size, b.size);
    case SortKey::kFrom:
      return a.from.compare(b.from);
    case SortKey::kTo:
      return a.to.compare(b.to);
    case SortKey::kCc:
      return a.cc.compare(b.cc);
    case SortKey::kSubject:
      return a.subject.compare(b.subject);
  }
  return 0;
}

}  // namespace

SortMessage SortKeysOf(const ms::FetchResponse& m, uint32_t id,
                       const std::vector<SortCriterion>& criteria) {
  SortMessage s;
  s.id = id;
  s.order = m.uid();
  s.arrival = m.internal_date().seconds();
  s.size = m.rfc822_size();
  const ms::Envelope& e = m.envelope();
  if (Wants(criteria, SortKey::kDate)) {
    // The same reading of Date: as THREAD's (imap_thread.h).
    if (!e.has_date() || !ParseSentDate(e.date(), &s.sent)) s.sent = s.arrival;
  }
  if (Wants(criteria, SortKey::kFrom)) s.from = FirstMailbox(e.from());
  if (Wants(criteria, SortKey::kTo)) s.to = FirstMailbox(e.to());
  if (Wants(criteria, SortKey::kCc)) s.cc = FirstMailbox(e.cc());
  if (Wants(criteria, SortKey::kSubject) && e.has_subject()) {
    s.subject = ExtractBaseSubject(e.subject()).text;
  }
  return s;
}

std::vector<uint32_t> SortMessages(std::vector<SortMessage> messages,
                                   const std::vector<SortCriterion>& criteria) {
  std::sort(messages.begin(), messages.end(),
            [&criteria](const SortMessage& a, const SortMessage& b) {
              for (const SortCriterion& c : criteria) {
                int r = CompareKey(a, b, c.key);
                if (r != 0) return c.reverse ? r > 0 : r < 0;
              }
              // RFC 5256 §3: exact matches in mailbox order.
              return a.order < b.order;
            });
  std::vector<uint32_t> ids;
  ids.reserve(messages.size());
  for (const SortMessage& m : messages) ids.push_back(m.id);
  return ids;
}

}  // namespace mailgrid::access
