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
            CachedFetchFinish(tag, req, items, key);
          }));
  return true;
}

void ImapSession::CachedFetchFinish(const std::string& tag, const ms::FetchRequest& req,
                                    std::shared_ptr<std::vector<imap::FetchItem>> items,
                                    const std::string& key) {
  FetchCache* cache = config_.fetch_cache;
  uint32_t uidvalidity = selected_->uidvalidity;
  auto hits = std::make_shared<std::vector<ms::FetchResponse>>();
  std::vector<uint32_t> misses;
  for (uint32_t uid : ExpandIdSet(req.messages().uids())) {
    ms::MessageFlags flags;
    // Not in the freshly refreshed flags: expunged, and mailstored's Fetch
    // would not return it either.
    if (!cache->FlagsOf(key, uid, &flags)) continue;
    ms::FetchResponse m;
    if (!cache->Lookup(key, uidvalidity, uid, req.items(), &m)) {
      misses.push_back(uid);
      continue;
    }
    *m.mutable_flags() = flags.flags();
    m.set_modseq(flags.modseq());
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
