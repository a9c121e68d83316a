// mailstored's key layout, in one place. Keys are ordered byte strings with
// the tenant first, so a tenant is one key range (export, delete,
// accounting) and isolation is visible in the key:
//
//   mbx/<mailbox>                         -> tenant id (the only lookup by bare mailbox id)
//   job/<job>                             -> JobIndex (GetArchiveJob names only the job)
//   ret/<tenant>                          -> "" (tenants with retention rules)
//   t/<tenant>/q                          -> common.v1.QuotaLimit of the tenant (pooled)
//   t/<tenant>/x/<mailbox>                -> "" (the tenant's mailboxes on this shard)
//   t/<tenant>/r                          -> v1.RetentionRules
//   t/<tenant>/b/<sha256 hex>             -> BodyRecord (refcount, parsed structure)
//   t/<tenant>/b/<sha256 hex>/c<be32 n>   -> zstd-compressed chunk n of the body (<= 1 MiB)
//   t/<tenant>/b/<sha256 hex>/terms       -> BodyTerms
//   t/<tenant>/m/<mailbox>                -> MailboxRecord (MODSEQ counter, usage, quota)
//   t/<tenant>/m/<mailbox>/f/<folder>     -> FolderRecord (counters, UIDNEXT, UIDVALIDITY)
//   t/<tenant>/m/<mailbox>/u/<folder>/<be32 uid>       -> MessageRecord
//   t/<tenant>/m/<mailbox>/x/<folder>/<be32 uid>       -> tombstone: be64 MODSEQ of the expunge
//                                                         (folders without the MODSEQ index only)
//   t/<tenant>/m/<mailbox>/q/<folder>/<be64 modseq><be32 uid> -> "" (the message's current
//                                                         MODSEQ) or "x" (expunged at it): one
//                                                         entry per UID ever used, so
//                                                         ChangesSince(m) is a scan from m+1
//   t/<tenant>/m/<mailbox>/n/<folder>/<be32 uid>       -> "" (messages without \Seen)
//   t/<tenant>/m/<mailbox>/p/<folder>/<term>\0<be32 uid> -> "" (search postings of a
//                                                         folder with uid_postings: a term
//                                                         is one key range in UID order)
//   t/<tenant>/m/<mailbox>/w/<folder>/<term>\0<be32 block> -> term_block.h set of the UIDs
//                                                         in block*4096..+4095 holding the
//                                                         term (folders with block_postings,
//                                                         written by the indexer)
//   t/<tenant>/m/<mailbox>/iw/<folder>                 -> IndexMark: the indexer's watermark
//                                                         (folders with block_postings; the
//                                                         higher of it and FolderRecord.
//                                                         indexed_below counts)
//   ixq/<mailbox>                         -> "" (the indexer has work in this mailbox; put by
//                                            every delivery into a block folder)
//   ms/layout                             -> SearchLayoutRecord (the group's search layout)
//   ms/member/<raft id>                   -> LayoutSupportRecord (what a member's binary reads)
//   t/<tenant>/m/<mailbox>/i/<term>\0<sha hex>          -> "" (search postings, per body:
//                                                         folders without uid_postings)
//   t/<tenant>/m/<mailbox>/h/<sha hex>/<folder>/<be32 uid> -> "" (where the body is; folders
//                                                         without uid_postings only)
//   t/<tenant>/m/<mailbox>/a/<folder>/i<be64 internal><be32 uid> -> "" (the attribute index
//   t/<tenant>/m/<mailbox>/a/<folder>/d<be64 sent><be32 uid>     of a folder with attr_index:
//   t/<tenant>/m/<mailbox>/a/<folder>/z<be64 size><be32 uid>     dates as micros with the sign
//   t/<tenant>/m/<mailbox>/a/<folder>/g<flag lc>\0<be32 uid>     bit flipped; sent only when
//                                                         known; every flag but \Seen, which
//                                                         n/ covers): SEARCH on dates, size
//                                                         and flags reads one key range
//   t/<tenant>/m/<mailbox>/k/<folder>/<be32 block>     -> bitmap of the UIDs that exist in
//                                                         block*4096 .. +4095 (folders with
//                                                         uid_map; uid_map.h)
//   t/<tenant>/m/<mailbox>/c/<be64 modseq>             -> ChangeRecord (Watch feed)
//   t/<tenant>/m/<mailbox>/s/<name>                    -> "" (subscription)
//   t/<tenant>/m/<mailbox>/d/<key>                     -> IdemRecord (idempotency)
//   t/<tenant>/m/<mailbox>/j/<job>                     -> JobRecord
//
// Ids are opaque URL-safe ASCII (common.proto); ValidId refuses '/' and
// control bytes so an id can never reach into another id's range. Folder
// ids are 8 hex digits from the mailbox's counter. Big-endian numbers keep
// UID and MODSEQ order in key order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mailgrid::mailstore::keys {

bool ValidId(std::string_view id);

std::string MailboxIndex(std::string_view mailbox);
std::string JobIndex(std::string_view job);
std::string Tenant(std::string_view tenant);  // "t/<tenant>/"
std::string TenantQuota(std::string_view tenant);
std::string RetentionIndex(std::string_view tenant);
std::string TenantMailbox(std::string_view tenant, std::string_view mailbox);
std::string TenantMailboxPrefix(std::string_view tenant);
std::string Retention(std::string_view tenant);
std::string Body(std::string_view tenant, std::string_view sha_hex);
std::string BodyChunk(std::string_view tenant, std::string_view sha_hex, uint32_t n);
std::string BodyTerms(std::string_view tenant, std::string_view sha_hex);
std::string MailboxPrefixAll(std::string_view tenant);  // "t/<tenant>/m/"
std::string Mailbox(std::string_view tenant, std::string_view mailbox);
std::string MailboxRange(std::string_view tenant, std::string_view mailbox);  // ".../m/<mbx>/"
std::string Folder(std::string_view tenant, std::string_view mailbox, std::string_view folder);
std::string FolderPrefix(std::string_view tenant, std::string_view mailbox);
std::string Message(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                    uint32_t uid);
std::string MessagePrefix(std::string_view tenant, std::string_view mailbox,
                          std::string_view folder);
std::string Tombstone(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                      uint32_t uid);
std::string TombstonePrefix(std::string_view tenant, std::string_view mailbox,
                            std::string_view folder);
// The MODSEQ index (FolderRecord.modseq_index): see the layout above.
std::string ModseqPrefix(std::string_view tenant, std::string_view mailbox, std::string_view folder);
std::string ModseqEntry(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                        uint64_t modseq, uint32_t uid);
std::string Unseen(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                   uint32_t uid);
std::string UnseenPrefix(std::string_view tenant, std::string_view mailbox,
                         std::string_view folder);
std::string Posting(std::string_view tenant, std::string_view mailbox, std::string_view term,
                    std::string_view sha);
std::string PostingPrefix(std::string_view tenant, std::string_view mailbox, std::string_view term);
// Postings of a folder with FolderRecord.uid_postings (see the layout above).
std::string FolderPostingsPrefix(std::string_view tenant, std::string_view mailbox,
                                 std::string_view folder);  // ".../p/<folder>/"
std::string FolderPostingPrefix(std::string_view tenant, std::string_view mailbox,
                                std::string_view folder, std::string_view term);  // ends "\0"
std::string FolderPosting(std::string_view tenant, std::string_view mailbox,
                          std::string_view folder, std::string_view term, uint32_t uid);
// Per-term UID blocks of a folder with FolderRecord.block_postings (see above).
std::string TermBlocksPrefix(std::string_view tenant, std::string_view mailbox,
                             std::string_view folder);  // ".../w/<folder>/"
std::string TermBlockPrefix(std::string_view tenant, std::string_view mailbox,
                            std::string_view folder, std::string_view term);  // ends "\0"
std::string TermBlock(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                      std::string_view term, uint32_t block);
// The indexer's watermark of a block folder (IndexMark), kept out of the
// folder record so that the indexer's writes never touch a key a delivery
// writes or is conditional on.
std::string IndexMark(std::string_view tenant, std::string_view mailbox, std::string_view folder);
// The indexer's queue: mailboxes with messages not yet in their blocks.
std::string IndexQueue(std::string_view mailbox);
std::string IndexQueuePrefix();  // "ixq/"
// The search layout gate (layout_gate.cc): the group's layout record and
// each member's report of the layout its binary reads.
std::string SearchLayout();  // "ms/layout"
std::string LayoutSupport(uint64_t member);  // "ms/member/<decimal id>"
// The attribute index of a folder with FolderRecord.attr_index (see above).
std::string AttrPrefix(std::string_view tenant, std::string_view mailbox,
                       std::string_view folder);  // ".../a/<folder>/"
// kind 'i' internal date, 'd' sent date (micros), 'z' size: prefix + kind + be64 + be32 uid.
std::string AttrValue(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                      char kind, uint64_t ordered, uint32_t uid);
// Ends before the UID: a range bound for values >= `ordered` (kind's range: AttrPrefix + kind).
std::string AttrValueBound(std::string_view tenant, std::string_view mailbox,
                           std::string_view folder, char kind, uint64_t ordered);
// A flag, lowercased (flags match case-insensitively): prefix + 'g' + flag + '\0' (+ be32 uid).
std::string AttrFlagPrefix(std::string_view tenant, std::string_view mailbox,
                           std::string_view folder, std::string_view flag);
std::string AttrFlag(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                     std::string_view flag, uint32_t uid);
// Signed micros in key order (the sign bit flipped).
inline uint64_t OrderedMicros(int64_t micros) {
  return static_cast<uint64_t>(micros) ^ (uint64_t{1} << 63);
}
// The UID map of a folder with FolderRecord.uid_map (uid_map.h).
std::string UidMapPrefix(std::string_view tenant, std::string_view mailbox,
                         std::string_view folder);  // ".../k/<folder>/"
std::string UidMapBlock(std::string_view tenant, std::string_view mailbox, std::string_view folder,
                        uint32_t block);
std::string Location(std::string_view tenant, std::string_view mailbox, std::string_view sha,
                     std::string_view folder, uint32_t uid);
std::string LocationPrefix(std::string_view tenant, std::string_view mailbox, std::string_view sha);
std::string LocationFolderPrefix(std::string_view tenant, std::string_view mailbox,
                                 std::string_view sha, std::string_view folder);
std::string Change(std::string_view tenant, std::string_view mailbox, uint64_t modseq);
std::string ChangePrefix(std::string_view tenant, std::string_view mailbox);
std::string Subscription(std::string_view tenant, std::string_view mailbox, std::string_view name);
std::string SubscriptionPrefix(std::string_view tenant, std::string_view mailbox);
std::string Idem(std::string_view tenant, std::string_view mailbox, std::string_view key);
std::string Job(std::string_view tenant, std::string_view mailbox, std::string_view job);

std::string FolderId(uint64_t n);  // 8 hex digits
void AppendBe32(uint32_t v, std::string* out);
void AppendBe64(uint64_t v, std::string* out);
uint32_t ReadBe32(std::string_view bytes);  // last 4 bytes
uint64_t ReadBe64(std::string_view bytes);  // last 8 bytes
// The smallest key greater than every key with this prefix.
std::string PrefixEnd(std::string prefix);

}  // namespace mailgrid::mailstore::keys
