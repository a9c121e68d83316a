// SEARCH (RFC 3501 §6.4.4) as a typed tree: the full RFC 3501 key set,
// CHARSET, nested parentheses, OR, NOT, sequence sets and "$" (RFC 5182),
// MODSEQ (RFC 7162 §3.1.5), OLDER/YOUNGER (RFC 5032), and ESEARCH RETURN
// options (RFC 4731).
//
// SECURITY: the parser recurses on "(", NOT and OR, so their combined depth
// is bounded (CommandLimits::max_search_depth): "NOT NOT NOT ..." or
// "OR OR OR ..." cannot exhaust the stack here or in whoever walks the tree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"
#include "libs/imap/datetime.h"
#include "libs/imap/sequence_set.h"

namespace mailgrid::imap {

enum class SearchKeyKind : unsigned char {
  // No argument.
  kAll,
  kAnswered,
  kDeleted,
  kDraft,
  kFlagged,
  kNew,
  kOld,
  kRecent,
  kSeen,
  kUnanswered,
  kUndeleted,
  kUndraft,
  kUnflagged,
  kUnseen,
  // A string (`text`).
  kBcc,
  kBody,
  kCc,
  kFrom,
  kSubject,
  kText,
  kTo,
  // A header field name (`field`) and a string (`text`).
  kHeader,
  // A flag keyword (`text`).
  kKeyword,
  kUnkeyword,
  // A date (`date`): internal date, or the Date: header for SENT*.
  kBefore,
  kOn,
  kSince,
  kSentBefore,
  kSentOn,
  kSentSince,
  // A size or an age in seconds (`number`).
  kLarger,
  kSmaller,
  kOlder,
  kYounger,
  // MODSEQ [entry-name entry-type] value: `number`, and `text`/`field` for
  // the optional entry ("/flags/\Seen", "priv" / "shared" / "all").
  kModSeq,
  // A sequence set (`set`): UID set, or message numbers.
  kUid,
  kSequenceSet,
  // Tree: AND (parentheses and the top level), OR (two), NOT (one).
  kAnd,
  kOr,
  kNot,
};

std::string_view SearchKeyName(SearchKeyKind kind);

struct SearchKey {
  SearchKeyKind kind = SearchKeyKind::kAll;
  std::string text;
  std::string field;
  Date date;
  uint64_t number = 0;
  SequenceSet set;
  std::vector<SearchKey> children;
};

// RETURN (...) of ESEARCH/SEARCHRES; RETURN () means ALL.
struct SearchReturnOptions {
  bool min = false, max = false, all = false, count = false, save = false;
};

struct SearchArgs {
  std::optional<std::string> charset;  // upper-cased; only US-ASCII and UTF-8 accepted
  std::optional<SearchReturnOptions> result_options;
  SearchKey criteria;  // kAnd of the keys given
};

absl::StatusOr<SearchArgs> ParseSearch(ArgCursor& in, bool uid);
void AppendDebug(const SearchArgs& a, std::string* out);

// THREAD algorithm charset search-criteria (RFC 5256 §4). The charset is
// required; an algorithm other than REFERENCES and ORDEREDSUBJECT is BAD.
enum class ThreadAlgorithm : unsigned char { kOrderedSubject, kReferences };

struct ThreadArgs {
  ThreadAlgorithm algorithm = ThreadAlgorithm::kReferences;
  SearchArgs search;  // charset set; never result options
};

absl::StatusOr<ThreadArgs> ParseThread(ArgCursor& in, bool uid);
void AppendDebug(const ThreadArgs& a, std::string* out);

// SORT (sort-criteria) charset search-criteria (RFC 5256 §3). The charset
// is required (US-ASCII or UTF-8); REVERSE applies to the key after it.
enum class SortKey : unsigned char { kArrival, kCc, kDate, kFrom, kSize, kSubject, kTo };

struct SortCriterion {
  SortKey key = SortKey::kArrival;
  bool reverse = false;
};

struct SortArgs {
  std::vector<SortCriterion> criteria;  // at least one
  // charset set; result_options: ESORT's RETURN (RFC 5267), never SAVE
  SearchArgs search;
};

absl::StatusOr<SortArgs> ParseSort(ArgCursor& in, bool uid);
void AppendDebug(const SortArgs& a, std::string* out);
void AppendDebug(const SearchKey& k, std::string* out);

}  // namespace mailgrid::imap
