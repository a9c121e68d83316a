// Private parts of ImapSession shared by its .cc files.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "services/access/backend.h"
#include "services/access/imap_session.h"

namespace mailgrid::access {

struct ImapSession::Selected {
  size_t mailbox = 0;
  std::string folder;  // name inside the mailbox
  std::string folder_id;
  bool read_only = false;
  uint32_t uidvalidity = 0;
  uint64_t modseq = 0;           // of the last sync
  std::vector<uint32_t> uids;    // the sequence-number map: uids[seq-1]
  std::vector<uint32_t> recent;  // \Recent claimed by this session, ascending
  std::vector<uint32_t> saved;   // SEARCHRES "$" (RFC 5182): UIDs, ascending
};

struct ImapSession::ListJob {
  std::string tag, verb;
  imap::ListArgs args;
  std::vector<std::string> patterns;  // reference + pattern
  std::vector<std::string> responses;
  // LIST-STATUS with DELETED: the STATUS lines wait for one \Deleted search
  // per folder (mailstored keeps no such counter); `response` is the index
  // of the placeholder in `responses`.
  struct PendingStatus {
    size_t response = 0, mailbox = 0;
    std::string name;
    ms::Folder folder;
  };
  std::vector<PendingStatus> deleted;
};

struct ImapSession::Idle {
  std::string tag;
  std::unique_ptr<WatchHandle> watch;
  bool sync_pending = false;
};

// A UID set as the client wrote it, "*" left to the store (to_last).
ms::IdSet IdSetOf(const imap::SequenceSet& set);

// A callback that does nothing once the session is gone.
template <typename T, typename F>
Callback<T> Guard(const std::shared_ptr<bool>& alive, F f) {
  std::weak_ptr<bool> w = alive;
  return [w, f = std::move(f)](absl::StatusOr<T> r) mutable {
    if (w.expired()) return;
    f(std::move(r));
  };
}

// Fixed texts for backend failures (never the backend's own message, which
// may name things the user must not learn about).
struct ErrorReply {
  imap::Condition condition;
  std::string code;
  std::string text;
};
ErrorReply MapError(const absl::Status& st);

// imap_format.cc: FETCH data from mailstored's parsed structures.
void WriteEnvelope(const ms::Envelope& e, imap::ResponseWriter& w);
void WriteBodyStructure(const ms::BodyPart& p, bool extended, imap::ResponseWriter& w);
// "\\Seen" → "\Seen" as mailstored spells flags already; filters junk.
std::vector<std::string> ImapFlags(const google::protobuf::RepeatedPtrField<std::string>& flags,
                                   bool recent);
// " 7-Feb-1994 21:52:25 +0000" for a timestamp (UTC).
std::string InternalDate(int64_t seconds);

// imap_search.cc: SEARCH keys → mailstored's query. Sequence numbers,
// RECENT and "$" (`saved`, RFC 5182) are resolved with the session's map.
// Unimplemented keys give Unimplemented (answered NO [CANNOT]).
// OLDER/YOUNGER (RFC 5032) keys resolved beforehand to the UIDs they
// match (`ages`, by node); without an entry they are Unimplemented.
using AgeMatches = std::map<const imap::SearchKey*, std::vector<uint32_t>>;
absl::StatusOr<ms::SearchQuery> TranslateSearch(const imap::SearchKey& key,
                                                const std::vector<uint32_t>& uids,
                                                const std::vector<uint32_t>& recent,
                                                const std::vector<uint32_t>& saved,
                                                const AgeMatches* ages = nullptr);

// OLDER/YOUNGER keys of a search tree, for SearchAges.
void CollectAgeKeys(const imap::SearchKey& k, std::vector<const imap::SearchKey*>* out);

// A SEARCH in flight (also THREAD's search: `thread` set; SORT's: `sort`).
struct ImapSession::SearchJob {
  std::string tag;
  bool uid = false;
  imap::SearchArgs args;
  std::optional<imap::ThreadAlgorithm> thread;
  std::optional<std::vector<imap::SortCriterion>> sort;
  // SORT with a MODSEQ key (RFC 7162 §3.1.5): the search's highest MODSEQ
  // ends the SORT response.
  std::optional<uint64_t> sort_modseq;
  absl::Time now;
  std::vector<const imap::SearchKey*> age_keys;  // OLDER/YOUNGER nodes of args
  AgeMatches ages;
};

}  // namespace mailgrid::access
