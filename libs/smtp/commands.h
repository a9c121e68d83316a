// Parsing of one SMTP command line (already stripped of its CRLF and known to
// hold no CR, LF, NUL or control byte): the verb, MAIL/RCPT with their ESMTP
// parameters (RFC 5321 §4.1.1, 1870 SIZE, 6152 8BITMIME, 3030 BINARYMIME,
// 6531 SMTPUTF8, 3461 DSN, 4954 AUTH=), BDAT and AUTH arguments. Pure
// functions; a malformed command yields the Reply to send instead of a value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "libs/smtp/path.h"
#include "libs/smtp/reply.h"

namespace mailgrid::smtp {

enum class Verb {
  kUnknown,
  kHelo,
  kEhlo,
  kMail,
  kRcpt,
  kData,
  kBdat,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kExpn,
  kHelp,
  kStartTls,
  kAuth,
  kHttp,  // GET/POST/HEAD/PUT/CONNECT: someone (or a browser trick) talks HTTP
};

struct CommandLine {
  Verb verb = Verb::kUnknown;
  std::string_view args;  // after the single SP that follows the verb
  bool has_args = false;
};

// Splits "VERB[ args]" (verbs case-insensitive; trailing blanks ignored, as
// Postfix does, for clients that pad their lines).
CommandLine SplitCommand(std::string_view line);

enum class BodyType { kUnspecified, k7Bit, k8BitMime, kBinaryMime };
enum class DsnReturn { kUnspecified, kFull, kHeaders };

// MAIL FROM parameters. Strings are xtext-decoded and hold printable
// characters only.
struct MailParams {
  std::optional<uint64_t> size;  // RFC 1870 SIZE=
  BodyType body = BodyType::kUnspecified;
  bool smtputf8 = false;                    // RFC 6531
  DsnReturn ret = DsnReturn::kUnspecified;  // RFC 3461 RET=
  std::optional<std::string> envid;         // RFC 3461 ENVID=
  std::optional<std::string> auth;          // RFC 4954 AUTH=: a mailbox or "<>"
  bool operator==(const MailParams&) const = default;
};

// RCPT TO parameters (RFC 3461).
struct RcptParams {
  bool notify_specified = false;
  bool notify_never = false;
  bool notify_success = false;
  bool notify_failure = false;
  bool notify_delay = false;
  std::optional<std::string> orcpt_type;     // "rfc822", "utf-8", ...
  std::optional<std::string> orcpt_address;  // xtext-decoded
  bool operator==(const RcptParams&) const = default;
};

// What the session advertised; parameters of extensions not offered are
// refused with 555 (RFC 5321 §4.1.1.11).
struct Extensions {
  bool esmtp = false;  // EHLO (not HELO) was used: parameters allowed at all
  bool size = true;
  uint64_t max_message_size = 0;
  bool eightbitmime = true;
  bool binarymime = false;
  bool smtputf8 = true;
  bool dsn = true;
  bool auth = false;
};

struct MailCommand {
  Path reverse_path;
  MailParams params;
};
struct RcptCommand {
  Path forward_path;
  RcptParams params;
};
struct BdatCommand {
  uint64_t size = 0;
  bool last = false;
};
struct AuthCommand {
  std::string mechanism;                        // upper-cased
  std::optional<std::string> initial_response;  // base64-decoded; "=" is ""
};

template <typename T>
using Parsed = std::variant<T, Reply>;

// args: "FROM:<path>[ params]".
Parsed<MailCommand> ParseMailCommand(std::string_view args, const Extensions& ext);
// args: "TO:<path>[ params]"; `smtputf8` is the transaction's MAIL SMTPUTF8.
Parsed<RcptCommand> ParseRcptCommand(std::string_view args, const Extensions& ext, bool smtputf8);
// args: "size[ LAST]" (RFC 3030).
Parsed<BdatCommand> ParseBdatCommand(std::string_view args);
// args: "mechanism[ initial-response]" (RFC 4954 §4).
Parsed<AuthCommand> ParseAuthCommand(std::string_view args);

// Strict base64 (RFC 4648 §4, padded, no whitespace); nullopt when invalid.
std::optional<std::string> DecodeBase64(std::string_view in);
std::string EncodeBase64(std::string_view in);
// RFC 3461 §4 xtext ("+HH" escapes); nullopt when invalid.
std::optional<std::string> DecodeXtext(std::string_view in);

}  // namespace mailgrid::smtp
