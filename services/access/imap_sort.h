// IMAP SORT (RFC 5256 §3): the order of the messages a SEARCH matched, by
// a list of keys. Pure: the session fetches each match's envelope, internal
// date and size, SortKeysOf() turns that into the values the keys compare,
// SortMessages() orders them.
//
// Comparisons are i;ascii-casemap (RFC 5256 §3: the default collation):
// strings are ASCII upper-cased once, then compared as octets, so UTF-8
// text sorts by code point and only A-Z fold. Messages equal on every key
// keep mailbox order (ascending, even under REVERSE).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libs/imap/commands/search.h"
#include "mailgrid/mailstore/v1/mailbox.pb.h"

namespace mailgrid::access {

struct SortMessage {
  uint32_t id = 0;      // what is printed: a sequence number or a UID
  uint32_t order = 0;   // position in the mailbox (the UID): ties
  int64_t arrival = 0;  // INTERNALDATE, seconds
  int64_t sent = 0;     // §2.2: Date: in UTC, else the internal date
  uint64_t size = 0;    // RFC822.SIZE
  std::string from;     // addr-mailbox of the first From address, upper-cased
  std::string to;       // ... first To address
  std::string cc;       // ... first Cc address
  std::string subject;  // base subject (§2.1), upper-cased
};

// The sort values of one fetched message (envelope, internal_date and
// rfc822_size requested). Only the keys in `criteria` are computed.
SortMessage SortKeysOf(const mailstore::v1::FetchResponse& m, uint32_t id,
                       const std::vector<imap::SortCriterion>& criteria);

// The ids in sorted order.
std::vector<uint32_t> SortMessages(std::vector<SortMessage> messages,
                                   const std::vector<imap::SortCriterion>& criteria);

}  // namespace mailgrid::access
