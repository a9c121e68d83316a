// From the generic grammar to a checked Program: every command and test
// name known, every argument of the right kind, every extension required
// before use (RFC 5228 §3.2), if/elsif/else chained.
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/mail/address.h"
#include "libs/sieve/program.h"
#include "libs/sieve/sieve.h"
#include "libs/sieve/syntax.h"

namespace mailgrid::sieve {
namespace internal {
namespace {

const std::set<std::string>& KnownExtensions() {
  static const auto* known = new std::set<std::string>{"fileinto",
                                                       "envelope",
                                                       "imap4flags",
                                                       "vacation",
                                                       "body",
                                                       "subaddress",
                                                       "copy",
                                                       "reject",
                                                       "ereject",
                                                       "comparator-i;octet",
                                                       "comparator-i;ascii-casemap"};
  return *known;
}

enum class ValueKind : uint8_t { kNone, kString, kStringList, kNumber };

struct TagRule {
  std::string_view name;
  ValueKind value = ValueKind::kNone;
  std::string_view group;      // at most one tag of a group ("match-type", ...)
  std::string_view extension;  // must be required first; "" for core
};

struct ParsedArgs {
  std::map<std::string, const Argument*> tags;    // tag → the tag itself
  std::map<std::string, const Argument*> values;  // tag → its value
  std::vector<const Argument*> positional;

  bool Has(const std::string& tag) const { return tags.count(tag) > 0; }
  const std::string& String(const std::string& tag) const { return values.at(tag)->strings[0]; }
};

std::string_view KindName(ValueKind kind) {
  switch (kind) {
    case ValueKind::kString:
      return "a string";
    case ValueKind::kStringList:
      return "a string list";
    case ValueKind::kNumber:
      return "a number";
    case ValueKind::kNone:
      break;
  }
  return "nothing";
}

bool ArgIs(const Argument& arg, ValueKind kind) {
  switch (kind) {
    case ValueKind::kString:
      return arg.kind == Argument::Kind::kStringList && !arg.bracketed && arg.strings.size() == 1;
    case ValueKind::kStringList:
      return arg.kind == Argument::Kind::kStringList;
    case ValueKind::kNumber:
      return arg.kind == Argument::Kind::kNumber;
    case ValueKind::kNone:
      break;
  }
  return false;
}

// Shared tag sets.
constexpr TagRule kComparatorTag{"comparator", ValueKind::kString, "comparator", ""};
constexpr TagRule kIsTag{"is", ValueKind::kNone, "match-type", ""};
constexpr TagRule kContainsTag{"contains", ValueKind::kNone, "match-type", ""};
constexpr TagRule kMatchesTag{"matches", ValueKind::kNone, "match-type", ""};
constexpr TagRule kAllTag{"all", ValueKind::kNone, "address-part", ""};
constexpr TagRule kLocalPartTag{"localpart", ValueKind::kNone, "address-part", ""};
constexpr TagRule kDomainTag{"domain", ValueKind::kNone, "address-part", ""};
constexpr TagRule kUserTag{"user", ValueKind::kNone, "address-part", "subaddress"};
constexpr TagRule kDetailTag{"detail", ValueKind::kNone, "address-part", "subaddress"};

class Checker {
 public:
  explicit Checker(Program& program) : program_(program) {}

  absl::Status TopLevel(const std::vector<SyntaxCommand>& commands) {
    bool seen_other = false;
    for (size_t i = 0; i < commands.size(); ++i) {
      const SyntaxCommand& c = commands[i];
      if (c.name == "require") {
        if (seen_other) {
          return CompileError(c.pos, "require must come before any other command");
        }
        RETURN_IF_ERROR(Require(c));
        continue;
      }
      seen_other = true;
    }
    return Block(commands, program_.commands);
  }

 private:
  absl::Status Require(const SyntaxCommand& c) {
    RETURN_IF_ERROR(NoTestNoBlock(c));
    ParsedArgs args;
    RETURN_IF_ERROR(Parse("require", c.pos, c.args, {}, {ValueKind::kStringList}, args));
    const Argument& list = *args.positional[0];
    for (const std::string& raw : list.strings) {
      std::string name = raw;
      std::transform(name.begin(), name.end(), name.begin(),
                     [](char ch) { return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch; });
      if (!KnownExtensions().count(name)) {
        return CompileError(list.pos, absl::StrCat("unsupported extension \"", raw, "\""),
                            kReasonUnsupported);
      }
      if (required_.insert(name).second) program_.extensions.push_back(name);
    }
    return absl::OkStatus();
  }

  absl::Status Block(const std::vector<SyntaxCommand>& in, std::vector<Command>& out) {
    for (size_t i = 0; i < in.size(); ++i) {
      const SyntaxCommand& c = in[i];
      if (c.name == "require") {
        if (&in != top_) return CompileError(c.pos, "require must come before any other command");
        continue;
      }
      if (c.name == "elsif" || c.name == "else") {
        bool chained = !out.empty() && out.back().kind == Command::Kind::kIf &&
                       out.back().branches.back().has_test && i > 0 &&
                       (in[i - 1].name == "if" || in[i - 1].name == "elsif");
        if (!chained) return CompileError(c.pos, absl::StrCat(c.name, " without a preceding if"));
        Branch branch;
        RETURN_IF_ERROR(MakeBranch(c, c.name == "elsif", branch));
        out.back().branches.push_back(std::move(branch));
        continue;
      }
      Command command;
      command.line = c.pos.line;
      command.column = c.pos.column;
      RETURN_IF_ERROR(MakeCommand(c, command));
      out.push_back(std::move(command));
    }
    return absl::OkStatus();
  }

  absl::Status MakeBranch(const SyntaxCommand& c, bool needs_test, Branch& branch) {
    if (!c.args.empty()) return CompileError(c.args[0].pos, c.name + " takes no arguments");
    if (needs_test) {
      if (c.tests.size() != 1 || c.test_list) {
        return CompileError(c.pos, c.name + " needs exactly one test");
      }
      branch.has_test = true;
      RETURN_IF_ERROR(MakeTest(c.tests[0], branch.test));
    } else if (!c.tests.empty()) {
      return CompileError(c.tests[0].pos, c.name + " takes no test");
    }
    if (!c.has_block) return CompileError(c.pos, c.name + " needs a block { ... }");
    return Block(c.block, branch.block);
  }

  absl::Status NoTestNoBlock(const SyntaxCommand& c) {
    if (!c.tests.empty()) return CompileError(c.tests[0].pos, c.name + " takes no test");
    if (c.has_block) return CompileError(c.pos, c.name + " takes no block; end it with ';'");
    return absl::OkStatus();
  }

  absl::Status Needs(std::string_view extension, Pos pos, std::string_view what) {
    if (required_.count(std::string(extension))) return absl::OkStatus();
    return CompileError(pos, absl::StrCat(std::string(what), " is used without require \"",
                                          std::string(extension), "\""));
  }

  absl::Status MakeCommand(const SyntaxCommand& c, Command& command) {
    const std::string& n = c.name;
    if (n == "if") {
      command.kind = Command::Kind::kIf;
      Branch branch;
      RETURN_IF_ERROR(MakeBranch(c, true, branch));
      command.branches.push_back(std::move(branch));
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(NoTestNoBlock(c));
    ParsedArgs args;
    constexpr TagRule kFlagsTag{"flags", ValueKind::kStringList, "", "imap4flags"};
    constexpr TagRule kCopyTag{"copy", ValueKind::kNone, "", "copy"};
    if (n == "stop" || n == "discard") {
      command.kind = n == "stop" ? Command::Kind::kStop : Command::Kind::kDiscard;
      return Parse(n, c.pos, c.args, {}, {}, args);
    }
    if (n == "keep") {
      command.kind = Command::Kind::kKeep;
      RETURN_IF_ERROR(Parse(n, c.pos, c.args, {kFlagsTag}, {}, args));
      return TakeFlags(args, command);
    }
    if (n == "fileinto") {
      RETURN_IF_ERROR(Needs("fileinto", c.pos, n));
      command.kind = Command::Kind::kFileInto;
      RETURN_IF_ERROR(Parse(n, c.pos, c.args, {kFlagsTag, kCopyTag}, {ValueKind::kString}, args));
      command.text = args.positional[0]->strings[0];
      if (command.text.empty()) return CompileError(args.positional[0]->pos, "empty folder name");
      for (char ch : command.text) {
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7F) {
          return CompileError(args.positional[0]->pos, "folder name has control characters");
        }
      }
      command.copy = args.Has("copy");
      return TakeFlags(args, command);
    }
    if (n == "redirect") {
      command.kind = Command::Kind::kRedirect;
      RETURN_IF_ERROR(Parse(n, c.pos, c.args, {kCopyTag}, {ValueKind::kString}, args));
      command.text = args.positional[0]->strings[0];
      command.copy = args.Has("copy");
      return CheckAddress(command.text, args.positional[0]->pos, "redirect");
    }
    if (n == "reject" || n == "ereject") {
      RETURN_IF_ERROR(Needs(n, c.pos, n));
      command.kind = Command::Kind::kReject;
      command.extended = n == "ereject";
      RETURN_IF_ERROR(Parse(n, c.pos, c.args, {}, {ValueKind::kString}, args));
      command.text = args.positional[0]->strings[0];
      return absl::OkStatus();
    }
    if (n == "setflag" || n == "addflag" || n == "removeflag") {
      RETURN_IF_ERROR(Needs("imap4flags", c.pos, n));
      command.kind = n == "setflag"   ? Command::Kind::kSetFlag
                     : n == "addflag" ? Command::Kind::kAddFlag
                                      : Command::Kind::kRemoveFlag;
      if (c.args.size() == 2) {
        return CompileError(c.args[0].pos,
                            n + " with a variable name needs the \"variables\" extension, "
                                "which is not supported");
      }
      RETURN_IF_ERROR(Parse(n, c.pos, c.args, {}, {ValueKind::kStringList}, args));
      command.flags = SplitFlags(args.positional[0]->strings);
      return absl::OkStatus();
    }
    if (n == "vacation") return Vacation(c, command);
    return CompileError(c.pos, absl::StrCat("unknown command \"", n, "\""));
  }

  absl::Status TakeFlags(const ParsedArgs& args, Command& command) {
    if (!args.Has("flags")) return absl::OkStatus();
    command.has_flags = true;
    command.flags = SplitFlags(args.values.at("flags")->strings);
    return absl::OkStatus();
  }

  absl::Status CheckAddress(const std::string& text, Pos pos, std::string_view what) {
    mail::AddressList list = mail::ParseAddressList(text);
    auto boxes = list.Mailboxes();
    bool ok = !list.malformed && boxes.size() == 1 && boxes[0]->valid &&
              !boxes[0]->local_part.empty() && !boxes[0]->domain.empty() &&
              text.find_first_of("\r\n") == std::string::npos;
    if (!ok) {
      return CompileError(
          pos, absl::StrCat(std::string(what), ": \"", text, "\" is not a valid address"));
    }
    return absl::OkStatus();
  }

  absl::Status Vacation(const SyntaxCommand& c, Command& command) {
    RETURN_IF_ERROR(Needs("vacation", c.pos, "vacation"));
    command.kind = Command::Kind::kVacation;
    ParsedArgs args;
    RETURN_IF_ERROR(Parse("vacation", c.pos, c.args,
                          {{"days", ValueKind::kNumber, "", ""},
                           {"subject", ValueKind::kString, "", ""},
                           {"from", ValueKind::kString, "", ""},
                           {"addresses", ValueKind::kStringList, "", ""},
                           {"mime", ValueKind::kNone, "", ""},
                           {"handle", ValueKind::kString, "", ""}},
                          {ValueKind::kString}, args));
    command.text = args.positional[0]->strings[0];
    if (args.Has("days")) {
      uint64_t days = args.values.at("days")->number;
      command.days = static_cast<int>(std::clamp<uint64_t>(days, 1, 365));
    }
    if (args.Has("subject")) command.subject = args.String("subject");
    if (command.subject.find_first_of("\r\n") != std::string::npos) {
      return CompileError(args.values.at("subject")->pos, "vacation :subject has a line break");
    }
    if (args.Has("from")) {
      command.from = args.String("from");
      RETURN_IF_ERROR(CheckAddress(command.from, args.values.at("from")->pos, "vacation :from"));
    }
    if (args.Has("addresses")) command.addresses = args.values.at("addresses")->strings;
    command.mime = args.Has("mime");
    if (args.Has("handle")) {
      command.has_handle = true;
      command.handle = args.String("handle");
    }
    return absl::OkStatus();
  }

  absl::Status TakeMatch(const ParsedArgs& args, Match& match) {
    if (args.Has("comparator")) {
      const std::string& name = args.String("comparator");
      if (name == "i;octet") {
        match.comparator = Comparator::kOctet;
      } else if (name == "i;ascii-casemap") {
        match.comparator = Comparator::kAsciiCasemap;
      } else {
        return CompileError(args.values.at("comparator")->pos,
                            absl::StrCat("unsupported comparator \"", name, "\""),
                            kReasonUnsupported);
      }
    }
    if (args.Has("contains")) match.type = MatchType::kContains;
    if (args.Has("matches")) match.type = MatchType::kMatches;
    return absl::OkStatus();
  }

  static AddressPart TakePart(const ParsedArgs& args) {
    if (args.Has("localpart")) return AddressPart::kLocalPart;
    if (args.Has("domain")) return AddressPart::kDomain;
    if (args.Has("user")) return AddressPart::kUser;
    if (args.Has("detail")) return AddressPart::kDetail;
    return AddressPart::kAll;
  }

  absl::Status CheckHeaderNames(const Argument& arg) {
    for (const std::string& name : arg.strings) {
      bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
        return ch > 32 && ch < 127 && ch != ':';
      });
      if (!ok) return CompileError(arg.pos, absl::StrCat("invalid header name \"", name, "\""));
    }
    return absl::OkStatus();
  }

  absl::Status MakeTest(const SyntaxTest& t, Test& test) {
    const std::string& n = t.name;
    auto no_subtests = [&]() -> absl::Status {
      if (!t.tests.empty()) return CompileError(t.tests[0].pos, n + " takes no nested test");
      return absl::OkStatus();
    };
    ParsedArgs args;
    if (n == "true" || n == "false") {
      test.kind = n == "true" ? Test::Kind::kTrue : Test::Kind::kFalse;
      RETURN_IF_ERROR(no_subtests());
      return Parse(n, t.pos, t.args, {}, {}, args);
    }
    if (n == "not" || n == "allof" || n == "anyof") {
      RETURN_IF_ERROR(Parse(n, t.pos, t.args, {}, {}, args));
      if (n == "not") {
        test.kind = Test::Kind::kNot;
        if (t.tests.size() != 1 || t.test_list) {
          return CompileError(t.pos, "not needs exactly one test");
        }
      } else {
        test.kind = n == "allof" ? Test::Kind::kAllOf : Test::Kind::kAnyOf;
        if (!t.test_list) return CompileError(t.pos, n + " needs a test list ( ... )");
      }
      for (const SyntaxTest& sub : t.tests) {
        Test child;
        RETURN_IF_ERROR(MakeTest(sub, child));
        test.children.push_back(std::move(child));
      }
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(no_subtests());
    if (n == "header") {
      test.kind = Test::Kind::kHeader;
      RETURN_IF_ERROR(Parse(n, t.pos, t.args, {kComparatorTag, kIsTag, kContainsTag, kMatchesTag},
                            {ValueKind::kStringList, ValueKind::kStringList}, args));
      RETURN_IF_ERROR(CheckHeaderNames(*args.positional[0]));
      return TakeNamesAndKeys(args, test);
    }
    if (n == "address" || n == "envelope") {
      if (n == "envelope") RETURN_IF_ERROR(Needs("envelope", t.pos, n));
      test.kind = n == "address" ? Test::Kind::kAddress : Test::Kind::kEnvelope;
      RETURN_IF_ERROR(Parse(n, t.pos, t.args,
                            {kComparatorTag, kIsTag, kContainsTag, kMatchesTag, kAllTag,
                             kLocalPartTag, kDomainTag, kUserTag, kDetailTag},
                            {ValueKind::kStringList, ValueKind::kStringList}, args));
      test.part = TakePart(args);
      RETURN_IF_ERROR(TakeNamesAndKeys(args, test));
      if (test.kind == Test::Kind::kAddress) return CheckHeaderNames(*args.positional[0]);
      for (std::string& part : test.names) {
        std::transform(part.begin(), part.end(), part.begin(),
                       [](char ch) { return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch; });
        if (part != "from" && part != "to") {
          return CompileError(args.positional[0]->pos,
                              absl::StrCat("unsupported envelope part \"", part, "\""));
        }
      }
      return absl::OkStatus();
    }
    if (n == "exists") {
      test.kind = Test::Kind::kExists;
      RETURN_IF_ERROR(Parse(n, t.pos, t.args, {}, {ValueKind::kStringList}, args));
      RETURN_IF_ERROR(CheckHeaderNames(*args.positional[0]));
      test.names = args.positional[0]->strings;
      return absl::OkStatus();
    }
    if (n == "size") {
      test.kind = Test::Kind::kSize;
      RETURN_IF_ERROR(
          Parse(n, t.pos, t.args,
                {{"over", ValueKind::kNone, "size", ""}, {"under", ValueKind::kNone, "size", ""}},
                {ValueKind::kNumber}, args));
      if (!args.Has("over") && !args.Has("under")) {
        return CompileError(t.pos, "size needs :over or :under");
      }
      test.over = args.Has("over");
      test.limit = args.positional[0]->number;
      return absl::OkStatus();
    }
    if (n == "body") {
      RETURN_IF_ERROR(Needs("body", t.pos, n));
      test.kind = Test::Kind::kBody;
      RETURN_IF_ERROR(Parse(n, t.pos, t.args,
                            {kComparatorTag,
                             kIsTag,
                             kContainsTag,
                             kMatchesTag,
                             {"raw", ValueKind::kNone, "transform", ""},
                             {"text", ValueKind::kNone, "transform", ""},
                             {"content", ValueKind::kStringList, "transform", ""}},
                            {ValueKind::kStringList}, args));
      if (args.Has("content")) {
        return CompileError(args.tags.at("content")->pos, "body :content is not supported",
                            kReasonUnsupported);
      }
      test.transform = args.Has("raw") ? BodyTransform::kRaw : BodyTransform::kText;
      RETURN_IF_ERROR(TakeMatch(args, test.match));
      test.match.keys = args.positional[0]->strings;
      return absl::OkStatus();
    }
    if (n == "hasflag") {
      RETURN_IF_ERROR(Needs("imap4flags", t.pos, n));
      test.kind = Test::Kind::kHasFlag;
      // Two string lists (a variable list, then flags) is the variables
      // extension's form.
      std::vector<const Argument*> lists;
      for (size_t i = 0; i < t.args.size(); ++i) {
        if (t.args[i].kind == Argument::Kind::kTag && t.args[i].tag == "comparator")
          ++i;
        else if (t.args[i].kind == Argument::Kind::kStringList)
          lists.push_back(&t.args[i]);
      }
      if (lists.size() == 2) {
        return CompileError(lists[0]->pos,
                            "hasflag with a variable list needs the \"variables\" extension, "
                            "which is not supported");
      }
      RETURN_IF_ERROR(Parse(n, t.pos, t.args, {kComparatorTag, kIsTag, kContainsTag, kMatchesTag},
                            {ValueKind::kStringList}, args));
      RETURN_IF_ERROR(TakeMatch(args, test.match));
      test.match.keys = SplitFlags(args.positional[0]->strings);
      return absl::OkStatus();
    }
    return CompileError(t.pos, absl::StrCat("unknown test \"", n, "\""));
  }

  absl::Status TakeNamesAndKeys(const ParsedArgs& args, Test& test) {
    RETURN_IF_ERROR(TakeMatch(args, test.match));
    test.names = args.positional[0]->strings;
    test.match.keys = args.positional[1]->strings;
    return absl::OkStatus();
  }

  // Tags may appear anywhere (each followed by its value); what is left are
  // the positional arguments, which must match `positional` exactly.
  absl::Status Parse(const std::string& what, Pos pos, const std::vector<Argument>& in,
                     std::initializer_list<TagRule> rules,
                     std::initializer_list<ValueKind> positional, ParsedArgs& out) {
    std::map<std::string_view, std::string> groups_used;
    for (size_t i = 0; i < in.size(); ++i) {
      const Argument& arg = in[i];
      if (arg.kind != Argument::Kind::kTag) {
        out.positional.push_back(&arg);
        continue;
      }
      const TagRule* rule = nullptr;
      for (const TagRule& r : rules) {
        if (r.name == arg.tag) rule = &r;
      }
      if (rule == nullptr) {
        return CompileError(arg.pos, absl::StrCat("unknown tag :", arg.tag, " for ", what));
      }
      if (!rule->extension.empty()) {
        RETURN_IF_ERROR(Needs(rule->extension, arg.pos, absl::StrCat(":", arg.tag)));
      }
      if (out.tags.count(arg.tag)) {
        return CompileError(arg.pos, absl::StrCat("tag :", arg.tag, " is given twice"));
      }
      if (!rule->group.empty()) {
        auto [it, inserted] = groups_used.emplace(rule->group, arg.tag);
        if (!inserted) {
          return CompileError(arg.pos,
                              absl::StrCat(":", arg.tag, " cannot be combined with :", it->second));
        }
      }
      out.tags[arg.tag] = &arg;
      if (rule->value == ValueKind::kNone) continue;
      if (i + 1 >= in.size() || !ArgIs(in[i + 1], rule->value)) {
        return CompileError(arg.pos,
                            absl::StrCat(":", arg.tag, " needs ", ToAbsl(KindName(rule->value))));
      }
      out.values[arg.tag] = &in[++i];
    }
    if (out.positional.size() != positional.size()) {
      Pos where =
          out.positional.size() > positional.size() ? out.positional[positional.size()]->pos : pos;
      return CompileError(
          where, absl::StrCat(what, " takes ", positional.size(), " positional argument",
                              positional.size() == 1 ? "" : "s", ", not ", out.positional.size()));
    }
    size_t k = 0;
    for (ValueKind kind : positional) {
      const Argument& arg = *out.positional[k++];
      if (!ArgIs(arg, kind)) {
        return CompileError(
            arg.pos, absl::StrCat(what, ": argument ", k, " must be ", ToAbsl(KindName(kind))));
      }
    }
    return absl::OkStatus();
  }

 public:
  const std::vector<SyntaxCommand>* top_ = nullptr;

 private:
  Program& program_;
  std::set<std::string> required_;
};

}  // namespace

std::vector<std::string> SplitFlags(const std::vector<std::string>& lists) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& list : lists) {
    size_t i = 0;
    while (i < list.size()) {
      while (i < list.size() && list[i] == ' ') ++i;
      size_t start = i;
      while (i < list.size() && list[i] != ' ') ++i;
      if (i == start) continue;
      std::string flag = list.substr(start, i - start);
      std::string key = flag;
      std::transform(key.begin(), key.end(), key.begin(),
                     [](char ch) { return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch; });
      if (seen.insert(key).second) out.push_back(std::move(flag));
    }
  }
  return out;
}

}  // namespace internal

Script::Script() : program_(std::make_shared<internal::Program>()) {}

const std::vector<std::string>& Script::extensions() const { return program_->extensions; }

absl::StatusOr<Script> Compile(std::string_view source, const CompileOptions& options) {
  if (source.size() > options.max_source_bytes) {
    absl::Status status = absl::InvalidArgumentError(
        absl::StrCat("script is larger than ", options.max_source_bytes, " bytes"));
    status.SetPayload(internal::kReasonPayloadUrl, absl::Cord(ToAbsl(internal::kReasonTooLarge)));
    return status;
  }
  ASSIGN_OR_RETURN(std::vector<internal::Token> tokens, internal::Tokenize(source));
  ASSIGN_OR_RETURN(std::vector<internal::SyntaxCommand> syntax,
                   internal::ParseSyntax(tokens, options.max_nesting));
  auto program = std::make_shared<internal::Program>();
  internal::Checker checker(*program);
  checker.top_ = &syntax;
  RETURN_IF_ERROR(checker.TopLevel(syntax));
  Script script;
  script.program_ = std::move(program);
  return script;
}

}  // namespace mailgrid::sieve
