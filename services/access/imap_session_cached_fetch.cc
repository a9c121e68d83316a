// ImapSession: FETCH through the process's FetchCache. Measured before it
// (bench/access/imap_load.py, 2026-11-27): FETCH 1:50 (FLAGS
// BODY.PEEK[HEADER.FIELDS (...)]) cost 2.4 ms of accessd CPU and 4.4 ms of
// mailstored CPU, two thirds of a whole LOGIN..LOGOUT loop, because
// mailstored streams one gRPC message per message and reads each body's
// chunk to cut the header out. Here the flags come from one ChangesSince
// (O(changes) in mailstored) applied to the shared per-folder flags, and
// the immutable items from the cache; only the messages the cache does not
// hold are fetched, in one call.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/access/fetch_cache.h"
#include "services/access/imap_session.h"
#include "services/access/imap_session_internal.h"

namespace mailgrid::access {

using imap::Condition;

bool ImapSession::CachedFetch(const std::string& tag, const ms::FetchRequest& req,
                              std::shared_ptr<std::vector<imap::FetchItem>> items) {
  FetchCache* cache = config_.fetch_cache;
  if (cache == nullptr || cache->limits().flag_messages == 0 || !selected_ ||
      !FetchCache::Servable(req) ||
      selected_->uids.size() > cache->limits().max_folder_messages) {
    return false;
  }
  std::string key = absl::StrCat(req.mailbox_id(), "/", selected_->folder_id);
  // Without FLAGS or MODSEQ nothing in the answer can change: the messages'
  // bytes are immutable, so no refresh at all (one expunged by another
  // session meanwhile may still be shown from the cache, as RFC 2180 §4.1.3
  // allows while it is in this session's map).
  bool needs_flags = req.items().flags() || req.items().modseq();
  // The previous command was a SELECT that brought the cache's flags up to
  // date (see fresh_modseq_): read them as they are, unless they were
  // dropped since.
  if (needs_flags && fresh_modseq_ != 0) {
    auto state = cache->FlagsState(key);
    if (state && state->first == selected_->uidvalidity && state->second >= fresh_modseq_) {
      needs_flags = false;
    }
  }
  if (!needs_flags) {
    CachedFetchFinish(tag, req, items, key, /*refreshed=*/false);
    return true;
  }
  uint64_t base = cache->FlagsBase(key, selected_->uidvalidity);
  ms::ChangesSinceRequest cs;
  cs.set_mailbox_id(req.mailbox_id());
  cs.mutable_folder()->set_folder_id(selected_->folder_id);
  cs.set_modseq(base);
  cs.set_include_vanished(true);
  cs.set_uidvalidity(selected_->uidvalidity);
  backend_->ChangesSince(
      TargetOf(selected_->mailbox), cs,
      Guard<ms::ChangesSinceResponse>(
          alive_, [this, tag, req, items, key, base](absl::StatusOr<ms::ChangesSinceResponse> r) {
            // Any doubt (an error, a state replaced meanwhile): mailstored
            // answers the whole FETCH, errors included, as without a cache.
            if (!selected_ || !r.ok() || !config_.fetch_cache->ApplyChanges(key, base, *r)) {
              return RunFetch(tag, req, items);
            }
            CachedFetchFinish(tag, req, items, key, /*refreshed=*/true);
          }));
  return true;
}

void ImapSession::CachedFetchFinish(const std::string& tag, const ms::FetchRequest& req,
                                    std::shared_ptr<std::vector<imap::FetchItem>> items,
                                    const std::string& key, bool refreshed) {
  FetchCache* cache = config_.fetch_cache;
  uint32_t uidvalidity = selected_->uidvalidity;
  bool with_flags = req.items().flags() || req.items().modseq();
  auto hits = std::make_shared<std::vector<ms::FetchResponse>>();
  std::vector<uint32_t> misses;
  for (uint32_t uid : ExpandIdSet(req.messages().uids())) {
    ms::MessageFlags flags;
    // Not in the flags just refreshed (or as fresh as the previous
    // command's refresh): expunged, and mailstored's Fetch would not return
    // it either. Without flags wanted and no refresh, there is no such list.
    if ((with_flags || refreshed) && !cache->FlagsOf(key, uid, &flags)) continue;
    ms::FetchResponse m;
    if (!cache->Lookup(key, uidvalidity, uid, req.items(), &m)) {
      misses.push_back(uid);
      continue;
    }
    if (with_flags) {
      *m.mutable_flags() = flags.flags();
      m.set_modseq(flags.modseq());
    }
    hits->push_back(std::move(m));
  }
  if (misses.empty()) {
    for (const ms::FetchResponse& m : *hits) WriteFetch(m, *items);
    Finish(tag, Condition::kOk, "", "FETCH completed");
    return Done();
  }
  ms::FetchRequest miss = req;
  *miss.mutable_messages()->mutable_uids() = CompactIdSet(misses);
  backend_->Fetch(
      TargetOf(selected_->mailbox), miss,
      Guard<std::vector<ms::FetchResponse>>(
          alive_, [this, tag, items, hits, key, uidvalidity,
                   fetched_items = miss.items()](absl::StatusOr<std::vector<ms::FetchResponse>> r) {
            if (!r.ok()) {
              FinishError(tag, r.status());
              return Done();
            }
            for (const ms::FetchResponse& m : *r) {
              config_.fetch_cache->Store(key, uidvalidity, fetched_items, m);
            }
            // Both lists ascend by UID: merge them into one answer.
            std::vector<const ms::FetchResponse*> all;
            all.reserve(hits->size() + r->size());
            for (const ms::FetchResponse& m : *hits) all.push_back(&m);
            for (const ms::FetchResponse& m : *r) all.push_back(&m);
            std::stable_sort(all.begin(), all.end(),
                             [](const ms::FetchResponse* a, const ms::FetchResponse* b) {
                               return a->uid() < b->uid();
                             });
            for (const ms::FetchResponse* m : all) WriteFetch(*m, *items);
            Finish(tag, Condition::kOk, "", "FETCH completed");
            Done();
          }));
}

}  // namespace mailgrid::access
