#include "libs/imap/commands/search.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "libs/base/status.h"
#include "libs/imap/chars.h"
#include "libs/imap/types.h"
#include "libs/imap/utf8.h"

namespace mailgrid::imap {
namespace {

enum class Arg : unsigned char {
  kNone,
  kString,
  kHeader,
  kKeyword,
  kDate,
  kNumber,
  kAge,
  kModSeq,
  kSet,
  kNot,
  kOr
};

struct KeySpec {
  std::string_view name;
  SearchKeyKind kind;
  Arg arg;
};

constexpr KeySpec kKeys[] = {
    {"ALL", SearchKeyKind::kAll, Arg::kNone},
    {"ANSWERED", SearchKeyKind::kAnswered, Arg::kNone},
    {"DELETED", SearchKeyKind::kDeleted, Arg::kNone},
    {"DRAFT", SearchKeyKind::kDraft, Arg::kNone},
    {"FLAGGED", SearchKeyKind::kFlagged, Arg::kNone},
    {"NEW", SearchKeyKind::kNew, Arg::kNone},
    {"OLD", SearchKeyKind::kOld, Arg::kNone},
    {"RECENT", SearchKeyKind::kRecent, Arg::kNone},
    {"SEEN", SearchKeyKind::kSeen, Arg::kNone},
    {"UNANSWERED", SearchKeyKind::kUnanswered, Arg::kNone},
    {"UNDELETED", SearchKeyKind::kUndeleted, Arg::kNone},
    {"UNDRAFT", SearchKeyKind::kUndraft, Arg::kNone},
    {"UNFLAGGED", SearchKeyKind::kUnflagged, Arg::kNone},
    {"UNSEEN", SearchKeyKind::kUnseen, Arg::kNone},
    {"BCC", SearchKeyKind::kBcc, Arg::kString},
    {"BODY", SearchKeyKind::kBody, Arg::kString},
    {"CC", SearchKeyKind::kCc, Arg::kString},
    {"FROM", SearchKeyKind::kFrom, Arg::kString},
    {"SUBJECT", SearchKeyKind::kSubject, Arg::kString},
    {"TEXT", SearchKeyKind::kText, Arg::kString},
    {"TO", SearchKeyKind::kTo, Arg::kString},
    {"HEADER", SearchKeyKind::kHeader, Arg::kHeader},
    {"KEYWORD", SearchKeyKind::kKeyword, Arg::kKeyword},
    {"UNKEYWORD", SearchKeyKind::kUnkeyword, Arg::kKeyword},
    {"BEFORE", SearchKeyKind::kBefore, Arg::kDate},
    {"ON", SearchKeyKind::kOn, Arg::kDate},
    {"SINCE", SearchKeyKind::kSince, Arg::kDate},
    {"SENTBEFORE", SearchKeyKind::kSentBefore, Arg::kDate},
    {"SENTON", SearchKeyKind::kSentOn, Arg::kDate},
    {"SENTSINCE", SearchKeyKind::kSentSince, Arg::kDate},
    {"LARGER", SearchKeyKind::kLarger, Arg::kNumber},
    {"SMALLER", SearchKeyKind::kSmaller, Arg::kNumber},
    {"OLDER", SearchKeyKind::kOlder, Arg::kAge},
    {"YOUNGER", SearchKeyKind::kYounger, Arg::kAge},
    {"MODSEQ", SearchKeyKind::kModSeq, Arg::kModSeq},
    {"UID", SearchKeyKind::kUid, Arg::kSet},
    {"NOT", SearchKeyKind::kNot, Arg::kNot},
    {"OR", SearchKeyKind::kOr, Arg::kOr},
};

absl::StatusOr<std::string> SearchString(ArgCursor& in) {
  std::string s;
  if (const Token* t = in.Peek(); t != nullptr && t->type == Token::Type::kAtom) {
    // Lenient: a bare UTF-8 string (imaplib's search('UTF-8', 'SUBJECT',
    // b'...')) is accepted as if it were a literal.
    ASSIGN_OR_RETURN(Token * a, in.Next("search string"));
    for (char c : a->value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x80 && !chars::IsAstringChar(u)) return BadArgument("Expected search string");
    }
    s = std::move(a->value);
  } else {
    ASSIGN_OR_RETURN(s, in.Astring("search string"));
  }
  // CHARSET is US-ASCII or UTF-8 (both checked as UTF-8): invalid bytes
  // would otherwise reach the search index.
  if (!IsValidUtf8(s)) return BadArgument("Search string is not valid UTF-8");
  return s;
}

absl::StatusOr<Date> SearchDate(ArgCursor& in) {
  // date = date-text / DQUOTE date-text DQUOTE
  ASSIGN_OR_RETURN(Token * t, in.Next("date"));
  if (t->type != Token::Type::kAtom && t->type != Token::Type::kQuoted) {
    return BadArgument("Expected date");
  }
  return ParseDate(t->value);
}

absl::Status ParseModSeq(ArgCursor& in, SearchKey* k) {
  // "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
  if (Token* t = in.Peek(); t != nullptr && t->is_string()) {
    ASSIGN_OR_RETURN(Token * name, in.Next("entry name"));
    ASSIGN_OR_RETURN(k->text, TakeString(*name, "entry name"));
    if (k->text.rfind("/flags/", 0) != 0)
      return BadArgument("MODSEQ entry name must be /flags/...");
    ASSIGN_OR_RETURN(std::string type, in.Keyword("entry type"));
    if (type != "PRIV" && type != "SHARED" && type != "ALL") {
      return BadArgument("MODSEQ entry type must be priv, shared or all");
    }
    for (char& c : type) c = static_cast<char>(c | 0x20);
    k->field = std::move(type);
  }
  ASSIGN_OR_RETURN(Token * v, in.Next("mod-sequence"));
  if (v->type != Token::Type::kAtom) return BadArgument("Expected mod-sequence");
  ASSIGN_OR_RETURN(k->number,
                   ParseUnsigned(v->value, 0x7FFFFFFFFFFFFFFFull, false, "mod-sequence"));
  return absl::OkStatus();
}

absl::StatusOr<SearchKey> ParseKey(ArgCursor& in, size_t depth);

absl::Status ParseKeyArgs(ArgCursor& in, const KeySpec& spec, size_t depth, SearchKey* k) {
  switch (spec.arg) {
    case Arg::kNone:
      return absl::OkStatus();
    case Arg::kString: {
      ASSIGN_OR_RETURN(k->text, SearchString(in));
      return absl::OkStatus();
    }
    case Arg::kHeader: {
      ASSIGN_OR_RETURN(Token * f, in.Next("header field name"));
      ASSIGN_OR_RETURN(k->field, TakeHeaderFieldName(*f));
      ASSIGN_OR_RETURN(k->text, SearchString(in));
      return absl::OkStatus();
    }
    case Arg::kKeyword: {
      ASSIGN_OR_RETURN(k->text, in.Atom("flag keyword"));  // flag-keyword = atom
      return absl::OkStatus();
    }
    case Arg::kDate: {
      ASSIGN_OR_RETURN(k->date, SearchDate(in));
      return absl::OkStatus();
    }
    case Arg::kNumber: {
      ASSIGN_OR_RETURN(k->number, in.Number64("size"));
      return absl::OkStatus();
    }
    case Arg::kAge: {
      ASSIGN_OR_RETURN(k->number, in.NzNumber("age in seconds"));
      return absl::OkStatus();
    }
    case Arg::kModSeq:
      return ParseModSeq(in, k);
    case Arg::kSet: {
      ASSIGN_OR_RETURN(k->set, in.Sequence("UID set"));
      return absl::OkStatus();
    }
    case Arg::kNot: {
      ASSIGN_OR_RETURN(SearchKey child, ParseKey(in, depth + 1));
      k->children.push_back(std::move(child));
      return absl::OkStatus();
    }
    case Arg::kOr:
      for (int i = 0; i < 2; ++i) {
        ASSIGN_OR_RETURN(SearchKey child, ParseKey(in, depth + 1));
        k->children.push_back(std::move(child));
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::StatusOr<SearchKey> ParseKey(ArgCursor& in, size_t depth) {
  if (depth > in.ctx().limits.max_search_depth) {
    return BadArgument("Search keys nested too deeply", "LIMIT");
  }
  ASSIGN_OR_RETURN(Token * t, in.Next("search key"));
  SearchKey k;
  if (t->type == Token::Type::kList) {
    k.kind = SearchKeyKind::kAnd;
    ArgCursor sub(&t->items, in.ctx());
    if (sub.AtEnd()) return BadArgument("Empty search key list");
    while (!sub.AtEnd()) {
      ASSIGN_OR_RETURN(SearchKey child, ParseKey(sub, depth + 1));
      k.children.push_back(std::move(child));
    }
    return k;
  }
  if (t->type != Token::Type::kAtom) return BadArgument("Expected search key");
  const auto c0 = static_cast<unsigned char>(t->value[0]);
  if (chars::IsDigit(c0) || c0 == '*' || c0 == '$') {
    k.kind = SearchKeyKind::kSequenceSet;
    ASSIGN_OR_RETURN(k.set, SequenceSet::Parse(t->value, in.ctx().limits.max_sequence_ranges));
    return k;
  }
  const std::string name = UpperCase(t->value);
  for (const KeySpec& spec : kKeys) {
    if (spec.name != name) continue;
    k.kind = spec.kind;
    RETURN_IF_ERROR(ParseKeyArgs(in, spec, depth, &k));
    return k;
  }
  return BadArgument("Unknown search key " + name.substr(0, 40));
}

absl::StatusOr<SearchReturnOptions> ParseReturn(std::vector<Token>& opts,
                                                const CommandContext& ctx) {
  SearchReturnOptions r;
  ArgCursor in(&opts, ctx);
  if (in.AtEnd()) r.all = true;  // RFC 4731: RETURN () is RETURN (ALL)
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::string opt, in.Keyword("search return option"));
    if (opt == "MIN") {
      r.min = true;
    } else if (opt == "MAX") {
      r.max = true;
    } else if (opt == "ALL") {
      r.all = true;
    } else if (opt == "COUNT") {
      r.count = true;
    } else if (opt == "SAVE") {
      r.save = true;
    } else {
      return BadArgument("Unknown search return option " + opt);
    }
  }
  return r;
}

}  // namespace

absl::StatusOr<SearchArgs> ParseSearch(ArgCursor& in, bool uid) {
  SearchArgs a;
  a.criteria.kind = SearchKeyKind::kAnd;
  if (Token* t = in.Peek(); t != nullptr && t->IsKeyword("RETURN")) {
    RETURN_IF_ERROR(in.Next("RETURN").status());
    ASSIGN_OR_RETURN(std::vector<Token> * opts, in.List("search return options"));
    ASSIGN_OR_RETURN(a.result_options, ParseReturn(*opts, in.ctx()));
  }
  if (Token* t = in.Peek(); t != nullptr && t->IsKeyword("CHARSET")) {
    RETURN_IF_ERROR(in.Next("CHARSET").status());
    ASSIGN_OR_RETURN(std::string charset, in.Astring("charset"));
    charset = UpperCase(charset);
    if (charset != "UTF-8" && charset != "US-ASCII") {
      // RFC 3501 §6.4.4: NO with the charsets we do support.
      return Refused("Unsupported charset", "BADCHARSET (US-ASCII UTF-8)");
    }
    a.charset = std::move(charset);
  }
  if (in.AtEnd()) return BadArgument("Missing search key");
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(SearchKey k, ParseKey(in, 1));
    a.criteria.children.push_back(std::move(k));
  }
  return a;
}

namespace {

// The charset and search keys that end THREAD and SORT (RFC 5256).
absl::StatusOr<SearchArgs> ParseCharsetAndKeys(ArgCursor& in) {
  SearchArgs a;
  ASSIGN_OR_RETURN(std::string charset, in.Astring("charset"));
  charset = UpperCase(charset);
  if (charset != "UTF-8" && charset != "US-ASCII") {
    return Refused("Unsupported charset", "BADCHARSET (US-ASCII UTF-8)");
  }
  a.charset = std::move(charset);
  a.criteria.kind = SearchKeyKind::kAnd;
  if (in.AtEnd()) return BadArgument("Missing search key");
  while (!in.AtEnd()) {
    ASSIGN_OR_RETURN(SearchKey k, ParseKey(in, 1));
    a.criteria.children.push_back(std::move(k));
  }
  return a;
}

constexpr std::pair<std::string_view, SortKey> kSortKeys[] = {
    {"ARRIVAL", SortKey::kArrival}, {"CC", SortKey::kCc},     {"DATE", SortKey::kDate},
    {"FROM", SortKey::kFrom},       {"SIZE", SortKey::kSize}, {"SUBJECT", SortKey::kSubject},
    {"TO", SortKey::kTo},
};

}  // namespace

absl::StatusOr<ThreadArgs> ParseThread(ArgCursor& in, bool uid) {
  ThreadArgs a;
  ASSIGN_OR_RETURN(std::string algorithm, in.Astring("threading algorithm"));
  algorithm = UpperCase(algorithm);
  if (algorithm == "REFERENCES") {
    a.algorithm = ThreadAlgorithm::kReferences;
  } else if (algorithm == "ORDEREDSUBJECT") {
    a.algorithm = ThreadAlgorithm::kOrderedSubject;
  } else {
    return BadArgument("Unsupported threading algorithm");
  }
  ASSIGN_OR_RETURN(a.search, ParseCharsetAndKeys(in));
  (void)uid;
  return a;
}

absl::StatusOr<SortArgs> ParseSort(ArgCursor& in, bool uid) {
  SortArgs a;
  // ESORT (RFC 5267 §3.2): sort-return-opts = "RETURN" SP "(" [opts] ")",
  // before the criteria. SAVE (RFC 5182) is not offered with SORT.
  std::optional<SearchReturnOptions> ret;
  if (Token* t = in.Peek(); t != nullptr && t->IsKeyword("RETURN")) {
    RETURN_IF_ERROR(in.Next("RETURN").status());
    ASSIGN_OR_RETURN(std::vector<Token> * opts, in.List("sort return options"));
    ASSIGN_OR_RETURN(ret, ParseReturn(*opts, in.ctx()));
    if (ret->save) return BadArgument("SAVE is not supported with SORT");
  }
  ASSIGN_OR_RETURN(std::vector<Token> * list, in.List("sort criteria"));
  ArgCursor keys(list, in.ctx());
  bool reverse = false;
  while (!keys.AtEnd()) {
    ASSIGN_OR_RETURN(std::string name, keys.Keyword("sort key"));
    if (name == "REVERSE") {
      // RFC 5256 §3: sort-criterion = ["REVERSE" SP] sort-key.
      if (reverse) return BadArgument("REVERSE must be followed by a sort key");
      reverse = true;
      continue;
    }
    auto it = std::find_if(std::begin(kSortKeys), std::end(kSortKeys),
                           [&name](const auto& k) { return k.first == name; });
    if (it == std::end(kSortKeys)) return BadArgument("Unknown sort key " + name.substr(0, 40));
    a.criteria.push_back({it->second, reverse});
    reverse = false;
  }
  if (reverse) return BadArgument("REVERSE must be followed by a sort key");
  if (a.criteria.empty()) return BadArgument("Missing sort criteria");
  ASSIGN_OR_RETURN(a.search, ParseCharsetAndKeys(in));
  a.search.result_options = ret;
  (void)uid;
  return a;
}

void AppendDebug(const SortArgs& a, std::string* out) {
  *out += " sort=";
  for (const SortCriterion& c : a.criteria) {
    for (const auto& [name, key] : kSortKeys) {
      if (key != c.key) continue;
      *out += c.reverse ? "-" : "+";
      out->append(name.data(), name.size());
    }
  }
  AppendDebug(a.search, out);
}

void AppendDebug(const ThreadArgs& a, std::string* out) {
  *out += a.algorithm == ThreadAlgorithm::kReferences ? " algorithm=REFERENCES"
                                                      : " algorithm=ORDEREDSUBJECT";
  AppendDebug(a.search, out);
}

std::string_view SearchKeyName(SearchKeyKind kind) {
  switch (kind) {
    case SearchKeyKind::kSequenceSet:
      return "SET";
    case SearchKeyKind::kAnd:
      return "AND";
    default:
      break;
  }
  for (const KeySpec& spec : kKeys) {
    if (spec.kind == kind) return spec.name;
  }
  return "?";
}

void AppendDebug(const SearchKey& k, std::string* out) {
  const std::string_view name = SearchKeyName(k.kind);
  const KeySpec* spec = nullptr;
  for (const KeySpec& s : kKeys) {
    if (s.kind == k.kind) spec = &s;
  }
  const Arg arg = spec ? spec->arg : (k.kind == SearchKeyKind::kAnd ? Arg::kOr : Arg::kSet);
  if (arg == Arg::kNone) {
    out->append(name);
    return;
  }
  out->append("(").append(name);
  switch (arg) {
    case Arg::kNone:
      break;
    case Arg::kHeader:
      *out += " ";
      AppendQuoted(k.field, out);
      [[fallthrough]];
    case Arg::kString:
    case Arg::kKeyword:
      *out += " ";
      AppendQuoted(k.text, out);
      break;
    case Arg::kDate:
      *out += " " + FormatDate(k.date);
      break;
    case Arg::kNumber:
    case Arg::kAge:
      *out += " " + std::to_string(k.number);
      break;
    case Arg::kModSeq:
      if (!k.field.empty()) {
        *out += " ";
        AppendQuoted(k.text, out);
        *out += " " + k.field;
      }
      *out += " " + std::to_string(k.number);
      break;
    case Arg::kSet:
      *out += " " + k.set.ToString();
      break;
    case Arg::kNot:
    case Arg::kOr:
      for (const SearchKey& c : k.children) {
        *out += " ";
        AppendDebug(c, out);
      }
      break;
  }
  out->append(")");
}

void AppendDebug(const SearchArgs& a, std::string* out) {
  if (a.result_options) {
    const SearchReturnOptions& r = *a.result_options;
    std::string opts;
    if (r.min) opts += " MIN";
    if (r.max) opts += " MAX";
    if (r.all) opts += " ALL";
    if (r.count) opts += " COUNT";
    if (r.save) opts += " SAVE";
    *out += " return=(" + (opts.empty() ? "" : opts.substr(1)) + ")";
  }
  if (a.charset) *out += " charset=" + *a.charset;
  *out += " criteria=";
  AppendDebug(a.criteria, out);
}

}  // namespace mailgrid::imap
