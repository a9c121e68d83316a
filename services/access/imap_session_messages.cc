// ImapSession: the selected state (FETCH, STORE, SEARCH, COPY/MOVE,
// EXPUNGE, NOOP/CHECK, IDLE) and the sequence-number bookkeeping.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libs/imap/commands/fetch.h"
#include "services/access/imap_session.h"
#include "services/access/imap_session_internal.h"

namespace mailgrid::access {

using imap::Condition;

namespace {

std::string SetString(const std::vector<uint32_t>& sorted_or_not) {
  std::string out;
  size_t i = 0;
  const auto& v = sorted_or_not;
  while (i < v.size()) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ',';
    absl::StrAppend(&out, v[i]);
    if (j > i) absl::StrAppend(&out, ":", v[j]);
    i = j + 1;
  }
  return out;
}

// COPYUID lists source and destination UIDs element by element; ranges are
// only valid where both sides are consecutive, so list them one by one.
std::string UidList(const google::protobuf::RepeatedField<uint32_t>& v) {
  std::string out;
  for (uint32_t u : v) absl::StrAppend(&out, out.empty() ? "" : ",", u);
  return out;
}

ms::SectionText SectionTextOf(imap::FetchSection::Text t) {
  switch (t) {
    case imap::FetchSection::Text::kHeader:
      return ms::SECTION_TEXT_HEADER;
    case imap::FetchSection::Text::kHeaderFields:
      return ms::SECTION_TEXT_HEADER_FIELDS;
    case imap::FetchSection::Text::kHeaderFieldsNot:
      return ms::SECTION_TEXT_HEADER_FIELDS_NOT;
    case imap::FetchSection::Text::kText:
      return ms::SECTION_TEXT_TEXT;
    case imap::FetchSection::Text::kMime:
      return ms::SECTION_TEXT_MIME;
    case imap::FetchSection::Text::kNone:
      break;
  }
  return ms::SECTION_TEXT_UNSPECIFIED;
}

ms::IdSet UidSet(const std::vector<uint32_t>& uids) { return CompactIdSet(uids); }

}  // namespace

// A UID set as the client wrote it, "*" left to the store (to_last): used
// where UIDs outside the session's map matter (VANISHED (EARLIER)).
ms::IdSet IdSetOf(const imap::SequenceSet& set) {
  ms::IdSet out;
  for (const imap::SeqRange& r : set.ranges()) {
    ms::IdRange* x = out.add_ranges();
    if (r.first == imap::kSeqStar || r.last == imap::kSeqStar) {
      // "n:*" and "*:n" are n up to the largest UID; "*" alone the largest.
      uint32_t n = r.first == imap::kSeqStar ? r.last : r.first;
      x->set_first(n == imap::kSeqStar ? UINT32_MAX : n);
      x->set_to_last(true);
    } else {
      x->set_first(r.first);
      x->set_last(r.last);
    }
  }
  return out;
}

namespace {

bool HasModSeqKey(const imap::SearchKey& k) {
  if (k.kind == imap::SearchKeyKind::kModSeq) return true;
  for (const imap::SearchKey& c : k.children) {
    if (HasModSeqKey(c)) return true;
  }
  return false;
}

const ms::BodyPart* FindPart(const ms::BodyPart& p, const std::string& id) {
  if (p.part_id() == id) return &p;
  for (const ms::BodyPart& c : p.parts()) {
    if (const ms::BodyPart* f = FindPart(c, id)) return f;
  }
  if (p.has_message_body()) return FindPart(p.message_body(), id);
  return nullptr;
}

// Whether a BINARY item of `items` names a part whose encoding mailstored
// cannot undo (it then returns the bytes still encoded, without a word).
bool HasUnknownCte(const ms::FetchResponse& m, const std::vector<imap::FetchItem>& items) {
  for (const imap::FetchItem& it : items) {
    if (it.attr != imap::FetchAttr::kBinary && it.attr != imap::FetchAttr::kBinarySize) continue;
    std::string id;
    for (uint32_t p : it.section.part) absl::StrAppend(&id, id.empty() ? "" : ".", p);
    const ms::BodyPart& top = m.bodystructure();
    // Part 1 of a single-part message is its body (RFC 3501 §6.4.5).
    const ms::BodyPart* part = id == "1" && top.parts_size() == 0 && top.type() != "multipart"
                                   ? &top
                                   : FindPart(top, id);
    if (part == nullptr) continue;  // a missing part is NIL, not an error
    std::string e = absl::AsciiStrToLower(part->encoding());
    if (!e.empty() && e != "7bit" && e != "8bit" && e != "binary" && e != "base64" &&
        e != "quoted-printable") {
      return true;
    }
  }
  return false;
}

}  // namespace

uint32_t ImapSession::SeqOf(uint32_t uid) const {
  if (!selected_) return 0;
  const auto& u = selected_->uids;
  auto it = std::lower_bound(u.begin(), u.end(), uid);
  if (it == u.end() || *it != uid) return 0;
  return static_cast<uint32_t>(it - u.begin()) + 1;
}

void ImapSession::ReportExpunged(const std::vector<uint32_t>& uids) {
  if (!qresync_) {
    // Ascending UIDs: each EXPUNGE renumbers the ones after it, and
    // SeqOf() is computed after the previous removal.
    for (uint32_t u : uids) RemoveUid(u);
    return;
  }
  std::vector<uint32_t> gone;
  auto& map = selected_->uids;
  auto& recent = selected_->recent;
  for (uint32_t u : uids) {
    auto it = std::lower_bound(map.begin(), map.end(), u);
    if (it == map.end() || *it != u) continue;
    map.erase(it);
    auto r = std::lower_bound(recent.begin(), recent.end(), u);
    if (r != recent.end() && *r == u) recent.erase(r);
    gone.push_back(u);
  }
  if (!gone.empty()) Write("* VANISHED " + SetString(gone) + "\r\n");
}

void ImapSession::WriteFlagsFetch(const ms::MessageFlags& m) {
  bool recent = std::binary_search(selected_->recent.begin(), selected_->recent.end(), m.uid());
  auto w = imap::ResponseWriter::Untagged();
  w.Number(SeqOf(m.uid())).Atom("FETCH").Open();
  // RFC 7162 §3.2.4: with QRESYNC every untagged FETCH carries the UID.
  if (qresync_) w.Atom("UID").Number(m.uid());
  w.Atom("FLAGS").Open();
  for (const std::string& f : ImapFlags(m.flags(), recent)) w.Flag(f);
  w.Close();
  if (condstore_) w.Atom("MODSEQ").Raw(absl::StrCat("(", m.modseq(), ")"));
  w.Close();
  Untagged(w.Finish());
}

void ImapSession::RemoveUid(uint32_t uid) {
  uint32_t seq = SeqOf(uid);
  if (seq == 0) return;
  selected_->uids.erase(selected_->uids.begin() + (seq - 1));
  auto& r = selected_->recent;
  auto it = std::lower_bound(r.begin(), r.end(), uid);
  if (it != r.end() && *it == uid) r.erase(it);
  Write(absl::StrCat("* ", seq, " EXPUNGE\r\n"));
}

std::vector<uint32_t> ImapSession::SetToUids(const imap::SequenceSet& set, bool uid) const {
  std::vector<uint32_t> out;
  const auto& u = selected_->uids;
  if (u.empty()) return out;
  if (set.saved_result()) {
    // "$" (RFC 5182) is UIDs even in a command that takes message numbers;
    // those expunged since the SEARCH are left out.
    for (uint32_t s : selected_->saved) {
      if (std::binary_search(u.begin(), u.end(), s)) out.push_back(s);
    }
    return out;
  }
  if (uid) {
    for (const imap::SeqRange& r : set.Normalize(u.back())) {
      auto it = std::lower_bound(u.begin(), u.end(), r.first);
      for (; it != u.end() && *it <= r.last; ++it) out.push_back(*it);
    }
  } else {
    for (const imap::SeqRange& r : set.Normalize(static_cast<uint32_t>(u.size()))) {
      for (uint64_t n = r.first; n <= r.last; ++n) out.push_back(u[n - 1]);
    }
  }
  return out;
}

// ---- FETCH -----------------------------------------------------------------

void ImapSession::CmdFetch(const imap::Command& c) {
  const auto& a = c.get<imap::FetchArgs>();
  std::string tag = c.tag;
  if (!c.uid && a.set.max_explicit() > selected_->uids.size()) {
    return Finish(tag, Condition::kBad, "", "Invalid message sequence number");
  }
  std::vector<uint32_t> uids = SetToUids(a.set, c.uid);
  if (uids.empty()) return Finish(tag, Condition::kOk, "", "FETCH completed");
  ms::FetchRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  *req.mutable_messages()->mutable_uids() = UidSet(uids);
  if (a.changed_since) {
    req.set_changed_since(*a.changed_since);
    condstore_ = true;
  }
  auto items = std::make_shared<std::vector<imap::FetchItem>>(a.items);
  if ((c.uid || qresync_) &&
      std::none_of(items->begin(), items->end(),
                   [](const imap::FetchItem& i) { return i.attr == imap::FetchAttr::kUid; })) {
    items->insert(items->begin(), imap::FetchItem{imap::FetchAttr::kUid});
  }
  if (condstore_ && a.changed_since &&
      std::none_of(items->begin(), items->end(),
                   [](const imap::FetchItem& i) { return i.attr == imap::FetchAttr::kModSeq; })) {
    items->push_back(imap::FetchItem{imap::FetchAttr::kModSeq});
  }
  ms::FetchItems* fi = req.mutable_items();
  bool set_seen = false;
  auto add_section = [&](const imap::FetchItem& it, ms::SectionText text, bool seen,
                         bool decode = false) {
    ms::BodySection* s = fi->add_sections();
    s->set_decode(decode);
    std::string part;
    for (uint32_t p : it.section.part) absl::StrAppend(&part, part.empty() ? "" : ".", p);
    s->set_part(part);
    s->set_text(text);
    for (const std::string& f : it.section.fields) s->add_header_fields(f);
    if (it.partial && it.attr != imap::FetchAttr::kBinarySize) {
      s->set_has_partial(true);
      s->set_partial_offset(it.partial->offset);
      s->set_partial_length(it.partial->length);
    }
    set_seen |= seen;
  };
  for (const imap::FetchItem& it : *items) {
    switch (it.attr) {
      case imap::FetchAttr::kEnvelope:
        fi->set_envelope(true);
        break;
      case imap::FetchAttr::kFlags:
        fi->set_flags(true);
        break;
      case imap::FetchAttr::kInternalDate:
        fi->set_internal_date(true);
        break;
      case imap::FetchAttr::kRfc822Size:
        fi->set_rfc822_size(true);
        break;
      case imap::FetchAttr::kBody:
      case imap::FetchAttr::kBodyStructure:
        fi->set_bodystructure(true);
        break;
      case imap::FetchAttr::kUid:
        break;
      case imap::FetchAttr::kModSeq:
        fi->set_modseq(true);
        condstore_ = true;
        break;
      case imap::FetchAttr::kRfc822:
        add_section(it, ms::SECTION_TEXT_UNSPECIFIED, true);
        break;
      case imap::FetchAttr::kRfc822Header:
        add_section(it, ms::SECTION_TEXT_HEADER, false);
        break;
      case imap::FetchAttr::kRfc822Text:
        add_section(it, ms::SECTION_TEXT_TEXT, true);
        break;
      case imap::FetchAttr::kBodySection:
        add_section(it, SectionTextOf(it.section.text), !it.peek);
        break;
      // RFC 3516: the part with its Content-Transfer-Encoding undone
      // (mailstored decodes); BINARY.SIZE is the length of that.
      case imap::FetchAttr::kBinary:
        add_section(it, ms::SECTION_TEXT_UNSPECIFIED, !it.peek, true);
        fi->set_bodystructure(true);  // to see each part's encoding (UNKNOWN-CTE)
        break;
      case imap::FetchAttr::kBinarySize:
        add_section(it, ms::SECTION_TEXT_UNSPECIFIED, false, true);
        fi->set_bodystructure(true);
        break;
    }
  }
  if (set_seen && !selected_->read_only) {
    req.set_set_seen(true);
    fi->set_flags(true);
    // The new MODSEQ: shown with CONDSTORE, and remembered so the next
    // sync does not report this change again.
    fi->set_modseq(true);
  }
  Begin();
  if (a.vanished) {
    // UID FETCH ... (CHANGEDSINCE m VANISHED), RFC 7162 §3.2.6: first the
    // UIDs of the set expunged since m. Those still in the session's map
    // are not announced yet: they come later as VANISHED, once, at the
    // moment the map changes.
    ms::ChangesSinceRequest cs;
    cs.set_mailbox_id(req.mailbox_id());
    cs.mutable_folder()->set_folder_id(selected_->folder_id);
    cs.set_modseq(*a.changed_since);
    *cs.mutable_uids() = IdSetOf(a.set);
    cs.set_include_vanished(true);
    cs.set_uidvalidity(selected_->uidvalidity);
    backend_->ChangesSince(
        TargetOf(selected_->mailbox), cs,
        Guard<ms::ChangesSinceResponse>(
            alive_, [this, tag, req, items](absl::StatusOr<ms::ChangesSinceResponse> r) {
              if (!r.ok()) {
                FinishError(tag, r.status());
                return Done();
              }
              std::vector<uint32_t> earlier;
              for (uint32_t u : ExpandIdSet(r->vanished())) {
                if (SeqOf(u) == 0) earlier.push_back(u);
              }
              if (!earlier.empty()) {
                Write("* VANISHED (EARLIER) " + SetString(earlier) + "\r\n");
              }
              RunFetch(tag, req, items);
            }));
    return;
  }
  if (CachedFetch(tag, req, items)) return;
  RunFetch(tag, req, std::move(items));
}

void ImapSession::RunFetch(const std::string& tag, const ms::FetchRequest& req,
                           std::shared_ptr<std::vector<imap::FetchItem>> items) {
  backend_->Fetch(
      TargetOf(selected_->mailbox), req,
      Guard<std::vector<ms::FetchResponse>>(
          alive_, [this, tag, items](absl::StatusOr<std::vector<ms::FetchResponse>> r) {
            if (!r.ok()) {
              FinishError(tag, r.status());
              return Done();
            }
            // RFC 3516 §4.3: a part whose Content-Transfer-Encoding is
            // unknown cannot be decoded: the whole FETCH is NO [UNKNOWN-CTE].
            for (const ms::FetchResponse& m : *r) {
              if (SeqOf(m.uid()) != 0 && HasUnknownCte(m, *items)) {
                Finish(tag, Condition::kNo, "UNKNOWN-CTE",
                       "Cannot decode this Content-Transfer-Encoding");
                return Done();
              }
            }
            for (const ms::FetchResponse& m : *r) WriteFetch(m, *items);
            Finish(tag, Condition::kOk, "", "FETCH completed");
            Done();
          }));
}

void ImapSession::WriteFetch(const ms::FetchResponse& m, const std::vector<imap::FetchItem>& items) {
  uint32_t seq = SeqOf(m.uid());
  if (seq == 0) return;  // expunged by someone else, not yet announced
  bool recent =
      std::binary_search(selected_->recent.begin(), selected_->recent.end(), m.uid());
  auto w = imap::ResponseWriter::Untagged();
  w.Number(seq).Atom("FETCH").Open();
  int section = 0;
  bool flags_sent = false, modseq_sent = false;
  for (const imap::FetchItem& it : items) {
    switch (it.attr) {
      case imap::FetchAttr::kUid:
        w.Atom("UID").Number(m.uid());
        break;
      case imap::FetchAttr::kFlags:
        w.Atom("FLAGS").Open();
        for (const std::string& f : ImapFlags(m.flags(), recent)) w.Flag(f);
        w.Close();
        flags_sent = true;
        break;
      case imap::FetchAttr::kInternalDate:
        w.Atom("INTERNALDATE")
            .Raw("\"" + InternalDate(m.internal_date().seconds()) + "\"");
        break;
      case imap::FetchAttr::kRfc822Size:
        w.Atom("RFC822.SIZE").Number(m.rfc822_size());
        break;
      case imap::FetchAttr::kEnvelope:
        w.Atom("ENVELOPE");
        WriteEnvelope(m.envelope(), w);
        break;
      case imap::FetchAttr::kBody:
      case imap::FetchAttr::kBodyStructure:
        w.Atom(it.attr == imap::FetchAttr::kBody ? "BODY" : "BODYSTRUCTURE");
        WriteBodyStructure(m.bodystructure(),
                           it.attr == imap::FetchAttr::kBodyStructure, w);
        break;
      case imap::FetchAttr::kModSeq:
        w.Atom("MODSEQ").Raw(absl::StrCat("(", m.modseq(), ")"));
        modseq_sent = true;
        break;
      case imap::FetchAttr::kBinary:
      case imap::FetchAttr::kBinarySize: {
        const ms::SectionData* d =
            section < m.sections_size() ? &m.sections(section) : nullptr;
        ++section;
        w.Raw(imap::FetchResponseName(it));
        bool has = d != nullptr && d->has_data();
        if (it.attr == imap::FetchAttr::kBinarySize) {
          w.Number(has ? d->data().size() : 0);
        } else if (!has) {
          w.Nil();
        } else if (d->data().find('\0') != std::string::npos) {
          w.Literal8(d->data());  // NUL only in literal8
        } else {
          w.Literal(d->data());
        }
        break;
      }
      case imap::FetchAttr::kRfc822:
      case imap::FetchAttr::kRfc822Header:
      case imap::FetchAttr::kRfc822Text:
      case imap::FetchAttr::kBodySection: {
        std::string name = it.attr == imap::FetchAttr::kRfc822         ? "RFC822"
                           : it.attr == imap::FetchAttr::kRfc822Header ? "RFC822.HEADER"
                           : it.attr == imap::FetchAttr::kRfc822Text
                               ? "RFC822.TEXT"
                               : imap::FetchResponseName(it);
        w.Raw(name);
        const ms::SectionData* d =
            section < m.sections_size() ? &m.sections(section) : nullptr;
        ++section;
        if (d != nullptr && d->has_data()) {
          w.Literal(d->data());
        } else {
          w.Nil();
        }
        break;
      }
      default:
        break;
    }
  }
  if (m.flags_changed() && m.modseq() != 0)
    announced_.emplace_back(m.uid(), m.modseq());
  if (m.flags_changed() && !flags_sent) {
    w.Atom("FLAGS").Open();
    for (const std::string& f : ImapFlags(m.flags(), recent)) w.Flag(f);
    w.Close();
    if (condstore_ && !modseq_sent)
      w.Atom("MODSEQ").Raw(absl::StrCat("(", m.modseq(), ")"));
  }
  w.Close();
  Untagged(w.Finish());
}

// ---- STORE -----------------------------------------------------------------

void ImapSession::CmdStore(const imap::Command& c) {
  const auto& a = c.get<imap::StoreArgs>();
  std::string tag = c.tag;
  if (selected_->read_only) return Finish(tag, Condition::kNo, "READ-ONLY", "Mailbox is read-only");
  if (!c.uid && a.set.max_explicit() > selected_->uids.size()) {
    return Finish(tag, Condition::kBad, "", "Invalid message sequence number");
  }
  std::vector<uint32_t> uids = SetToUids(a.set, c.uid);
  if (uids.empty()) return Finish(tag, Condition::kOk, "", "STORE completed");
  ms::StoreFlagsRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  *req.mutable_messages()->mutable_uids() = UidSet(uids);
  req.set_mode(a.op == imap::StoreArgs::Op::kAdd      ? ms::STORE_MODE_ADD
               : a.op == imap::StoreArgs::Op::kRemove ? ms::STORE_MODE_REMOVE
                                                      : ms::STORE_MODE_REPLACE);
  for (const std::string& f : a.flags) {
    if (absl::AsciiStrToLower(f) != "\\recent") req.add_flags(f);  // session state, not stored
  }
  if (a.unchanged_since) {
    req.set_unchanged_since(*a.unchanged_since);
    condstore_ = true;
  }
  bool silent = a.silent, uid = c.uid, modseq = condstore_;
  Begin();
  backend_->StoreFlags(
      TargetOf(selected_->mailbox), req,
      Guard<ms::StoreFlagsResponse>(
          alive_, [this, tag, silent, uid, modseq](absl::StatusOr<ms::StoreFlagsResponse> r) {
            if (!r.ok()) {
              FinishError(tag, r.status());
              return Done();
            }
            for (const ms::MessageFlags& m : r->updated()) {
              uint32_t seq = SeqOf(m.uid());
              if (seq != 0) announced_.emplace_back(m.uid(), m.modseq());
              if (seq == 0 || (silent && !modseq)) continue;
              bool recent =
                  std::binary_search(selected_->recent.begin(), selected_->recent.end(), m.uid());
              auto w = imap::ResponseWriter::Untagged();
              w.Number(seq).Atom("FETCH").Open();
              if (!silent) {
                w.Atom("FLAGS").Open();
                for (const std::string& f : ImapFlags(m.flags(), recent)) w.Flag(f);
                w.Close();
              }
              if (uid || qresync_) w.Atom("UID").Number(m.uid());
              if (modseq) w.Atom("MODSEQ").Raw(absl::StrCat("(", m.modseq(), ")"));
              w.Close();
              Untagged(w.Finish());
            }
            std::vector<uint32_t> modified = ExpandIdSet(r->modified());
            if (!modified.empty()) {
              if (!uid) {
                for (uint32_t& m : modified) m = SeqOf(m);
                std::sort(modified.begin(), modified.end());
              }
              Finish(tag, Condition::kOk, "MODIFIED " + SetString(modified),
                     "Conditional STORE failed");
            } else {
              Finish(tag, Condition::kOk, "", "STORE completed");
            }
            Done();
          }));
}

// ---- SEARCH ----------------------------------------------------------------

void CollectAgeKeys(const imap::SearchKey& k, std::vector<const imap::SearchKey*>* out) {
  if (k.kind == imap::SearchKeyKind::kOlder || k.kind == imap::SearchKeyKind::kYounger) {
    out->push_back(&k);
  }
  for (const imap::SearchKey& c : k.children) CollectAgeKeys(c, out);
}

void ImapSession::CmdSearch(const imap::Command& c) {
  auto job = std::make_shared<SearchJob>();
  job->tag = c.tag;
  job->uid = c.uid;
  job->args = c.get<imap::SearchArgs>();
  job->now = absl::Now();
  CollectAgeKeys(job->args.criteria, &job->age_keys);
  Begin();
  if (job->age_keys.empty()) return RunSearch(job);
  SearchAges(job, 0);
}

// THREAD (RFC 5256): the SEARCH above, then imap_session_thread.cc.
void ImapSession::CmdThread(const imap::Command& c) {
  const auto& a = c.get<imap::ThreadArgs>();
  auto job = std::make_shared<SearchJob>();
  job->tag = c.tag;
  job->uid = c.uid;
  job->args = a.search;
  job->thread = a.algorithm;
  job->now = absl::Now();
  CollectAgeKeys(job->args.criteria, &job->age_keys);
  Begin();
  if (job->age_keys.empty()) return RunSearch(job);
  SearchAges(job, 0);
}

// OLDER/YOUNGER n (RFC 5032) are seconds, and mailstored searches dates by
// day: each key is resolved first to exact UIDs with a day search one day
// wider on each side, then the INTERNALDATE of those messages. The main
// search then uses the UIDs, so NOT/OR around the key stay exact.
void ImapSession::SearchAges(std::shared_ptr<SearchJob> job, size_t i) {
  if (i == job->age_keys.size()) return RunSearch(job);
  const imap::SearchKey* k = job->age_keys[i];
  bool older = k->kind == imap::SearchKeyKind::kOlder;
  absl::Time cutoff = job->now - absl::Seconds(static_cast<int64_t>(
                                     std::min<uint64_t>(k->number, uint64_t{1} << 40)));
  absl::CivilDay day = absl::ToCivilDay(cutoff, absl::UTCTimeZone()) + (older ? 2 : -1);
  ms::SearchRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  ms::DateMatch* d = req.mutable_query()->mutable_date();
  d->set_field(ms::DATE_FIELD_INTERNAL);
  d->set_op(older ? ms::DATE_OP_BEFORE : ms::DATE_OP_SINCE);
  d->mutable_date()->set_year(static_cast<int32_t>(day.year()));
  d->mutable_date()->set_month(day.month());
  d->mutable_date()->set_day(day.day());
  auto fail = [this, job](const absl::Status& st) {
    if (job->args.result_options && job->args.result_options->save && selected_) {
      selected_->saved.clear();
    }
    FinishError(job->tag, st);
    Done();
  };
  backend_->Search(
      TargetOf(selected_->mailbox), req,
      Guard<ms::SearchResponse>(alive_, [this, job, i, k, older, cutoff,
                                         fail](absl::StatusOr<ms::SearchResponse> r) {
        if (!r.ok()) return fail(r.status());
        if (r->uids().ranges_size() == 0) {
          job->ages[k] = {};
          return SearchAges(job, i + 1);
        }
        ms::FetchRequest f;
        f.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
        f.mutable_folder()->set_folder_id(selected_->folder_id);
        *f.mutable_messages()->mutable_uids() = r->uids();
        f.mutable_items()->set_internal_date(true);
        backend_->Fetch(
            TargetOf(selected_->mailbox), f,
            Guard<std::vector<ms::FetchResponse>>(
                alive_, [this, job, i, k, older, cutoff,
                         fail](absl::StatusOr<std::vector<ms::FetchResponse>> got) {
                  if (!got.ok()) return fail(got.status());
                  std::vector<uint32_t>& out = job->ages[k];
                  int64_t limit = absl::ToUnixSeconds(cutoff);
                  for (const ms::FetchResponse& m : *got) {
                    // OLDER: more than n seconds old; YOUNGER: at most n.
                    bool is_older = m.internal_date().seconds() < limit;
                    if (is_older == older) out.push_back(m.uid());
                  }
                  std::sort(out.begin(), out.end());
                  SearchAges(job, i + 1);
                }));
      }));
}

void ImapSession::RunSearch(std::shared_ptr<SearchJob> job) {
  const imap::SearchArgs& a = job->args;
  std::string tag = job->tag;
  std::optional<imap::SearchReturnOptions> ret = a.result_options;
  bool save = ret && ret->save;
  absl::StatusOr<ms::SearchQuery> q = TranslateSearch(a.criteria, selected_->uids,
                                                      selected_->recent, selected_->saved,
                                                      &job->ages);
  if (!q.ok()) {
    if (save) selected_->saved.clear();  // RFC 5182 §2.1: a failed SAVE empties "$"
    Finish(tag, Condition::kNo, "CANNOT", "Search key not supported");
    return Done();
  }
  bool modseq = HasModSeqKey(a.criteria);
  if (modseq) condstore_ = true;
  ms::SearchRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  *req.mutable_query() = *std::move(q);
  bool uid = job->uid;
  backend_->Search(TargetOf(selected_->mailbox), req,
                   Guard<ms::SearchResponse>(alive_, [this, job, tag, uid, modseq, ret,
                                                      save](absl::StatusOr<ms::SearchResponse> r) {
                     if (!r.ok()) {
                       if (save && selected_) selected_->saved.clear();
                       FinishError(tag, r.status());
                       return Done();
                     }
                     if (job->thread) return ThreadMatches(job, *r);
                     if (job->sort) {
                       if (modseq && r->count() > 0) job->sort_modseq = r->highest_modseq();
                       return SortMatches(job, *r);
                     }
                     if (save) {
                       selected_->saved.clear();
                       for (uint32_t u : ExpandIdSet(r->uids())) {
                         if (SeqOf(u) != 0) selected_->saved.push_back(u);
                       }
                     }
                     // RETURN (SAVE) alone answers no ESEARCH (RFC 5182 §2.4).
                     bool only_save = save && !ret->min && !ret->max && !ret->all && !ret->count;
                     if (ret && !only_save) {
                       WriteEsearch(tag, *ret, uid, modseq, *r);
                       Finish(tag, Condition::kOk, "", "SEARCH completed");
                       return Done();
                     }
                     if (ret) {
                       Finish(tag, Condition::kOk, "", "SEARCH completed");
                       return Done();
                     }
                     std::string line = "* SEARCH";
                     for (uint32_t u : ExpandIdSet(r->uids())) {
                       uint32_t n = uid ? (SeqOf(u) != 0 ? u : 0) : SeqOf(u);
                       if (n != 0) absl::StrAppend(&line, " ", n);
                     }
                     if (modseq && r->count() > 0) {
                       absl::StrAppend(&line, " (MODSEQ ", r->highest_modseq(), ")");
                     }
                     Write(line + "\r\n");
                     Finish(tag, Condition::kOk, "", "SEARCH completed");
                     Done();
                   }));
}

// RFC 4731: "* ESEARCH (TAG "t") [UID] MIN n MAX n COUNT n ALL set". An
// empty result has only COUNT 0; RETURN () means ALL.
void ImapSession::WriteEsearch(const std::string& tag, const imap::SearchReturnOptions& ret,
                               bool uid, bool modseq, const ms::SearchResponse& r) {
  std::vector<uint32_t> hits;
  for (uint32_t u : ExpandIdSet(r.uids())) {
    uint32_t n = SeqOf(u);  // only messages the client knows of
    if (n != 0) hits.push_back(uid ? u : n);
  }
  bool all = ret.all || (!ret.min && !ret.max && !ret.count);
  std::string line = "* ESEARCH (TAG \"" + tag + "\")";
  if (uid) line += " UID";
  if (!hits.empty()) {
    if (ret.min) absl::StrAppend(&line, " MIN ", hits.front());
    if (ret.max) absl::StrAppend(&line, " MAX ", hits.back());
  }
  if (ret.count) absl::StrAppend(&line, " COUNT ", hits.size());
  if (all && !hits.empty()) absl::StrAppend(&line, " ALL ", SetString(hits));
  // RFC 7162 §3.1.5: the highest MODSEQ of the matches, when asked by a
  // MODSEQ key.
  if (modseq && !hits.empty()) absl::StrAppend(&line, " MODSEQ ", r.highest_modseq());
  Write(line + "\r\n");
}

// ---- COPY / MOVE / EXPUNGE --------------------------------------------------

void ImapSession::CmdCopy(const imap::Command& c, bool move) {
  const auto& a = c.get<imap::CopyArgs>();
  std::string tag = c.tag;
  std::string verb = move ? "MOVE" : "COPY";
  if (move && selected_->read_only) {
    return Finish(tag, Condition::kNo, "READ-ONLY", "Mailbox is read-only");
  }
  if (!c.uid && a.set.max_explicit() > selected_->uids.size()) {
    return Finish(tag, Condition::kBad, "", "Invalid message sequence number");
  }
  std::optional<Target> dest = Resolve(a.mailbox);
  if (!dest) return Finish(tag, Condition::kNo, "TRYCREATE", "No such mailbox");
  std::vector<uint32_t> uids = SetToUids(a.set, c.uid);
  if (uids.empty()) return Finish(tag, Condition::kOk, "", verb + " completed");
  if (dest->mailbox != selected_->mailbox) {
    return StartCrossCopy(tag, move, dest->mailbox, dest->folder, std::move(uids));
  }
  std::string mailbox_id = principal_->mailboxes[selected_->mailbox].mailbox_id();
  auto fail = [this, tag](const absl::Status& st) {
    if (st.code() == absl::StatusCode::kNotFound) {
      Finish(tag, Condition::kNo, "TRYCREATE", "No such mailbox");
    } else {
      FinishError(tag, st);
    }
    Done();
  };
  Begin();
  if (!move) {
    ms::CopyRequest req;
    req.set_mailbox_id(mailbox_id);
    req.mutable_source()->set_folder_id(selected_->folder_id);
    *req.mutable_messages()->mutable_uids() = UidSet(uids);
    req.mutable_destination()->set_name(dest->folder);
    backend_->Copy(
        TargetOf(selected_->mailbox), req,
        Guard<ms::CopyResponse>(alive_, [this, tag, fail](absl::StatusOr<ms::CopyResponse> r) {
          if (!r.ok()) return fail(r.status());
          Finish(tag, Condition::kOk,
                 absl::StrCat("COPYUID ", r->destination_uidvalidity(), " ",
                              UidList(r->source_uids()), " ", UidList(r->destination_uids())),
                 "COPY completed");
          Done();
        }));
    return;
  }
  ms::MoveRequest req;
  req.set_mailbox_id(mailbox_id);
  req.mutable_source()->set_folder_id(selected_->folder_id);
  *req.mutable_messages()->mutable_uids() = UidSet(uids);
  req.mutable_destination()->set_name(dest->folder);
  backend_->Move(
      TargetOf(selected_->mailbox), req,
      Guard<ms::MoveResponse>(alive_, [this, tag, fail](absl::StatusOr<ms::MoveResponse> r) {
        if (!r.ok()) return fail(r.status());
        if (r->source_uids_size() > 0) {
          Write(imap::StatusLine(
              "*", Condition::kOk,
              absl::StrCat("COPYUID ", r->destination_uidvalidity(), " ", UidList(r->source_uids()),
                           " ", UidList(r->destination_uids())),
              "Moved"));
        }
        std::vector<uint32_t> gone(r->source_uids().begin(), r->source_uids().end());
        std::sort(gone.begin(), gone.end());
        ReportExpunged(gone);
        if (!condstore_) {
          Finish(tag, Condition::kOk, "", "MOVE completed");
          return Done();
        }
        // RFC 6851 §4.4 with CONDSTORE/QRESYNC: HIGHESTMODSEQ in the tagged OK,
        // after the changes the client has not seen (as for EXPUNGE).
        Sync([this, tag] {
          if (!closed_) {
            Finish(tag, Condition::kOk,
                   selected_ ? absl::StrCat("HIGHESTMODSEQ ", selected_->modseq) : "",
                   "MOVE completed");
          }
          Done();
        });
      }));
}

void ImapSession::CmdExpunge(const imap::Command& c) {
  std::string tag = c.tag;
  if (selected_->read_only) return Finish(tag, Condition::kNo, "READ-ONLY", "Mailbox is read-only");
  ms::ExpungeRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  const auto& a = c.get<imap::ExpungeArgs>();
  if (a.uids) {
    std::vector<uint32_t> uids = SetToUids(*a.uids, true);
    if (uids.empty()) return Finish(tag, Condition::kOk, "", "EXPUNGE completed");
    *req.mutable_uids() = UidSet(uids);
  }
  Begin();
  backend_->Expunge(
      TargetOf(selected_->mailbox), req,
      Guard<ms::ExpungeResponse>(alive_, [this, tag](absl::StatusOr<ms::ExpungeResponse> r) {
        if (!r.ok()) {
          FinishError(tag, r.status());
          return Done();
        }
        ReportExpunged(ExpandIdSet(r->expunged()));
        if (!condstore_) {
          Finish(tag, Condition::kOk, "", "EXPUNGE completed");
          return Done();
        }
        // RFC 7162 (EXPUNGE once CONDSTORE is on): HIGHESTMODSEQ in the tagged OK. It
        // may only name a MODSEQ whose changes the client has
        // seen, so report others' changes first.
        Sync([this, tag] {
          if (!closed_) {
            Finish(tag, Condition::kOk,
                   selected_ ? absl::StrCat("HIGHESTMODSEQ ", selected_->modseq) : "",
                   "EXPUNGE completed");
          }
          Done();
        });
      }));
}

// ---- NOOP / CHECK / IDLE and change reporting -------------------------------

void ImapSession::Sync(std::function<void()> then) {
  if (!selected_) return then();
  ms::ChangesSinceRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  req.set_modseq(selected_->modseq);
  req.set_include_vanished(true);
  req.set_uidvalidity(selected_->uidvalidity);
  backend_->ChangesSince(
      TargetOf(selected_->mailbox), req,
      Guard<ms::ChangesSinceResponse>(
          alive_, [this, then = std::move(then)](absl::StatusOr<ms::ChangesSinceResponse> r) {
            if (r.ok() && selected_) {
              ApplyChanges(*r);
            } else if (!r.ok() && selected_ &&
                       (r.status().code() == absl::StatusCode::kNotFound ||
                        r.status().code() == absl::StatusCode::kFailedPrecondition)) {
              // The folder was deleted or recreated under us: the session
              // cannot continue with a stale map (RFC 3501 §2.3.1.1).
              Write(imap::StatusLine("*", Condition::kBye, "", "Mailbox was deleted or recreated"));
              closed_ = true;
            }
            then();
          }));
}

bool ImapSession::ApplyEvent(const ms::WatchEvent& e) {
  if (!selected_ || e.folder_id() != selected_->folder_id ||
      (e.uidvalidity() != 0 && e.uidvalidity() != selected_->uidvalidity)) {
    return false;
  }
  if (e.kind() == ms::WATCH_EVENT_KIND_FLAGS_CHANGED) return ApplyFlagsEvent(e);
  std::vector<uint32_t> uids = ExpandIdSet(e.uids());
  if (uids.empty()) return false;
  auto& map = selected_->uids;
  if (e.kind() == ms::WATCH_EVENT_KIND_MESSAGES_ADDED) {
    if (!map.empty() && uids.front() <= map.back()) return false;
    map.insert(map.end(), uids.begin(), uids.end());
    for (uint32_t u : uids) announced_.emplace_back(u, e.modseq());
    Write(absl::StrCat("* ", map.size(), " EXISTS\r\n"));
    return true;
  }
  if (e.kind() == ms::WATCH_EVENT_KIND_MESSAGES_EXPUNGED) {
    ReportExpunged(uids);
    return true;
  }
  return false;
}

bool ImapSession::ApplyFlagsEvent(const ms::WatchEvent& e) {
  // The event carries each changed message's flags and MODSEQ after the
  // change, which is all "* n FETCH (FLAGS ...)" needs: without this every
  // idling session of the folder made its own ChangesSince per STORE (50
  // idlers, 50 calls to mailstored for one flag).
  if (e.messages_size() == 0) return false;
  auto& map = selected_->uids;
  std::vector<const ms::MessageFlags*> updates;
  for (const ms::MessageFlags& m : e.messages()) {
    // A UID above the map was added without an announcement that reached
    // this session: let Sync put it in the map (EXISTS first).
    if (map.empty() || m.uid() > map.back()) return false;
    // Not in the map: expunged, and a Sync would not show it either.
    if (SeqOf(m.uid()) == 0) continue;
    // A Sync already reported this state or a newer one.
    if (m.modseq() <= selected_->modseq) continue;
    updates.push_back(&m);
  }
  auto by_uid = [](const ms::MessageFlags* a, const ms::MessageFlags* b) {
    return a->uid() < b->uid();
  };
  std::sort(updates.begin(), updates.end(), by_uid);
  for (const ms::MessageFlags* m : updates) {
    WriteFlagsFetch(*m);
    // The next Sync does not report this change again (ApplyChanges).
    announced_.emplace_back(m->uid(), m->modseq());
  }
  return true;
}

void ImapSession::ApplyChanges(const ms::ChangesSinceResponse& r) {
  // Messages already announced from a Watch event are not new to the
  // client, and their flags were not changed since: say nothing of them.
  // (A later flag change has a higher MODSEQ than the addition: reported.)
  std::vector<std::pair<uint32_t, uint64_t>> known = std::move(announced_);
  announced_.clear();
  std::sort(known.begin(), known.end());
  auto announced = [&known](const ms::MessageFlags& m) {
    // The last entry of the UID has its highest MODSEQ.
    auto it = std::upper_bound(known.begin(), known.end(), std::make_pair(m.uid(), UINT64_MAX));
    return it != known.begin() && std::prev(it)->first == m.uid() &&
           m.modseq() <= std::prev(it)->second;
  };
  ReportExpunged(ExpandIdSet(r.vanished()));
  std::vector<const ms::MessageFlags*> changed;
  for (const ms::MessageFlags& m : r.changed()) changed.push_back(&m);
  std::sort(
      changed.begin(), changed.end(),
      [](const ms::MessageFlags* a, const ms::MessageFlags* b) { return a->uid() < b->uid(); });
  auto& uids = selected_->uids;
  size_t before = uids.size();
  std::vector<const ms::MessageFlags*> updates;
  for (const ms::MessageFlags* m : changed) {
    if (uids.empty() || m->uid() > uids.back()) {
      uids.push_back(m->uid());
    } else if (SeqOf(m->uid()) != 0 && !announced(*m)) {
      updates.push_back(m);
    }
  }
  if (uids.size() != before) Write(absl::StrCat("* ", uids.size(), " EXISTS\r\n"));
  for (const ms::MessageFlags* m : updates) WriteFlagsFetch(*m);
  if (r.highest_modseq() > selected_->modseq) selected_->modseq = r.highest_modseq();
}

void ImapSession::QresyncSelect(const std::string& tag, const ms::ChangesSinceResponse& r,
                                bool examine) {
  // The changes were read with the status (SelectFolder), so none is
  // missed. seq-match-data is not needed: mailstored keeps every tombstone,
  // so the VANISHED (EARLIER) list of messages expunged since the client's
  // MODSEQ is exact (RFC 7162 §3.2.5.2 lets it go).
  std::vector<uint32_t> earlier;
  for (uint32_t u : ExpandIdSet(r.vanished())) {
    if (SeqOf(u) == 0) earlier.push_back(u);
  }
  if (!earlier.empty()) Write("* VANISHED (EARLIER) " + SetString(earlier) + "\r\n");
  std::vector<const ms::MessageFlags*> changed;
  for (const ms::MessageFlags& m : r.changed()) {
    if (SeqOf(m.uid()) != 0) changed.push_back(&m);
  }
  std::sort(changed.begin(), changed.end(),
            [](const ms::MessageFlags* a, const ms::MessageFlags* b) {
              return a->uid() < b->uid();
            });
  for (const ms::MessageFlags* m : changed) WriteFlagsFetch(*m);
  Finish(tag, Condition::kOk, examine ? "READ-ONLY" : "READ-WRITE",
         examine ? "EXAMINE completed" : "SELECT completed");
  Done();
}

void ImapSession::CmdNoop(const imap::Command& c) {
  std::string tag = c.tag;
  std::string verb = c.id == imap::CommandId::kCheck ? "CHECK" : "NOOP";
  if (!selected_) return Finish(tag, Condition::kOk, "", verb + " completed");
  Begin();
  Sync([this, tag, verb] {
    Finish(tag, Condition::kOk, "", verb + " completed");
    Done();
  });
}

void ImapSession::CmdIdle(const imap::Command& c) {
  idle_ = std::make_unique<Idle>();
  idle_->tag = c.tag;
  stats_.idling = true;
  reader_.receiver().ExpectIdleDone(c.tag);
  Begin();
  // Report what changed before the client starts waiting, then watch.
  Sync([this] {
    if (!idle_) return Done();
    Write("+ idling\r\n");
    if (selected_) {
      ms::WatchRequest req;
      req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
      req.add_folder_ids(selected_->folder_id);
      std::weak_ptr<bool> alive = alive_;
      auto on_event = [this, alive](const ms::WatchEvent& e) {
        if (alive.expired() || !idle_ || closed_) return;
        // READY: the stream is established and every later change will be
        // streamed. What changed between the Sync above and now was not
        // (the first attempt may even have met a follower and been
        // retried): one more Sync closes that gap.
        bool ready = e.kind() == ms::WATCH_EVENT_KIND_READY;
        if (!ready && e.kind() != ms::WATCH_EVENT_KIND_MESSAGES_ADDED &&
            e.kind() != ms::WATCH_EVENT_KIND_MESSAGES_EXPUNGED &&
            e.kind() != ms::WATCH_EVENT_KIND_FLAGS_CHANGED) {
          return;
        }
        if (busy_) {
          idle_->sync_pending = true;
          return;
        }
        // Additions and expunges carry their UIDs: announce them straight
        // from the event (no ChangesSince per session per event, which is
        // what makes 10,000 IDLE sessions wake quickly). Anything else, or
        // an event that does not fit the map, goes through Sync.
        if (!ready && ApplyEvent(e)) {
          return;
        }
        Begin();
        Sync([this] { Done(); });
      };
      idle_->watch =
          backend_->Watch(TargetOf(selected_->mailbox), req, on_event, [](absl::Status) {});
    }
    Done();
  });
}

void ImapSession::EndIdle() {
  if (!idle_) return;
  std::unique_ptr<Idle> idle = std::move(idle_);
  stats_.idling = false;
  if (idle->watch) idle->watch->Cancel();
  current_command_ = "IDLE";
  if (idle->sync_pending && selected_) {
    Begin();
    std::string tag = idle->tag;
    Sync([this, tag] {
      Finish(tag, Condition::kOk, "", "IDLE terminated");
      Done();
    });
    return;
  }
  Finish(idle->tag, Condition::kOk, "", "IDLE terminated");
}

}  // namespace mailgrid::access
