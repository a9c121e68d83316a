// SEARCH keys (libs/imap's tree) → mailstored's SearchQuery. Strings are
// already UTF-8 (the parser accepts CHARSET US-ASCII and UTF-8 only).
#include <algorithm>

#include "services/access/imap_session_internal.h"

namespace mailgrid::access {
namespace {

using imap::SearchKeyKind;

ms::SearchQuery Flag(std::string_view flag, bool absent) {
  ms::SearchQuery q;
  q.mutable_flag()->set_flag(std::string(flag));
  q.mutable_flag()->set_absent(absent);
  return q;
}

ms::SearchQuery Text(ms::TextField f, const std::string& value, const std::string& header = "") {
  ms::SearchQuery q;
  q.mutable_text()->set_field(f);
  q.mutable_text()->set_value(value);
  q.mutable_text()->set_header_name(header);
  return q;
}

ms::SearchQuery DateQ(ms::DateField f, ms::DateOp op, const imap::Date& d) {
  ms::SearchQuery q;
  q.mutable_date()->set_field(f);
  q.mutable_date()->set_op(op);
  q.mutable_date()->mutable_date()->set_year(d.year);
  q.mutable_date()->mutable_date()->set_month(d.month);
  q.mutable_date()->mutable_date()->set_day(d.day);
  return q;
}

ms::SearchQuery Uids(const std::vector<uint32_t>& uids) {
  ms::SearchQuery q;
  if (uids.empty()) {
    // Matches nothing.
    q.mutable_negation()->set_all(true);
    return q;
  }
  *q.mutable_uids() = CompactIdSet(uids);
  return q;
}

ms::SearchQuery Not(ms::SearchQuery inner) {
  ms::SearchQuery q;
  *q.mutable_negation() = std::move(inner);
  return q;
}

}  // namespace

absl::StatusOr<ms::SearchQuery> TranslateSearch(const imap::SearchKey& k,
                                                const std::vector<uint32_t>& uids,
                                                const std::vector<uint32_t>& recent,
                                                const std::vector<uint32_t>& saved,
                                                const AgeMatches* ages) {
  ms::SearchQuery q;
  switch (k.kind) {
    case SearchKeyKind::kAll:
      q.set_all(true);
      return q;
    case SearchKeyKind::kAnswered:
      return Flag("\\Answered", false);
    case SearchKeyKind::kDeleted:
      return Flag("\\Deleted", false);
    case SearchKeyKind::kDraft:
      return Flag("\\Draft", false);
    case SearchKeyKind::kFlagged:
      return Flag("\\Flagged", false);
    case SearchKeyKind::kSeen:
      return Flag("\\Seen", false);
    case SearchKeyKind::kUnanswered:
      return Flag("\\Answered", true);
    case SearchKeyKind::kUndeleted:
      return Flag("\\Deleted", true);
    case SearchKeyKind::kUndraft:
      return Flag("\\Draft", true);
    case SearchKeyKind::kUnflagged:
      return Flag("\\Flagged", true);
    case SearchKeyKind::kUnseen:
      return Flag("\\Seen", true);
    case SearchKeyKind::kKeyword:
      return Flag(k.text, false);
    case SearchKeyKind::kUnkeyword:
      return Flag(k.text, true);
    // \Recent is this session's: RECENT, NEW (recent and unseen), OLD.
    case SearchKeyKind::kRecent:
      return Uids(recent);
    case SearchKeyKind::kOld:
      return Not(Uids(recent));
    case SearchKeyKind::kNew: {
      ms::SearchQuery* all = q.mutable_all_of()->add_queries();
      *all = Uids(recent);
      *q.mutable_all_of()->add_queries() = Flag("\\Seen", true);
      return q;
    }
    case SearchKeyKind::kBcc:
      return Text(ms::TEXT_FIELD_BCC, k.text);
    case SearchKeyKind::kBody:
      return Text(ms::TEXT_FIELD_BODY, k.text);
    case SearchKeyKind::kCc:
      return Text(ms::TEXT_FIELD_CC, k.text);
    case SearchKeyKind::kFrom:
      return Text(ms::TEXT_FIELD_FROM, k.text);
    case SearchKeyKind::kSubject:
      return Text(ms::TEXT_FIELD_SUBJECT, k.text);
    case SearchKeyKind::kText:
      return Text(ms::TEXT_FIELD_TEXT, k.text);
    case SearchKeyKind::kTo:
      return Text(ms::TEXT_FIELD_TO, k.text);
    case SearchKeyKind::kHeader:
      return Text(ms::TEXT_FIELD_HEADER, k.text, k.field);
    case SearchKeyKind::kBefore:
      return DateQ(ms::DATE_FIELD_INTERNAL, ms::DATE_OP_BEFORE, k.date);
    case SearchKeyKind::kOn:
      return DateQ(ms::DATE_FIELD_INTERNAL, ms::DATE_OP_ON, k.date);
    case SearchKeyKind::kSince:
      return DateQ(ms::DATE_FIELD_INTERNAL, ms::DATE_OP_SINCE, k.date);
    case SearchKeyKind::kSentBefore:
      return DateQ(ms::DATE_FIELD_SENT, ms::DATE_OP_BEFORE, k.date);
    case SearchKeyKind::kSentOn:
      return DateQ(ms::DATE_FIELD_SENT, ms::DATE_OP_ON, k.date);
    case SearchKeyKind::kSentSince:
      return DateQ(ms::DATE_FIELD_SENT, ms::DATE_OP_SINCE, k.date);
    case SearchKeyKind::kLarger:
    case SearchKeyKind::kSmaller:
      q.mutable_size()->set_op(k.kind == SearchKeyKind::kLarger ? ms::SIZE_OP_LARGER
                                                                : ms::SIZE_OP_SMALLER);
      q.mutable_size()->set_bytes(k.number);
      return q;
    case SearchKeyKind::kModSeq:
      q.set_modseq_at_least(k.number);
      return q;
    case SearchKeyKind::kUid:
    case SearchKeyKind::kSequenceSet: {
      if (k.set.saved_result()) {
        // RFC 5182: "$" is the saved result, UIDs, whatever the key.
        std::vector<uint32_t> out;
        for (uint32_t u : saved) {
          if (std::binary_search(uids.begin(), uids.end(), u)) out.push_back(u);
        }
        return Uids(out);
      }
      // Resolved here against the session's map, so message numbers mean
      // what this client was told (not the server's current numbering).
      std::vector<uint32_t> out;
      if (!uids.empty()) {
        if (k.kind == SearchKeyKind::kUid) {
          for (const imap::SeqRange& r : k.set.Normalize(uids.back())) {
            auto it = std::lower_bound(uids.begin(), uids.end(), r.first);
            for (; it != uids.end() && *it <= r.last; ++it) out.push_back(*it);
          }
        } else {
          for (const imap::SeqRange& r : k.set.Normalize(static_cast<uint32_t>(uids.size()))) {
            for (uint64_t n = r.first; n <= r.last; ++n) out.push_back(uids[n - 1]);
          }
        }
      }
      return Uids(out);
    }
    case SearchKeyKind::kAnd:
    case SearchKeyKind::kOr: {
      auto* list = k.kind == SearchKeyKind::kAnd ? q.mutable_all_of()->mutable_queries()
                                                 : q.mutable_any_of()->mutable_queries();
      for (const imap::SearchKey& c : k.children) {
        absl::StatusOr<ms::SearchQuery> sub = TranslateSearch(c, uids, recent, saved, ages);
        if (!sub.ok()) return sub.status();
        *list->Add() = *std::move(sub);
      }
      if (list->empty()) q.set_all(true);
      return q;
    }
    case SearchKeyKind::kNot: {
      if (k.children.empty()) return absl::InvalidArgumentError("NOT without a key");
      absl::StatusOr<ms::SearchQuery> sub =
          TranslateSearch(k.children[0], uids, recent, saved, ages);
      if (!sub.ok()) return sub.status();
      return Not(*std::move(sub));
    }
    case SearchKeyKind::kOlder:
    case SearchKeyKind::kYounger:
      if (ages != nullptr) {
        if (auto it = ages->find(&k); it != ages->end()) return Uids(it->second);
      }
      break;
  }
  return absl::UnimplementedError("search key");
}

}  // namespace mailgrid::access
