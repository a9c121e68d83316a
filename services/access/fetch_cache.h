// FetchCache: what lets accessd answer the common FETCH (FLAGS and a few
// header fields of 50 messages, a body with .PEEK) without streaming every
// message from mailstored, in the spirit of Dovecot's index cache.
//
// Two parts, both shared by every session of the process:
// - Immutable message data: a message's bytes never change under a
//   (mailbox, folder, UIDVALIDITY, UID), so ENVELOPE, BODYSTRUCTURE,
//   RFC822.SIZE, INTERNALDATE and BODY[...] sections up to `max_item_bytes`
//   are kept in an LRU bounded by `message_bytes`. Never invalidated, only
//   evicted.
// - Flags per folder: UID → (flags, MODSEQ), brought up to date before
//   every use with ONE mailstored ChangesSince from the cached MODSEQ (the
//   MODSEQ index makes that O(changes)), so answers are exactly as current
//   as mailstored's own Fetch. The first load of a folder is
//   ChangesSince(0); folders above `max_folder_messages` are not cached.
//   The LRU of folders is bounded by `flag_messages` in total.
//
// SECURITY: keys are mailbox and folder ids. A session only looks up the
// folder it has selected, which mailstored let it open with its own token,
// and the refresh (ChangesSince) is made with that token too, so the cache
// never shows a session a mailbox it could not read itself.
//
// Threads: every method is safe to call from any thread (one mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mailgrid/mailstore/v1/mailbox.pb.h"

namespace mailgrid::access {

namespace ms = ::mailgrid::mailstore::v1;

class FetchCache {
 public:
  struct Limits {
    size_t message_bytes = 64u << 20;
    size_t max_item_bytes = 64u << 10;
    size_t flag_messages = 1'000'000;
    size_t max_folder_messages = 50'000;
  };
  struct Stats {
    uint64_t hits = 0, misses = 0;
    size_t bytes = 0, entries = 0, folders = 0, flag_messages = 0;
  };

  explicit FetchCache(Limits limits) : limits_(limits) {}
  const Limits& limits() const { return limits_; }

  // Whether a FETCH can be answered from the cache at all: no \Seen to
  // set, no CHANGEDSINCE, no raw message, no BINARY.
  static bool Servable(const ms::FetchRequest& r);

  // ---- immutable items ----------------------------------------------------
  // Fills every item of `items` that is not flags/MODSEQ into `out` (UID
  // included); false if any of them is missing.
  bool Lookup(const std::string& folder_key, uint32_t uidvalidity, uint32_t uid,
              const ms::FetchItems& items, ms::FetchResponse* out);
  // Keeps the immutable items of a mailstored answer to `items`.
  void Store(const std::string& folder_key, uint32_t uidvalidity, const ms::FetchItems& items,
             const ms::FetchResponse& m);

  // ---- flags --------------------------------------------------------------
  // The MODSEQ to ask ChangesSince from (0: load the whole folder).
  uint64_t FlagsBase(const std::string& folder_key, uint32_t uidvalidity);
  // Applies ChangesSince(base, include_vanished) to the folder's flags.
  // False when they cannot be trusted (the folder state was dropped or
  // replaced meanwhile, or a UIDVALIDITY change): use mailstored then.
  bool ApplyChanges(const std::string& folder_key, uint64_t base,
                    const ms::ChangesSinceResponse& r);
  // Flags and MODSEQ of a UID; false if the folder does not hold it
  // (expunged, or not cached).
  bool FlagsOf(const std::string& folder_key, uint32_t uid, ms::MessageFlags* out);
  // The cached folder's (UIDVALIDITY, MODSEQ), if it is cached.
  std::optional<std::pair<uint32_t, uint64_t>> FlagsState(const std::string& folder_key);

  // ---- folder ids ---------------------------------------------------------
  // SELECT names a folder; the flags are kept by folder id. The id last
  // seen for a name lets SELECT refresh the flags in the same mailstored
  // call (SelectFolder's `changes`); mailstored's answer says which folder
  // it really was, so a stale hint costs nothing but the refresh.
  std::optional<std::string> FolderIdHint(const std::string& mailbox_id, const std::string& name);
  void RememberFolderId(const std::string& mailbox_id, const std::string& name,
                        const std::string& folder_id);

  Stats stats() const;

 private:
  struct Entry {
    // Which immutable items `data` holds.
    bool envelope = false, bodystructure = false, size = false, date = false;
    ms::FetchResponse data;
    // Serialized BodySection → its data (unset: the part does not exist).
    std::vector<std::pair<std::string, ms::SectionData>> sections;
    size_t bytes = 0;
    std::list<std::string>::iterator lru;
  };
  struct Flags {
    uint64_t modseq = 0;
    std::vector<std::string> flags;
  };
  struct Folder {
    uint32_t uidvalidity = 0;
    uint64_t modseq = 0;
    std::unordered_map<uint32_t, Flags> messages;
    std::list<std::string>::iterator lru;
  };

  static std::string EntryKey(const std::string& folder_key, uint32_t uidvalidity, uint32_t uid);
  static size_t Bytes(const Entry& e);
  void Touch(Entry& e);
  void EvictEntries();
  void TouchFolder(Folder& f);
  void EvictFolders(const std::string& keep);

  const Limits limits_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recent first
  size_t bytes_ = 0;
  std::unordered_map<std::string, Folder> folders_;
  std::list<std::string> folder_lru_;
  size_t flag_messages_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
  std::unordered_map<std::string, std::string> folder_ids_;  // mailbox \n name → id
};

}  // namespace mailgrid::access
