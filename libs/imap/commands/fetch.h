// FETCH (RFC 3501 §6.4.5) with every item a client sends: ENVELOPE, FLAGS,
// INTERNALDATE, RFC822[.HEADER|.SIZE|.TEXT], BODY, BODYSTRUCTURE, UID,
// BODY[section]<partial>, BODY.PEEK[...], BINARY[...], BINARY.PEEK[...],
// BINARY.SIZE[...] (RFC 3516), MODSEQ (RFC 7162), the macros ALL, FAST and
// FULL, and the modifiers CHANGEDSINCE and VANISHED (RFC 7162).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/sequence_set.h"

namespace mailgrid::imap {

enum class FetchAttr : unsigned char {
  kEnvelope,
  kFlags,
  kInternalDate,
  kRfc822,
  kRfc822Header,
  kRfc822Size,
  kRfc822Text,
  kBody,  // BODY: BODYSTRUCTURE without extension data
  kBodyStructure,
  kUid,
  kModSeq,
  kBodySection,  // BODY[...] and BODY.PEEK[...]
  kBinary,       // BINARY[...] and BINARY.PEEK[...]
  kBinarySize,   // BINARY.SIZE[...]
};

struct FetchSection {
  std::vector<uint32_t> part;  // 1.2.3; empty: the whole message
  enum class Text : unsigned char { kNone, kHeader, kHeaderFields, kHeaderFieldsNot, kText, kMime };
  Text text = Text::kNone;
  std::vector<std::string> fields;  // HEADER.FIELDS[.NOT] (...), as sent
};

struct FetchPartial {
  uint64_t offset = 0;
  uint64_t length = 0;  // > 0
};

struct FetchItem {
  FetchAttr attr = FetchAttr::kFlags;
  bool peek = false;  // .PEEK: do not set \Seen
  FetchSection section;
  std::optional<FetchPartial> partial;
};

struct FetchArgs {
  SequenceSet set;
  std::string macro;  // "ALL", "FAST" or "FULL" if used; `items` holds its expansion
  std::vector<FetchItem> items;
  std::optional<uint64_t> changed_since;
  bool vanished = false;  // UID FETCH ... (CHANGEDSINCE n VANISHED), QRESYNC enabled
};

absl::StatusOr<FetchArgs> ParseFetch(ArgCursor& in, bool uid);
void AppendDebug(const FetchArgs& a, std::string* out);

// The item as requested ("BODY.PEEK[1.HEADER.FIELDS (From)]<0.100>").
std::string FetchItemName(const FetchItem& item);
// The item as named in the FETCH response (RFC 3501 msg-att): no .PEEK, and
// a partial shows only its origin ("BODY[1.HEADER.FIELDS (From)]<0>").
std::string FetchResponseName(const FetchItem& item);

// fetch_section.cc: the text between "[" and "]" (header list excluded).
absl::StatusOr<FetchSection> ParseSectionSpec(std::string_view spec, bool binary);
// "<offset.length>" or "".
absl::StatusOr<std::optional<FetchPartial>> ParsePartial(std::string_view text);

}  // namespace mailgrid::imap
