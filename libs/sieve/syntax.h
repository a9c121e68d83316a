// The generic Sieve grammar (RFC 5228 §8.2): commands with arguments, an
// optional test or test list and an optional block, before any meaning is
// given to names. Internal to libs/sieve; compile.cc checks it into a
// Program.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/sieve/lexer.h"

namespace mailgrid::sieve::internal {

struct Argument {
  enum class Kind : uint8_t { kTag, kNumber, kStringList };
  Kind kind = Kind::kStringList;
  Pos pos;
  std::string tag;
  uint64_t number = 0;
  std::vector<std::string> strings;
  bool bracketed = false;  // written as [ ... ] (a single string must not be)
};

struct SyntaxTest {
  std::string name;
  Pos pos;
  std::vector<Argument> args;
  std::vector<SyntaxTest> tests;
  bool test_list = false;  // tests were written as ( ... )
};

struct SyntaxCommand {
  std::string name;
  Pos pos;
  std::vector<Argument> args;
  std::vector<SyntaxTest> tests;
  bool test_list = false;
  bool has_block = false;
  std::vector<SyntaxCommand> block;
};

// Parses tokens into commands; nesting of blocks and tests together is at
// most `max_nesting`.
absl::StatusOr<std::vector<SyntaxCommand>> ParseSyntax(const std::vector<Token>& tokens,
                                                       int max_nesting);

}  // namespace mailgrid::sieve::internal
