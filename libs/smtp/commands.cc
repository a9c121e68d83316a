#include "libs/smtp/commands.h"

#include <array>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/smtp/ascii.h"

namespace mailgrid::smtp {
namespace {

struct Param {
  std::string_view keyword;
  std::optional<std::string_view> value;
};

Reply SyntaxError(std::string_view text) { return Reply::Make(501, "5.5.4", text); }
Reply Unsupported(std::string_view keyword) {
  // The keyword passed the esmtp-keyword grammar, so it is safe to echo.
  return Reply::Make(555, "5.5.4", "Unsupported option: " + std::string(keyword));
}

bool IsKeywordChar(char c) { return internal::IsAlnumAscii(c) || c == '-'; }

// esmtp-value = 1*(%d33-60 / %d62-126)
bool IsValueChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u >= 33 && u <= 126 && c != '=';
}

bool IsPrintable(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) return false;
  }
  return true;
}

// Splits " KEY[=VALUE] KEY[=VALUE]..." (one or more SP between parameters,
// tolerated as Postfix does) into parameters; refuses duplicates.
std::variant<std::vector<Param>, Reply> SplitParams(std::string_view rest) {
  std::vector<Param> params;
  if (rest.empty()) return params;
  if (rest.front() != ' ') return SyntaxError("Bad parameter syntax");
  for (std::string_view token : internal::Split(rest, ' ', true)) {
    size_t eq = token.find('=');
    Param p;
    p.keyword = token.substr(0, eq);
    if (p.keyword.empty() || p.keyword.front() == '-') return SyntaxError("Bad parameter syntax");
    for (char c : p.keyword) {
      if (!IsKeywordChar(c)) return SyntaxError("Bad parameter syntax");
    }
    if (eq != std::string_view::npos) {
      std::string_view v = token.substr(eq + 1);
      if (v.empty()) return SyntaxError("Bad parameter syntax");
      for (char c : v) {
        if (!IsValueChar(c)) return SyntaxError("Bad parameter syntax");
      }
      p.value = v;
    }
    for (const Param& seen : params) {
      if (internal::EqualsIgnoreCase(seen.keyword, p.keyword)) {
        return SyntaxError("Duplicate parameter");
      }
    }
    params.push_back(p);
  }
  return params;
}

bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// "FROM:" / "TO:" then the path (one SP after the colon tolerated, as
// nearly every server does for old clients); returns the text after it.
std::variant<Path, Reply> ParsePathArg(std::string_view args, std::string_view prefix,
                                       PathKind kind, const Reply& usage, std::string_view* rest) {
  if (!internal::StartsWithIgnoreCase(args, prefix)) return usage;
  std::string_view s = args.substr(prefix.size());
  if ((!s.empty() && s.front() == ' ')) s.remove_prefix(1);
  if (s.empty() || s.front() != '<') return usage;
  size_t consumed = 0;
  absl::StatusOr<Path> path = ParsePathPrefix(s, kind, &consumed);
  if (!path.ok()) {
    bool sender = kind == PathKind::kReverse;
    return Reply::Make(
        501, sender ? "5.1.7" : "5.1.3",
        absl::StrCat(sender ? "Bad sender address syntax: " : "Bad recipient address syntax: ",
                     path.status().message()));
  }
  *rest = s.substr(consumed);
  return *std::move(path);
}

std::optional<Reply> ApplyMailParam(const Param& p, const Extensions& ext, MailParams* out) {
  std::string kw = internal::ToUpper(p.keyword);
  std::string_view v = p.value.value_or("");
  if (kw == "SIZE" && ext.size) {
    uint64_t n = 0;
    if (!p.value || !ParseDecimal(v, &n)) return SyntaxError("Bad SIZE syntax");
    if (ext.max_message_size != 0 && n > ext.max_message_size) {
      return Reply::Make(552, "5.3.4", "Message size exceeds fixed limit");
    }
    out->size = n;
  } else if (kw == "BODY") {
    if (internal::EqualsIgnoreCase(v, "7BIT")) {
      out->body = BodyType::k7Bit;
    } else if (internal::EqualsIgnoreCase(v, "8BITMIME") && ext.eightbitmime) {
      out->body = BodyType::k8BitMime;
    } else if (internal::EqualsIgnoreCase(v, "BINARYMIME") && ext.binarymime) {
      out->body = BodyType::kBinaryMime;
    } else {
      return SyntaxError("Unsupported BODY type");
    }
  } else if (kw == "SMTPUTF8" && ext.smtputf8) {
    if (p.value) return SyntaxError("SMTPUTF8 takes no value");
    out->smtputf8 = true;
  } else if (kw == "RET" && ext.dsn) {
    if (internal::EqualsIgnoreCase(v, "FULL")) {
      out->ret = DsnReturn::kFull;
    } else if (internal::EqualsIgnoreCase(v, "HDRS")) {
      out->ret = DsnReturn::kHeaders;
    } else {
      return SyntaxError("Bad RET value");
    }
  } else if (kw == "ENVID" && ext.dsn) {
    std::optional<std::string> id = DecodeXtext(v);
    // RFC 3461 §4.4: at most 100 characters, printable ASCII.
    if (v.size() > 100 || !id || id->empty() || !IsPrintable(*id)) {
      return SyntaxError("Bad ENVID syntax");
    }
    out->envid = std::move(id);
  } else if (kw == "AUTH" && ext.auth) {
    std::optional<std::string> who = DecodeXtext(v);
    if (!who || (*who != "<>" && !ParseMailbox(*who).ok())) {
      return SyntaxError("Bad AUTH parameter");
    }
    out->auth = std::move(who);
  } else {
    return Unsupported(p.keyword);
  }
  return std::nullopt;
}

std::optional<Reply> ApplyNotify(std::string_view v, RcptParams* out) {
  out->notify_specified = true;
  for (std::string_view item : internal::Split(v, ',')) {
    bool* flag = nullptr;
    if (internal::EqualsIgnoreCase(item, "NEVER")) flag = &out->notify_never;
    if (internal::EqualsIgnoreCase(item, "SUCCESS")) flag = &out->notify_success;
    if (internal::EqualsIgnoreCase(item, "FAILURE")) flag = &out->notify_failure;
    if (internal::EqualsIgnoreCase(item, "DELAY")) flag = &out->notify_delay;
    if (flag == nullptr || *flag) return SyntaxError("Bad NOTIFY syntax");
    *flag = true;
  }
  // RFC 3461 §4.1: NEVER stands alone.
  if (out->notify_never && (out->notify_success || out->notify_failure || out->notify_delay)) {
    return SyntaxError("Bad NOTIFY syntax");
  }
  return std::nullopt;
}

std::optional<Reply> ApplyOrcpt(std::string_view v, bool smtputf8, RcptParams* out) {
  size_t semi = v.find(';');
  if (v.size() > 500 || semi == std::string_view::npos || semi == 0) {
    return SyntaxError("Bad ORCPT syntax");
  }
  std::string_view type = v.substr(0, semi);
  for (char c : type) {
    if (!IsKeywordChar(c)) return SyntaxError("Bad ORCPT syntax");
  }
  std::optional<std::string> addr = DecodeXtext(v.substr(semi + 1));
  if (!addr || addr->empty()) return SyntaxError("Bad ORCPT syntax");
  for (char c : *addr) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || (u >= 0x80 && !smtputf8)) return SyntaxError("Bad ORCPT syntax");
  }
  if (!IsValidUtf8(*addr)) return SyntaxError("Bad ORCPT syntax");
  out->orcpt_type = std::string(type);
  out->orcpt_address = std::move(addr);
  return std::nullopt;
}

Reply NonAscii() { return Reply::Make(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"); }

}  // namespace

CommandLine SplitCommand(std::string_view line) {
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  size_t sp = line.find(' ');
  std::string_view name = line.substr(0, sp);
  CommandLine cmd;
  if (sp != std::string_view::npos) {
    cmd.args = line.substr(sp + 1);
    cmd.has_args = true;
  }
  static constexpr std::array<std::pair<std::string_view, Verb>, 19> kVerbs = {{
      {"HELO", Verb::kHelo},         {"EHLO", Verb::kEhlo}, {"MAIL", Verb::kMail},
      {"RCPT", Verb::kRcpt},         {"DATA", Verb::kData}, {"BDAT", Verb::kBdat},
      {"RSET", Verb::kRset},         {"NOOP", Verb::kNoop}, {"QUIT", Verb::kQuit},
      {"VRFY", Verb::kVrfy},         {"EXPN", Verb::kExpn}, {"HELP", Verb::kHelp},
      {"STARTTLS", Verb::kStartTls}, {"AUTH", Verb::kAuth}, {"GET", Verb::kHttp},
      {"POST", Verb::kHttp},         {"HEAD", Verb::kHttp}, {"PUT", Verb::kHttp},
      {"CONNECT", Verb::kHttp},
  }};
  for (const auto& [word, verb] : kVerbs) {
    if (internal::EqualsIgnoreCase(name, word)) {
      cmd.verb = verb;
      break;
    }
  }
  return cmd;
}

Parsed<MailCommand> ParseMailCommand(std::string_view args, const Extensions& ext) {
  static const Reply kUsage = SyntaxError("Syntax: MAIL FROM:<address>");
  std::string_view rest;
  std::variant<Path, Reply> path = ParsePathArg(args, "FROM:", PathKind::kReverse, kUsage, &rest);
  if (auto* r = std::get_if<Reply>(&path)) return *r;
  auto params = SplitParams(rest);
  if (auto* r = std::get_if<Reply>(&params)) return *r;
  MailCommand cmd{std::get<Path>(std::move(path)), {}};
  for (const Param& p : std::get<std::vector<Param>>(params)) {
    if (!ext.esmtp) return Unsupported(p.keyword);
    if (std::optional<Reply> err = ApplyMailParam(p, ext, &cmd.params)) return *err;
  }
  if (cmd.reverse_path.utf8 && !cmd.params.smtputf8) return NonAscii();
  return cmd;
}

Parsed<RcptCommand> ParseRcptCommand(std::string_view args, const Extensions& ext, bool smtputf8) {
  static const Reply kUsage = SyntaxError("Syntax: RCPT TO:<address>");
  std::string_view rest;
  std::variant<Path, Reply> path = ParsePathArg(args, "TO:", PathKind::kForward, kUsage, &rest);
  if (auto* r = std::get_if<Reply>(&path)) return *r;
  auto params = SplitParams(rest);
  if (auto* r = std::get_if<Reply>(&params)) return *r;
  RcptCommand cmd{std::get<Path>(std::move(path)), {}};
  for (const Param& p : std::get<std::vector<Param>>(params)) {
    if (!ext.esmtp || !ext.dsn) return Unsupported(p.keyword);
    std::optional<Reply> err;
    if (internal::EqualsIgnoreCase(p.keyword, "NOTIFY") && p.value) {
      err = ApplyNotify(*p.value, &cmd.params);
    } else if (internal::EqualsIgnoreCase(p.keyword, "ORCPT") && p.value) {
      err = ApplyOrcpt(*p.value, smtputf8, &cmd.params);
    } else if (internal::EqualsIgnoreCase(p.keyword, "NOTIFY") ||
               internal::EqualsIgnoreCase(p.keyword, "ORCPT")) {
      err = SyntaxError("Parameter needs a value");
    } else {
      err = Unsupported(p.keyword);
    }
    if (err) return *err;
  }
  if (cmd.forward_path.utf8 && !smtputf8) return NonAscii();
  return cmd;
}

Parsed<BdatCommand> ParseBdatCommand(std::string_view args) {
  static const Reply kUsage = SyntaxError("Syntax: BDAT count [LAST]");
  std::vector<std::string_view> parts = internal::Split(args, ' ');
  BdatCommand cmd;
  if (parts.empty() || parts.size() > 2 || !ParseDecimal(parts[0], &cmd.size)) return kUsage;
  if (parts.size() == 2) {
    if (!internal::EqualsIgnoreCase(parts[1], "LAST")) return kUsage;
    cmd.last = true;
  }
  return cmd;
}

Parsed<AuthCommand> ParseAuthCommand(std::string_view args) {
  static const Reply kUsage = SyntaxError("Syntax: AUTH mechanism [initial-response]");
  std::vector<std::string_view> parts = internal::Split(args, ' ');
  if (parts.empty() || parts.size() > 2) return kUsage;
  // RFC 4422 §3.1: sasl-mech = 1*20 of upper-case letters, digits, '-', '_'.
  std::string_view mech = parts[0];
  if (mech.empty() || mech.size() > 20) return kUsage;
  for (char c : mech) {
    if (!IsKeywordChar(c) && c != '_') return kUsage;
  }
  AuthCommand cmd;
  cmd.mechanism = internal::ToUpper(mech);
  if (parts.size() == 2) {
    if (parts[1] == "=") {
      cmd.initial_response = "";
    } else {
      cmd.initial_response = DecodeBase64(parts[1]);
      if (!cmd.initial_response || parts[1].empty()) {
        return Reply::Make(501, "5.5.2", "Cannot decode response");
      }
    }
  }
  return cmd;
}

std::optional<std::string> DecodeBase64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    bool final_quad = i + 4 == in.size();
    int pad = 0;
    if (final_quad && in[i + 3] == '=') pad = in[i + 2] == '=' ? 2 : 1;
    uint32_t bits = 0;
    for (int k = 0; k < 4; ++k) {
      int v = k >= 4 - pad ? 0 : value(in[i + k]);
      if (v < 0) return std::nullopt;
      bits = (bits << 6) | static_cast<uint32_t>(v);
    }
    // Non-canonical encodings (stray bits under the padding) are refused.
    if ((pad == 1 && (bits & 0xff) != 0) || (pad == 2 && (bits & 0xffff) != 0)) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(bits >> 16));
    if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(bits & 0xff));
  }
  return out;
}

std::string EncodeBase64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t b = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) b |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) b |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out.push_back(kAlphabet[(b >> 18) & 63]);
    out.push_back(kAlphabet[(b >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(b >> 6) & 63] : '=');
    out.push_back(i + 2 < in.size() ? kAlphabet[b & 63] : '=');
  }
  return out;
}

std::optional<std::string> DecodeXtext(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;  // RFC 3461: upper-case HEXCHAR
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      if (i + 2 >= in.size()) return std::nullopt;
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (static_cast<unsigned char>(c) >= 33 && static_cast<unsigned char>(c) <= 126 &&
               c != '=') {
      out.push_back(c);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace mailgrid::smtp
