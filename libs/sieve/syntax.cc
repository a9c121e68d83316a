#include "libs/sieve/syntax.h"

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::sieve::internal {
namespace {

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, int max_nesting)
      : tokens_(tokens), max_nesting_(max_nesting) {}

  absl::StatusOr<std::vector<SyntaxCommand>> Script() {
    std::vector<SyntaxCommand> commands;
    RETURN_IF_ERROR(Commands(commands, 0));
    if (Peek().kind != TokenKind::kEnd) {
      return CompileError(Peek().pos, absl::StrCat("unexpected ", Describe(Peek())));
    }
    return commands;
  }

 private:
  const Token& Peek() const { return tokens_[i_]; }
  const Token& Take() { return tokens_[i_ < tokens_.size() - 1 ? i_++ : i_]; }
  bool At(TokenKind kind) const { return Peek().kind == kind; }

  absl::Status Expected(std::string_view what) const {
    return CompileError(
        Peek().pos, absl::StrCat("expected ", std::string(what), " but found ", Describe(Peek())));
  }

  absl::Status CheckDepth(int depth, Pos pos) const {
    if (depth > max_nesting_) {
      return CompileError(pos, absl::StrCat("nesting is deeper than ", max_nesting_));
    }
    return absl::OkStatus();
  }

  absl::Status Commands(std::vector<SyntaxCommand>& out, int depth) {
    while (At(TokenKind::kIdentifier)) {
      SyntaxCommand command;
      RETURN_IF_ERROR(Command(command, depth));
      out.push_back(std::move(command));
    }
    return absl::OkStatus();
  }

  absl::Status Command(SyntaxCommand& command, int depth) {
    const Token& name = Take();
    command.name = name.text;
    command.pos = name.pos;
    RETURN_IF_ERROR(Arguments(command.args));
    RETURN_IF_ERROR(TestOrTestList(command.tests, command.test_list, depth));
    if (At(TokenKind::kSemicolon)) {
      Take();
      return absl::OkStatus();
    }
    if (At(TokenKind::kLeftBrace)) {
      const Token& brace = Take();
      RETURN_IF_ERROR(CheckDepth(depth + 1, brace.pos));
      command.has_block = true;
      RETURN_IF_ERROR(Commands(command.block, depth + 1));
      if (!At(TokenKind::kRightBrace)) return Expected("'}'");
      Take();
      return absl::OkStatus();
    }
    return Expected("';' or '{'");
  }

  absl::Status Arguments(std::vector<Argument>& args) {
    while (true) {
      const Token& t = Peek();
      Argument arg;
      arg.pos = t.pos;
      if (t.kind == TokenKind::kTag) {
        arg.kind = Argument::Kind::kTag;
        arg.tag = Take().text;
      } else if (t.kind == TokenKind::kNumber) {
        arg.kind = Argument::Kind::kNumber;
        arg.number = Take().number;
      } else if (t.kind == TokenKind::kString) {
        arg.strings.push_back(Take().text);
      } else if (t.kind == TokenKind::kLeftBracket) {
        Take();
        arg.bracketed = true;
        while (true) {
          if (!At(TokenKind::kString)) return Expected("a string");
          arg.strings.push_back(Take().text);
          if (At(TokenKind::kComma)) {
            Take();
            continue;
          }
          if (At(TokenKind::kRightBracket)) {
            Take();
            break;
          }
          return Expected("',' or ']'");
        }
      } else {
        return absl::OkStatus();
      }
      args.push_back(std::move(arg));
    }
  }

  absl::Status TestOrTestList(std::vector<SyntaxTest>& tests, bool& test_list, int depth) {
    if (At(TokenKind::kIdentifier)) {
      RETURN_IF_ERROR(CheckDepth(depth + 1, Peek().pos));
      SyntaxTest test;
      RETURN_IF_ERROR(Test(test, depth + 1));
      tests.push_back(std::move(test));
      return absl::OkStatus();
    }
    if (!At(TokenKind::kLeftParen)) return absl::OkStatus();
    RETURN_IF_ERROR(CheckDepth(depth + 1, Peek().pos));
    Take();
    test_list = true;
    while (true) {
      if (!At(TokenKind::kIdentifier)) return Expected("a test");
      SyntaxTest test;
      RETURN_IF_ERROR(Test(test, depth + 1));
      tests.push_back(std::move(test));
      if (At(TokenKind::kComma)) {
        Take();
        continue;
      }
      if (At(TokenKind::kRightParen)) {
        Take();
        return absl::OkStatus();
      }
      return Expected("',' or ')'");
    }
  }

  absl::Status Test(SyntaxTest& test, int depth) {
    const Token& name = Take();
    test.name = name.text;
    test.pos = name.pos;
    RETURN_IF_ERROR(Arguments(test.args));
    return TestOrTestList(test.tests, test.test_list, depth);
  }

  const std::vector<Token>& tokens_;
  int max_nesting_;
  size_t i_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<SyntaxCommand>> ParseSyntax(const std::vector<Token>& tokens,
                                                       int max_nesting) {
  return Parser(tokens, max_nesting).Script();
}

}  // namespace mailgrid::sieve::internal
