// SORT and UID SORT (RFC 5256): the search runs as SEARCH does
// (imap_session_messages.cc), then one Fetch of the envelope, internal date
// and size of the matches (what the FetchCache does not hold), and
// imap_sort.cc orders them.
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/access/fetch_cache.h"
#include "services/access/imap_session.h"
#include "services/access/imap_session_internal.h"
#include "services/access/imap_sort.h"

namespace mailgrid::access {

using imap::Condition;

namespace {

// ESORT (RFC 5267 §3.2): "* ESEARCH (TAG "t") [UID] MIN n MAX n COUNT n ALL
// set", MIN and MAX the first and last in the sort order, ALL in that order
// (a range only where the numbers ascend by one). RETURN () means ALL.
std::string EsortLine(const std::string& tag, const imap::SearchReturnOptions& ret, bool uid,
                      std::optional<uint64_t> modseq, const std::vector<uint32_t>& ids) {
  bool all = ret.all || (!ret.min && !ret.max && !ret.count);
  std::string line = "* ESEARCH (TAG \"" + tag + "\")";
  if (uid) line += " UID";
  if (!ids.empty()) {
    if (ret.min) absl::StrAppend(&line, " MIN ", ids.front());
    if (ret.max) absl::StrAppend(&line, " MAX ", ids.back());
  }
  if (ret.count) absl::StrAppend(&line, " COUNT ", ids.size());
  if (all && !ids.empty()) {
    line += " ALL ";
    for (size_t i = 0; i < ids.size();) {
      size_t j = i;
      while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
      if (i > 0) line += ",";
      absl::StrAppend(&line, ids[i]);
      if (j > i) absl::StrAppend(&line, ":", ids[j]);
      i = j + 1;
    }
  }
  // RFC 7162 §3.1.5, as for ESEARCH.
  if (modseq && !ids.empty()) absl::StrAppend(&line, " MODSEQ ", *modseq);
  return line + "\r\n";
}

}  // namespace

void ImapSession::CmdSort(const imap::Command& c) {
  const auto& a = c.get<imap::SortArgs>();
  auto job = std::make_shared<SearchJob>();
  job->tag = c.tag;
  job->uid = c.uid;
  job->args = a.search;
  job->sort = a.criteria;
  job->now = absl::Now();
  CollectAgeKeys(job->args.criteria, &job->age_keys);
  Begin();
  if (job->age_keys.empty()) return RunSearch(job);
  SearchAges(job, 0);
}

void ImapSession::SortMatches(std::shared_ptr<SearchJob> job, const ms::SearchResponse& r) {
  if (r.uids().ranges_size() == 0) {
    const auto& ret = job->args.result_options;
    Write(ret ? EsortLine(job->tag, *ret, job->uid, std::nullopt, {}) : "* SORT\r\n");
    Finish(job->tag, Condition::kOk, "", "SORT completed");
    return Done();
  }
  ms::FetchRequest f;
  f.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  f.mutable_folder()->set_folder_id(selected_->folder_id);
  // Everything any key needs: the envelope carries Date, Subject, From, To
  // and Cc already parsed by mailstored. All three are immutable, so the
  // FetchCache (fetch_cache.h) answers what it holds and only the rest is
  // fetched, in one call: a webmail sorting the same folder on every page
  // view costs mailstored the search alone.
  f.mutable_items()->set_envelope(true);
  f.mutable_items()->set_internal_date(true);
  f.mutable_items()->set_rfc822_size(true);
  FetchCache* cache = config_.fetch_cache;
  std::string key = absl::StrCat(f.mailbox_id(), "/", selected_->folder_id);
  uint32_t uidvalidity = selected_->uidvalidity;
  auto messages = std::make_shared<std::vector<SortMessage>>();
  std::vector<uint32_t> misses;
  for (uint32_t uid : ExpandIdSet(r.uids())) {
    uint32_t seq = SeqOf(uid);
    if (seq == 0) continue;  // not known to the client: not reported
    ms::FetchResponse m;
    if (cache == nullptr || !cache->Lookup(key, uidvalidity, uid, f.items(), &m)) {
      misses.push_back(uid);
      continue;
    }
    messages->push_back(SortKeysOf(m, job->uid ? uid : seq, *job->sort));
  }
  if (misses.empty()) return SortFinish(job, std::move(*messages));
  *f.mutable_messages()->mutable_uids() = CompactIdSet(misses);
  backend_->Fetch(TargetOf(selected_->mailbox), f,
                  Guard<std::vector<ms::FetchResponse>>(
                      alive_, [this, job, messages, cache, key, uidvalidity, items = f.items()](
                                  absl::StatusOr<std::vector<ms::FetchResponse>> got) {
                        if (!got.ok()) {
                          FinishError(job->tag, got.status());
                          return Done();
                        }
                        for (const ms::FetchResponse& m : *got) {
                          uint32_t seq = SeqOf(m.uid());
                          if (seq == 0) continue;
                          if (cache != nullptr) cache->Store(key, uidvalidity, items, m);
                          messages->push_back(SortKeysOf(m, job->uid ? m.uid() : seq, *job->sort));
                        }
                        SortFinish(job, std::move(*messages));
                      }));
}

void ImapSession::SortFinish(std::shared_ptr<SearchJob> job, std::vector<SortMessage> messages) {
  std::vector<uint32_t> ids = SortMessages(std::move(messages), *job->sort);
  if (const auto& ret = job->args.result_options) {
    Write(EsortLine(job->tag, *ret, job->uid, job->sort_modseq, ids));
    Finish(job->tag, Condition::kOk, "", "SORT completed");
    return Done();
  }
  std::string line = "* SORT";
  for (uint32_t id : ids) absl::StrAppend(&line, " ", id);
  // RFC 7162 §3.1.5: as SEARCH does, with a MODSEQ key and any match.
  if (job->sort_modseq) absl::StrAppend(&line, " (MODSEQ ", *job->sort_modseq, ")");
  Write(line + "\r\n");
  Finish(job->tag, Condition::kOk, "", "SORT completed");
  Done();
}

}  // namespace mailgrid::access
