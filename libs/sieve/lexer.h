// Sieve lexical analysis (RFC 5228 §2.2-2.4, §8.1): white space, hash and
// bracket comments, identifiers, tags, numbers with K/M/G quantifiers,
// quoted strings and "text:" multi-line strings (dot-unstuffed). Internal
// to libs/sieve.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailgrid::sieve::internal {

struct Pos {
  uint32_t line = 1;
  uint32_t column = 1;
};

enum class TokenKind : uint8_t {
  kIdentifier,  // text = the name, lower-cased
  kTag,         // text = the name without ':', lower-cased
  kNumber,      // number
  kString,      // text = the decoded value
  kLeftBracket,
  kRightBracket,
  kLeftBrace,
  kRightBrace,
  kLeftParen,
  kRightParen,
  kComma,
  kSemicolon,
  kEnd,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  Pos pos;
  std::string text;
  uint64_t number = 0;
};

// Reasons carried by compile errors (CompileErrorReason).
inline constexpr std::string_view kReasonSyntax = "SYNTAX";
inline constexpr std::string_view kReasonUnsupported = "UNSUPPORTED_EXTENSION";
inline constexpr std::string_view kReasonTooLarge = "TOO_LARGE";
inline constexpr char kReasonPayloadUrl[] = "mailgrid.sieve/reason";

// INVALID_ARGUMENT "line:column: message" tagged with `reason`.
absl::Status CompileError(Pos pos, std::string_view message,
                          std::string_view reason = kReasonSyntax);

// The whole source as tokens, ending with kEnd. Also rejects source that is
// not valid UTF-8 (RFC 5228 §2.1).
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

// Human name of a token for error messages ("'{'", "string", ...).
std::string Describe(const Token& token);

}  // namespace mailgrid::sieve::internal
