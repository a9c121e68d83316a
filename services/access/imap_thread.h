// IMAP THREAD (RFC 5256): base-subject extraction (§2.1), the sent date
// (§2.2), and the ORDEREDSUBJECT and REFERENCES algorithms (§3) over the
// messages a SEARCH matched. Pure: the session fetches the five header
// fields and the internal date, this file does the rest.
//
// SECURITY: the input is mail anyone can send. Every walk over the thread
// tree (pruning, sorting, printing) uses an explicit stack, so a reply chain
// of 100,000 messages cannot overflow the stack; linking refuses loops.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailgrid::access {

struct BaseSubject {
  std::string text;           // decoded (RFC 2047) to UTF-8, ASCII upper-cased
  bool reply_or_fwd = false;  // a "Re:", "Fwd:", "(fwd)" or "[fwd: ...]" was removed
};

// RFC 5256 §2.1 on a raw (possibly folded, possibly encoded) Subject value.
BaseSubject ExtractBaseSubject(std::string_view raw_subject);

// An RFC 5322 Date: value as seconds since the epoch (UTC); false when it
// cannot be read (the caller then uses the internal date, §2.2).
bool ParseSentDate(std::string_view value, int64_t* seconds);

struct ThreadMessage {
  uint32_t id = 0;          // what is printed: a sequence number or a UID
  uint32_t order = 0;       // position in the mailbox (ties of the sent date)
  int64_t sent = 0;         // sent date, seconds (§2.2: internal date if no Date:)
  std::string subject;      // raw Subject value
  std::string message_id;   // raw Message-ID value
  std::string in_reply_to;  // raw In-Reply-To value
  std::string references;   // raw References value
};

// The thread list of RFC 5256 §4, e.g. "(2)(3 6 (4 23)(44 7 96))"; "" for
// no messages.
std::string ThreadOrderedSubject(const std::vector<ThreadMessage>& messages);
std::string ThreadReferences(const std::vector<ThreadMessage>& messages);

}  // namespace mailgrid::access
