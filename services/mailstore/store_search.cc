// Search: the query tree evaluated to sorted UID lists. Text goes through
// the inverted index (per folder: term -> UIDs, one key range per term, for
// folders with uid_postings; older folders per mailbox: term -> bodies,
// body -> UIDs per folder),
// with each query token matched as a word prefix (so "contr" finds
// "contract", and CJK bigrams as tokenised by libs/mail). Flags, dates and
// sizes read one key range of the folder's attribute index (folders with
// attr_index; \Seen the unseen index), MODSEQ the MODSEQ index: their cost
// is the matches, not the folder. Older folders read the message records,
// loaded once per query only when a node needs them. Header fields (SEARCH
// HEADER, BCC) use the folder's "h:" postings (FolderRecord.header_postings);
// unindexed fields and older folders read the stored messages' headers.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "libs/base/strings.h"
#include "libs/mail/header.h"
#include "libs/mail/rfc2047.h"
#include "libs/mail/tokenize.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/term_block.h"

namespace mailgrid::mailstore {
namespace {

using Uids = std::vector<uint32_t>;

Uids Intersect(const Uids& a, const Uids& b) {
  Uids out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}
Uids Union(const Uids& a, const Uids& b) {
  Uids out;
  std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}
Uids Minus(const Uids& a, const Uids& b) {
  Uids out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

class Evaluator {
 public:
  Evaluator(MailStore* store, const MailStore::Mbx& m, const storage::FolderRecord& f)
      : store_(store), m_(m), f_(f) {}

  absl::StatusOr<Uids> Eval(const v1::SearchQuery& q, int depth) {
    if (depth > 32) return InvalidField("query", "TOO_DEEP", "over 32 levels");
    switch (q.node_case()) {
      case v1::SearchQuery::kAll:
        return Universe();
      case v1::SearchQuery::kAllOf: {
        if (q.all_of().queries().empty()) return Universe();
        std::optional<Uids> acc;
        for (const auto& sub : q.all_of().queries()) {
          ASSIGN_OR_RETURN(Uids u, Eval(sub, depth + 1));
          acc = acc ? Intersect(*acc, u) : u;
          if (acc->empty()) break;
        }
        return *acc;
      }
      case v1::SearchQuery::kAnyOf: {
        Uids acc;
        for (const auto& sub : q.any_of().queries()) {
          ASSIGN_OR_RETURN(Uids u, Eval(sub, depth + 1));
          acc = Union(acc, u);
        }
        return acc;
      }
      case v1::SearchQuery::kNegation: {
        ASSIGN_OR_RETURN(Uids u, Eval(q.negation(), depth + 1));
        ASSIGN_OR_RETURN(Uids all, Universe());
        return Minus(all, u);
      }
      case v1::SearchQuery::kText:
        return Text(q.text());
      case v1::SearchQuery::kDate:
        return Date(q.date());
      case v1::SearchQuery::kSize:
        if (f_.attr_index()) return Size(q.size());
        return Filter([&](const storage::MessageRecord& r) {
          return q.size().op() == v1::SIZE_OP_LARGER ? r.size() > q.size().bytes()
                                                      : r.size() < q.size().bytes();
        });
      case v1::SearchQuery::kFlag:
        return Flag(q.flag());
      case v1::SearchQuery::kUids: {
        ASSIGN_OR_RETURN(Uids all, Universe());
        Uids out;
        uint32_t max = all.empty() ? 0 : all.back();
        for (uint32_t u : all)
          if (InSet(q.uids(), u, max)) out.push_back(u);
        return out;
      }
      case v1::SearchQuery::kSequenceNumbers: {
        ASSIGN_OR_RETURN(Uids all, Universe());
        Uids out;
        for (uint32_t s : FromIdSet(q.sequence_numbers(), static_cast<uint32_t>(all.size())))
          out.push_back(all[s - 1]);
        std::sort(out.begin(), out.end());
        return out;
      }
      case v1::SearchQuery::kModseqAtLeast:
        if (f_.modseq_index()) return ModseqAtLeast(q.modseq_at_least());
        return Filter([&](const storage::MessageRecord& r) { return r.modseq() >= q.modseq_at_least(); });
      default:
        return InvalidField("query", "EMPTY", "empty query node");
    }
  }

  absl::StatusOr<uint64_t> HighestModseq(const Uids& uids) {
    if (uids.empty()) return 0;
    uint64_t best = 0;
    if (!records_loaded_ && uids.size() > 2000 && f_.modseq_index()) {
      // Newest first through the MODSEQ index: the first live entry of a
      // match is the answer (for a match set of 1/k of the folder, about k
      // entries read), instead of every record of the folder.
      // Small pages first (ScanRange reads up to 1,000 per page).
      std::string p = keys::ModseqPrefix(m_.tenant, m_.id, f_.folder_id());
      std::string end = keys::PrefixEnd(p);
      bool found = false;
      for (size_t page = 32; !found; page = std::min<size_t>(page * 4, 1000)) {
        size_t n = 0;
        RETURN_IF_ERROR(store_->ScanRange(
            p, end, false, page, true, [&](const kv::v1::KeyValue& kv) {
              ++n;
              end = kv.key();  // exclusive: the next page starts below it
              if (!kv.value().empty()) return true;  // a tombstone
              uint32_t uid = keys::ReadBe32(kv.key());
              if (!std::binary_search(uids.begin(), uids.end(), uid)) return true;
              best = keys::ReadBe64(kv.key().substr(0, kv.key().size() - 4));
              found = true;
              return false;
            }));
        if (n < page) break;  // the index is exhausted
      }
      return best;
    }
    if (!records_loaded_ && uids.size() > 2000) RETURN_IF_ERROR(LoadRecords());
    if (records_loaded_) {
      for (uint32_t u : uids)
        if (auto it = records_.find(u); it != records_.end()) best = std::max(best, it->second.modseq());
      return best;
    }
    for (uint32_t u : uids) {
      ASSIGN_OR_RETURN(auto got, store_->Get(keys::Message(m_.tenant, m_.id, f_.folder_id(), u)));
      storage::MessageRecord r;
      if (got.found() && r.ParseFromString(got.value())) best = std::max(best, r.modseq());
    }
    return best;
  }

 private:
  absl::StatusOr<Uids> Universe() {
    if (!universe_) {
      ASSIGN_OR_RETURN(Uids all, AllUids(store_, m_, f_));
      universe_ = std::move(all);
    }
    return *universe_;
  }

  absl::Status LoadRecords() {
    if (records_loaded_) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto list, ScanMessages(store_, m_, f_.folder_id(), 1, UINT32_MAX));
    Uids all;
    for (auto& [uid, r] : list) {
      all.push_back(uid);
      records_.emplace(uid, std::move(r));
    }
    universe_ = std::move(all);
    records_loaded_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<Uids> Filter(const std::function<bool(const storage::MessageRecord&)>& pred) {
    RETURN_IF_ERROR(LoadRecords());
    Uids out;
    for (const auto& [uid, r] : records_)
      if (pred(r)) out.push_back(uid);
    return out;
  }

  absl::StatusOr<Uids> Flag(const v1::FlagMatch& fm) {
    if (absl::EqualsIgnoreCase(fm.flag(), "\\Recent"))
      return InvalidField("query.flag", "BAD_FLAG", "\\Recent is session state; send UIDs");
    if (absl::EqualsIgnoreCase(fm.flag(), "\\Seen")) {
      Uids unseen;
      std::string p = keys::UnseenPrefix(m_.tenant, m_.id, f_.folder_id());
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                                        [&](const kv::v1::KeyValue& kv) {
                                          unseen.push_back(keys::ReadBe32(kv.key()));
                                          return true;
                                        }));
      if (fm.absent()) return unseen;
      ASSIGN_OR_RETURN(Uids all, Universe());
      return Minus(all, unseen);
    }
    if (f_.attr_index()) {
      Uids with;
      std::string p = keys::AttrFlagPrefix(m_.tenant, m_.id, f_.folder_id(), fm.flag());
      RETURN_IF_ERROR(KeysIn(p, keys::PrefixEnd(p), &with));  // already in UID order
      if (!fm.absent()) return with;
      ASSIGN_OR_RETURN(Uids all, Universe());
      return Minus(all, with);
    }
    return Filter([&](const storage::MessageRecord& r) { return HasFlag(r.flags(), fm.flag()) != fm.absent(); });
  }

  // The UIDs (last 4 bytes) of the keys in [start, end), keys only, sorted.
  absl::Status KeysIn(const std::string& start, const std::string& end, Uids* out) {
    bool sorted = true;
    RETURN_IF_ERROR(store_->ScanRange(start, end, true, SIZE_MAX, false,
                                      [&](const kv::v1::KeyValue& kv) {
                                        uint32_t uid = keys::ReadBe32(kv.key());
                                        if (!out->empty() && uid <= out->back()) sorted = false;
                                        out->push_back(uid);
                                        return true;
                                      }));
    if (!sorted) std::sort(out->begin(), out->end());
    return absl::OkStatus();
  }

  // UIDs whose value of `kind` (i, d, z) is in [lo, hi) (no hi: to the end).
  absl::StatusOr<Uids> ValuesIn(char kind, uint64_t lo, std::optional<uint64_t> hi) {
    const std::string& fid = f_.folder_id();
    std::string start = keys::AttrValueBound(m_.tenant, m_.id, fid, kind, lo);
    std::string end = hi ? keys::AttrValueBound(m_.tenant, m_.id, fid, kind, *hi)
                         : keys::PrefixEnd(keys::AttrPrefix(m_.tenant, m_.id, fid) + kind);
    Uids out;
    if (start < end) RETURN_IF_ERROR(KeysIn(start, end, &out));
    return out;
  }

  absl::StatusOr<Uids> Size(const v1::SizeMatch& z) {
    if (z.op() == v1::SIZE_OP_LARGER) {
      if (z.bytes() == UINT64_MAX) return Uids{};
      return ValuesIn('z', z.bytes() + 1, std::nullopt);
    }
    return ValuesIn('z', 0, z.bytes());
  }

  // Live entries of the MODSEQ index at or above `modseq` (tombstones are "x").
  absl::StatusOr<Uids> ModseqAtLeast(uint64_t modseq) {
    std::string p = keys::ModseqPrefix(m_.tenant, m_.id, f_.folder_id());
    std::string start = p;
    keys::AppendBe64(modseq, &start);
    Uids out;
    RETURN_IF_ERROR(store_->ScanRange(start, keys::PrefixEnd(p), false, SIZE_MAX, false,
                                      [&](const kv::v1::KeyValue& kv) {
                                        if (kv.value().empty()) out.push_back(keys::ReadBe32(kv.key()));
                                        return true;
                                      }));
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::StatusOr<Uids> Date(const v1::DateMatch& d) {
    absl::CivilDay day(d.date().year(), d.date().month(), d.date().day());
    if (d.date().month() < 1 || d.date().month() > 12 || d.date().day() < 1 || d.date().day() > 31 ||
        day.year() != d.date().year() || day.month() != d.date().month())
      return InvalidField("query.date", "BAD_DATE", "not a calendar date");
    int64_t start = absl::ToUnixMicros(absl::FromCivil(day, absl::UTCTimeZone()));
    int64_t end = start + 86400LL * 1000000;
    bool sent = d.field() == v1::DATE_FIELD_SENT;
    if (f_.attr_index()) {
      char kind = sent ? 'd' : 'i';  // unknown sent dates have no key: never match
      uint64_t lo = keys::OrderedMicros(start), hi = keys::OrderedMicros(end);
      switch (d.op()) {
        case v1::DATE_OP_BEFORE: return ValuesIn(kind, 0, lo);
        case v1::DATE_OP_ON: return ValuesIn(kind, lo, hi);
        default: return ValuesIn(kind, lo, std::nullopt);
      }
    }
    return Filter([&](const storage::MessageRecord& r) {
      int64_t t = sent ? r.sent_micros() : r.internal_micros();
      if (sent && t == 0) return false;
      switch (d.op()) {
        case v1::DATE_OP_BEFORE: return t < start;
        case v1::DATE_OP_ON: return t >= start && t < end;
        default: return t >= start;
      }
    });
  }

  // UIDs of this folder (uid_postings) holding a term starting with `token`
  // in one of the fields: one keys-only range scan per field, each already
  // in UID order when the token is a whole term; merged when it is a word
  // prefix of several terms.
  absl::StatusOr<Uids> UidsWith(const std::vector<std::string>& prefixes, const std::string& token) {
    if (f_.block_postings()) return BlockUidsWith(prefixes, token);
    Uids out;
    RETURN_IF_ERROR(PostingUidsWith(prefixes, token, 0, UINT32_MAX, &out));
    SortUnique(&out);
    return out;
  }

  static void SortUnique(Uids* out) {
    if (std::is_sorted(out->begin(), out->end()) &&
        std::adjacent_find(out->begin(), out->end()) == out->end())
      return;
    std::sort(out->begin(), out->end());
    out->erase(std::unique(out->begin(), out->end()), out->end());
  }

  // Appends the UIDs in [from, below) of the folder's "p/" postings of a
  // term starting with `token` (one keys-only range per field).
  absl::Status PostingUidsWith(const std::vector<std::string>& prefixes, const std::string& token,
                               uint32_t from, uint32_t below, Uids* out) {
    for (const auto& pf : prefixes) {
      std::string p = keys::FolderPostingPrefix(m_.tenant, m_.id, f_.folder_id(), pf + token);
      p.pop_back();  // drop the terminator: a word-prefix match
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                                        [&](const kv::v1::KeyValue& kv) {
                                          uint32_t uid = keys::ReadBe32(kv.key());
                                          if (uid >= from && uid < below) out->push_back(uid);
                                          return true;
                                        }));
    }
    return absl::OkStatus();
  }

  // A folder being migrated to blocks: the messages in [indexed_below,
  // legacy_postings_below) are still in the "p/" postings. Only UIDs that
  // exist count (a mailstored from before the migration expunging there
  // would not have deleted their postings).
  absl::Status LegacyUidsWith(const std::vector<std::string>& prefixes, const std::string& token,
                              Uids* out) {
    ASSIGN_OR_RETURN(uint32_t from, IndexedBelow());
    if (from >= f_.legacy_postings_below()) return absl::OkStatus();
    Uids legacy;
    RETURN_IF_ERROR(PostingUidsWith(prefixes, token, from, f_.legacy_postings_below(), &legacy));
    SortUnique(&legacy);
    ASSIGN_OR_RETURN(Uids all, Universe());
    legacy = Intersect(legacy, all);
    out->insert(out->end(), legacy.begin(), legacy.end());
    return absl::OkStatus();
  }

  // UidsWith for a folder with block_postings: the indexed messages from
  // the terms' UID blocks (one key per term per 4,096 UIDs), those of a
  // folder being migrated that are not moved yet from its "p/" postings,
  // the newer ones not indexed yet (few, unless the indexer is behind) from
  // their stored terms, so the answer is complete at every moment.
  absl::StatusOr<Uids> BlockUidsWith(const std::vector<std::string>& prefixes,
                                     const std::string& token) {
    Uids out;
    absl::Status bad;
    for (const auto& pf : prefixes) {
      std::string p = keys::TermBlockPrefix(m_.tenant, m_.id, f_.folder_id(), pf + token);
      p.pop_back();  // drop the terminator: a word-prefix match
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), false, SIZE_MAX, false,
                                        [&](const kv::v1::KeyValue& kv) {
                                          bad = termblock::Decode(kv.value(), keys::ReadBe32(kv.key()), &out);
                                          return bad.ok();
                                        }));
      RETURN_IF_ERROR(bad);
    }
    SortUnique(&out);
    if (f_.uid_map()) {
      // Only UIDs that exist: a mailstored from before IndexMark (sessions
      // 8-21) serving this folder expunges by FolderRecord.indexed_below
      // alone and may leave a UID in a block.
      ASSIGN_OR_RETURN(Uids all, Universe());
      out = Intersect(out, all);
    }
    RETURN_IF_ERROR(LegacyUidsWith(prefixes, token, &out));
    RETURN_IF_ERROR(LoadPending());
    for (const auto& [uid, terms] : pending_) {
      for (const auto& pf : prefixes) {
        std::string want = pf + token;
        auto it = std::lower_bound(terms.begin(), terms.end(), want);
        if (it != terms.end() && absl::StartsWith(*it, want)) {
          out.push_back(uid);
          break;
        }
      }
    }
    SortUnique(&out);
    return out;
  }

  // The block folder's watermark (at least 1), read once per query.
  absl::StatusOr<uint32_t> IndexedBelow() {
    if (!indexed_below_) {
      ASSIGN_OR_RETURN(IndexWatermark w, ReadIndexWatermark(store_, m_, f_));
      indexed_below_ = std::max<uint32_t>(w.below, 1);
    }
    return *indexed_below_;
  }

  // The messages of a block_postings folder not indexed yet (and not in
  // the "p/" postings of a migration), with their terms (sorted), read once
  // per query.
  absl::Status LoadPending() {
    if (pending_loaded_) return absl::OkStatus();
    ASSIGN_OR_RETURN(uint32_t from, IndexedBelow());
    from = std::max(from, f_.legacy_postings_below());
    ASSIGN_OR_RETURN(auto list, ScanMessages(store_, m_, f_.folder_id(), from, UINT32_MAX));
    std::map<std::string, std::vector<std::string>> by_sha;
    for (const auto& [uid, r] : list) {
      auto it = by_sha.find(r.body_sha());
      if (it == by_sha.end()) {
        ASSIGN_OR_RETURN(auto got, store_->Get(keys::BodyTerms(m_.tenant, r.body_sha())));
        storage::BodyTerms bt;
        if (got.found() && !bt.ParseFromString(got.value())) return absl::DataLossError("body terms");
        it = by_sha.emplace(r.body_sha(), std::vector<std::string>(bt.terms().begin(), bt.terms().end())).first;
      }
      std::vector<std::string> terms = it->second;
      if (!r.prepend().empty())
        for (auto& t : HeaderBlockTerms(r.prepend(), store_->options().limits.max_terms))
          terms.push_back(std::move(t));
      std::sort(terms.begin(), terms.end());
      pending_.emplace_back(uid, std::move(terms));
    }
    pending_loaded_ = true;
    return absl::OkStatus();
  }

  // Bodies of this mailbox holding a term starting with `token` in one of the fields.
  absl::StatusOr<std::set<std::string>> BodiesWith(const std::vector<std::string>& prefixes,
                                                   const std::string& token) {
    std::set<std::string> shas;
    for (const auto& pf : prefixes) {
      std::string p = keys::PostingPrefix(m_.tenant, m_.id, pf + token);
      p.pop_back();  // drop the terminator: a word-prefix match
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                                        [&](const kv::v1::KeyValue& kv) {
                                          size_t nul = kv.key().rfind('\0');
                                          if (nul != std::string::npos) shas.insert(kv.key().substr(nul + 1));
                                          return true;
                                        }));
    }
    return shas;
  }

  absl::StatusOr<Uids> UidsOfBodies(const std::set<std::string>& shas) {
    Uids out;
    if (shas.size() > 2000) {
      RETURN_IF_ERROR(LoadRecords());
      for (const auto& [uid, r] : records_)
        if (shas.count(r.body_sha())) out.push_back(uid);
      return out;
    }
    for (const auto& sha : shas) {
      std::string p = keys::LocationFolderPrefix(m_.tenant, m_.id, sha, f_.folder_id());
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                                        [&](const kv::v1::KeyValue& kv) {
                                          out.push_back(keys::ReadBe32(kv.key()));
                                          return true;
                                        }));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::StatusOr<Uids> Text(const v1::TextMatch& t) {
    std::vector<std::string> prefixes;
    switch (t.field()) {
      case v1::TEXT_FIELD_FROM: prefixes = {"f:"}; break;
      case v1::TEXT_FIELD_TO: prefixes = {"t:"}; break;
      case v1::TEXT_FIELD_CC: prefixes = {"c:"}; break;
      case v1::TEXT_FIELD_SUBJECT: prefixes = {"s:"}; break;
      case v1::TEXT_FIELD_BODY: prefixes = {"b:"}; break;
      case v1::TEXT_FIELD_TEXT: prefixes = {"s:", "f:", "t:", "c:", "b:"}; break;
      case v1::TEXT_FIELD_BCC:
      case v1::TEXT_FIELD_HEADER:
        return Header(t);
      default:
        return InvalidField("query.text.field", "EMPTY", "no field");
    }
    std::vector<std::string> tokens = mail::Tokenize(t.value());
    if (tokens.empty()) return Universe();
    if (f_.uid_postings()) {
      // Rarest-first would need counts; tokens are few, intersect in order.
      std::optional<Uids> acc;
      for (const auto& tok : tokens) {
        ASSIGN_OR_RETURN(Uids u, UidsWith(prefixes, tok));
        acc = acc ? Intersect(*acc, u) : std::move(u);
        if (acc->empty()) break;
      }
      return *acc;
    }
    std::optional<std::set<std::string>> acc;
    for (const auto& tok : tokens) {
      ASSIGN_OR_RETURN(auto shas, BodiesWith(prefixes, tok));
      if (!acc) {
        acc = std::move(shas);
      } else {
        std::set<std::string> both;
        std::set_intersection(acc->begin(), acc->end(), shas.begin(), shas.end(),
                              std::inserter(both, both.end()));
        acc = std::move(both);
      }
      if (acc->empty()) break;
    }
    return UidsOfBodies(*acc);
  }

  // SEARCH HEADER / BCC: Subject/From/To/Cc by their own terms, other
  // fields by the folder's "h:" postings (word-prefix match of each token,
  // as every text criterion here) when the folder has them all; an empty
  // value (the field exists), a value without tokens, an unindexed field
  // (ingest.h HeaderFieldIndexed) or an older folder read every header.
  absl::StatusOr<Uids> Header(const v1::TextMatch& t) {
    std::string name = t.field() == v1::TEXT_FIELD_BCC ? "bcc" : absl::AsciiStrToLower(t.header_name());
    std::vector<std::string> tokens = mail::Tokenize(t.value());
    if (tokens.empty()) return Scan(t);
    static const std::pair<const char*, v1::TextField> kOwn[] = {
        {"subject", v1::TEXT_FIELD_SUBJECT}, {"from", v1::TEXT_FIELD_FROM},
        {"to", v1::TEXT_FIELD_TO}, {"cc", v1::TEXT_FIELD_CC}};
    for (const auto& [field, id] : kOwn) {
      if (name != field) continue;
      v1::TextMatch own = t;
      own.set_field(id);
      return Text(own);
    }
    if (!f_.uid_postings() || !f_.header_postings() || !HeaderFieldIndexed(name)) return Scan(t);
    std::vector<std::string> prefixes = {HeaderTermPrefix(name)};
    std::optional<Uids> acc;
    for (const auto& tok : tokens) {
      ASSIGN_OR_RETURN(Uids u, UidsWith(prefixes, tok));
      acc = acc ? Intersect(*acc, u) : std::move(u);
      if (acc->empty()) break;
    }
    return *acc;
  }

  // The slow path: read each message's header (fields not in the index).
  absl::StatusOr<Uids> Scan(const v1::TextMatch& t) {
    RETURN_IF_ERROR(LoadRecords());
    std::string needle = absl::AsciiStrToLower(t.value());
    Uids out;
    for (const auto& [uid, r] : records_) {
      ASSIGN_OR_RETURN(auto body, store_->LoadBody(m_.tenant, r.body_sha()));
      ASSIGN_OR_RETURN(std::string bytes, store_->LoadBodyBytes(m_.tenant, r.body_sha(), body));
      bytes = r.prepend() + bytes;
      mail::Header h = mail::ParseHeaderLenient(bytes);
      std::string name = t.field() == v1::TEXT_FIELD_BCC ? "Bcc" : t.header_name();
      bool match = false;
      for (const mail::HeaderField* field : h.All(name)) {
        if (needle.empty()) {
          match = true;
          break;
        }
        std::string v = absl::AsciiStrToLower(mail::DecodeHeader(field->value));
        if (absl::StrContains(v, needle)) {
          match = true;
          break;
        }
      }
      if (match) out.push_back(uid);
    }
    return out;
  }

  MailStore* store_;
  const MailStore::Mbx& m_;
  const storage::FolderRecord& f_;
  std::optional<Uids> universe_;
  bool records_loaded_ = false;
  std::map<uint32_t, storage::MessageRecord> records_;
  std::optional<uint32_t> indexed_below_;
  bool pending_loaded_ = false;
  std::vector<std::pair<uint32_t, std::vector<std::string>>> pending_;
};

}  // namespace

absl::StatusOr<v1::SearchResponse> MailStore::Search(const v1::SearchRequest& r) {
  if (!r.has_query()) return InvalidField("query", "EMPTY", "no query");
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  const auto* f = FindFolder(m, r.folder());
  if (f == nullptr || f->noselect()) return FolderNotFound();
  Evaluator ev(this, m, *f);
  ASSIGN_OR_RETURN(Uids uids, ev.Eval(r.query(), 0));
  v1::SearchResponse out;
  ToIdSet(uids, out.mutable_uids());
  out.set_count(static_cast<uint32_t>(uids.size()));
  ASSIGN_OR_RETURN(uint64_t hm, ev.HighestModseq(uids));
  out.set_highest_modseq(hm);
  return out;
}

}  // namespace mailgrid::mailstore
