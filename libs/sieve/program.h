// The compiled form of a Sieve script: a tree of typed commands and tests,
// every argument already checked by the compiler, so the evaluator never
// meets a malformed node. Internal to libs/sieve.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mailgrid::sieve::internal {

enum class Comparator : uint8_t { kOctet, kAsciiCasemap };
enum class MatchType : uint8_t { kIs, kContains, kMatches };
enum class AddressPart : uint8_t { kAll, kLocalPart, kDomain, kUser, kDetail };
enum class BodyTransform : uint8_t { kText, kRaw };

struct Match {
  Comparator comparator = Comparator::kAsciiCasemap;
  MatchType type = MatchType::kIs;
  std::vector<std::string> keys;
};

struct Test {
  enum class Kind : uint8_t {
    kTrue,
    kFalse,
    kNot,
    kAllOf,
    kAnyOf,
    kHeader,    // names = header field names
    kAddress,   // names = header field names
    kEnvelope,  // names = "from" / "to" (lower-cased)
    kExists,    // names = header field names
    kSize,      // over / limit
    kBody,      // transform
    kHasFlag,   // match against the internal flag variable
  };
  Kind kind = Kind::kTrue;
  std::vector<std::string> names;
  Match match;
  AddressPart part = AddressPart::kAll;
  bool over = false;
  uint64_t limit = 0;
  BodyTransform transform = BodyTransform::kText;
  std::vector<Test> children;
};

struct Command;

struct Branch {
  bool has_test = false;  // false: the final "else"
  Test test;
  std::vector<Command> block;
};

struct Command {
  enum class Kind : uint8_t {
    kIf,  // branches: if, elsif..., else
    kStop,
    kKeep,  // flags (has_flags: :flags given)
    kDiscard,
    kFileInto,  // text = folder, copy, flags
    kRedirect,  // text = address, copy
    kReject,    // text = reason, extended
    kVacation,  // vacation fields
    kSetFlag,   // flags
    kAddFlag,
    kRemoveFlag,
  };
  Kind kind = Kind::kStop;
  uint32_t line = 0;
  uint32_t column = 0;
  std::vector<Branch> branches;
  std::string text;
  bool copy = false;
  bool extended = false;
  bool has_flags = false;
  std::vector<std::string> flags;
  // vacation
  int days = 7;
  std::string subject;
  std::string from;
  std::string handle;
  bool has_handle = false;
  bool mime = false;
  std::vector<std::string> addresses;
};

struct Program {
  std::vector<std::string> extensions;
  std::vector<Command> commands;
};

// Splits imap4flags flag lists: every string is a space-separated list;
// duplicates (case-insensitive, RFC 3501 flags are) are dropped, empty
// words skipped.
std::vector<std::string> SplitFlags(const std::vector<std::string>& lists);

}  // namespace mailgrid::sieve::internal
