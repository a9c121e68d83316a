// Pop3Session: one handler per command (RFC 1939 §4-7, RFC 2449, RFC 2595,
// RFC 5034).
#include <string>

#include "libs/imap/base64.h"
#include "libs/pop3/session.h"

namespace mailgrid::pop3 {
namespace {

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// A decimal number without sign; at most 10 digits and <= 2^32-1 (message
// numbers) or any uint64 for TOP's line count.
std::optional<uint64_t> ParseNumber(std::string_view s, uint64_t max) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return std::nullopt;
  return v;
}

// Splits "a b" at the first space; RFC 1939 separates arguments by one
// space, we accept several.
std::pair<std::string_view, std::string_view> SplitArg(std::string_view s) {
  size_t sp = s.find(' ');
  if (sp == std::string_view::npos) return {s, {}};
  std::string_view rest = s.substr(sp + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return {s.substr(0, sp), rest};
}

constexpr std::string_view kLoginUserPrompt = "VXNlcm5hbWU6";  // "Username:"
constexpr std::string_view kLoginPassPrompt = "UGFzc3dvcmQ6";  // "Password:"

}  // namespace

std::optional<Event> Session::Dispatch(std::string_view line) {
  auto [verb_raw, args] = SplitArg(line);
  // Trailing spaces are a common client habit; they carry nothing.
  while (!args.empty() && args.back() == ' ') args.remove_suffix(1);
  std::string verb = Upper(verb_raw);
  if (verb.empty() || verb.size() > 4) {
    Err("", "Unknown command");
    return std::nullopt;
  }
  if (verb == "CAPA") {
    OnCapa();
    return std::nullopt;
  }
  if (verb == "QUIT") return OnQuit();
  if (state_ == State::kTransaction) return OnTransaction(verb, args);

  // AUTHORIZATION.
  if (verb == "USER") return OnUser(args);
  if (verb == "PASS") return OnPass(args);
  if (verb == "AUTH") return OnAuth(args);
  if (verb == "STLS") {
    if (config_.tls_active) {
      Err("", "Already in TLS");
    } else if (!config_.stls_offered) {
      Err("", "STLS not available");
    } else if (!args.empty()) {
      Err("", "STLS takes no argument");
    } else {
      pending_ = Pending::kStartTls;
      return event::StartTls{};
    }
    return std::nullopt;
  }
  if (verb == "APOP") {
    Err("", "APOP not supported");
    return std::nullopt;
  }
  static constexpr std::string_view kTransactionOnly[] = {"STAT", "LIST", "RETR", "DELE",
                                                          "NOOP", "RSET", "TOP",  "UIDL"};
  for (std::string_view v : kTransactionOnly) {
    if (verb == v) {
      Err("", "Not logged in");
      return std::nullopt;
    }
  }
  Err("", "Unknown command");
  return std::nullopt;
}

void Session::OnCapa() {
  Ok("Capability list follows");
  Line("TOP");
  Line("UIDL");
  Line("RESP-CODES");
  Line("AUTH-RESP-CODE");
  Line("PIPELINING");
  if (state_ == State::kAuthorization) {
    if (AuthAllowed()) {
      Line("USER");
      std::string sasl = "SASL";
      for (imap::SaslMechanism m : config_.sasl_mechanisms) {
        sasl += ' ';
        sasl += imap::SaslMechanismName(m);
      }
      if (!config_.sasl_mechanisms.empty()) Line(sasl);
    }
    if (config_.stls_offered && !config_.tls_active) Line("STLS");
  }
  if (!config_.expire.empty()) Line("EXPIRE " + config_.expire);
  Line("IMPLEMENTATION " + config_.implementation);
  Line(".");
}

std::optional<Event> Session::OnUser(std::string_view args) {
  if (!AuthAllowed()) {
    Err("AUTH", "Plaintext authentication disallowed on non-secure connections");
    return std::nullopt;
  }
  if (args.empty() || args.size() > 255) {
    Err("", "USER needs a name");
    return std::nullopt;
  }
  user_ = std::string(args);
  have_user_ = true;
  Ok("");
  return std::nullopt;
}

std::optional<Event> Session::OnPass(std::string_view args) {
  if (!AuthAllowed()) {
    Err("AUTH", "Plaintext authentication disallowed on non-secure connections");
    return std::nullopt;
  }
  if (!have_user_) {
    Err("", "USER first");
    return std::nullopt;
  }
  if (args.empty()) {
    have_user_ = false;
    Err("AUTH", "Authentication failed");
    return std::nullopt;
  }
  event::Authenticate a;
  a.via_user_pass = true;
  a.credentials.mechanism = imap::SaslMechanism::kPlain;
  a.credentials.authcid = user_;
  a.credentials.password = std::string(args);
  pending_ = Pending::kAuth;
  return a;
}

std::optional<Event> Session::OnAuth(std::string_view args) {
  if (!AuthAllowed()) {
    Err("AUTH", "Authentication disallowed on non-secure connections");
    return std::nullopt;
  }
  if (args.empty()) {
    // The pre-CAPA form some clients still send: list the mechanisms.
    Ok("");
    for (imap::SaslMechanism m : config_.sasl_mechanisms) Line(imap::SaslMechanismName(m));
    Line(".");
    return std::nullopt;
  }
  auto [mech_name, initial] = SplitArg(args);
  std::optional<imap::SaslMechanism> mech = imap::ParseSaslMechanism(Upper(mech_name));
  bool offered = false;
  for (imap::SaslMechanism m : config_.sasl_mechanisms) offered |= mech && m == *mech;
  if (!offered) {
    Err("", "Unsupported authentication mechanism");
    return std::nullopt;
  }
  sasl_ = *mech;
  sasl_step_ = 0;
  login_user_.clear();
  if (initial.empty()) {
    Line(*mech == imap::SaslMechanism::kLogin ? std::string("+ ") + std::string(kLoginUserPrompt)
                                              : std::string("+ "));
    return std::nullopt;
  }
  // RFC 5034 §4: "=" is an empty initial response.
  std::string decoded;
  if (initial != "=") {
    absl::StatusOr<std::string> d = imap::DecodeBase64(initial);
    if (!d.ok()) {
      sasl_.reset();
      Err("", "Invalid BASE64 in initial response");
      return std::nullopt;
    }
    decoded = *std::move(d);
  }
  return SaslStep(decoded);
}

std::optional<Event> Session::OnSaslLine(std::string_view line) {
  if (line == "*") {
    sasl_.reset();
    Err("", "Authentication cancelled");
    return std::nullopt;
  }
  absl::StatusOr<std::string> d = imap::DecodeBase64(line);
  if (!d.ok()) {
    sasl_.reset();
    Err("", "Invalid BASE64 in response");
    return std::nullopt;
  }
  return SaslStep(*d);
}

std::optional<Event> Session::SaslStep(std::string_view decoded) {
  imap::SaslMechanism mech = *sasl_;
  if (mech == imap::SaslMechanism::kLogin && sasl_step_ == 0) {
    if (decoded.empty() || decoded.find('\0') != std::string_view::npos) {
      sasl_.reset();
      Err("AUTH", "Authentication failed");
      return std::nullopt;
    }
    login_user_ = std::string(decoded);
    sasl_step_ = 1;
    Line(std::string("+ ") + std::string(kLoginPassPrompt));
    return std::nullopt;
  }
  sasl_.reset();
  event::Authenticate a;
  if (mech == imap::SaslMechanism::kLogin) {
    if (decoded.empty() || decoded.find('\0') != std::string_view::npos) {
      Err("AUTH", "Authentication failed");
      return std::nullopt;
    }
    a.credentials.mechanism = mech;
    a.credentials.authcid = login_user_;
    a.credentials.password = std::string(decoded);
  } else {
    absl::StatusOr<imap::SaslCredentials> c = imap::DecodeSasl(mech, decoded);
    if (!c.ok()) {
      Err("AUTH", "Authentication failed");
      return std::nullopt;
    }
    a.credentials = *std::move(c);
  }
  user_ = a.credentials.authcid;
  pending_ = Pending::kAuth;
  return a;
}

// ---- TRANSACTION ----------------------------------------------------------

std::optional<Event> Session::OnTransaction(std::string_view verb, std::string_view args) {
  if (verb == "STAT") {
    if (!args.empty()) {
      Err("", "STAT takes no argument");
    } else {
      OnStat();
    }
  } else if (verb == "LIST" || verb == "UIDL") {
    OnList(args, verb == "UIDL");
  } else if (verb == "RETR") {
    return OnRetr(args, false);
  } else if (verb == "TOP") {
    return OnRetr(args, true);
  } else if (verb == "DELE") {
    OnDele(args);
  } else if (verb == "NOOP") {
    Ok("");
  } else if (verb == "RSET") {
    OnRset();
  } else if (verb == "USER" || verb == "PASS" || verb == "AUTH" || verb == "STLS" ||
             verb == "APOP") {
    Err("", "Already logged in");
  } else {
    Err("", "Unknown command");
  }
  return std::nullopt;
}

std::optional<uint32_t> Session::MessageArg(std::string_view arg) {
  std::optional<uint64_t> n = ParseNumber(arg, 0xffffffffu);
  if (!n) {
    Err("", "Invalid message number");
    return std::nullopt;
  }
  if (*n == 0 || *n > maildrop_.size()) {
    Err("", "No such message");
    return std::nullopt;
  }
  if (deleted_[*n - 1]) {
    Err("", "Message " + std::to_string(*n) + " already deleted");
    return std::nullopt;
  }
  return static_cast<uint32_t>(*n);
}

void Session::OnStat() {
  Ok(std::to_string(live_count_) + " " + std::to_string(live_size_));
}

void Session::OnList(std::string_view args, bool uidl) {
  auto value = [&](size_t i) {
    return uidl ? maildrop_[i].uidl : std::to_string(maildrop_[i].size);
  };
  if (!args.empty()) {
    if (args.find(' ') != std::string_view::npos) {
      Err("", "Too many arguments");
      return;
    }
    std::optional<uint32_t> n = MessageArg(args);
    if (!n) return;
    Ok(std::to_string(*n) + " " + value(*n - 1));
    return;
  }
  if (uidl) {
    Ok("Unique-ID listing follows");
  } else {
    Ok(std::to_string(live_count_) + " messages (" + std::to_string(live_size_) + " octets)");
  }
  for (size_t i = 0; i < maildrop_.size(); ++i) {
    if (!deleted_[i]) Line(std::to_string(i + 1) + " " + value(i));
  }
  Line(".");
}

std::optional<Event> Session::OnRetr(std::string_view args, bool top) {
  auto [first, rest] = SplitArg(args);
  if (first.empty() || (top ? rest.empty() || rest.find(' ') != std::string_view::npos
                            : !rest.empty())) {
    Err("", top ? "TOP needs a message number and a line count"
                : "RETR needs one message number");
    return std::nullopt;
  }
  std::optional<uint64_t> lines;
  if (top) {
    lines = ParseNumber(rest, UINT64_MAX / 2);
    if (!lines) {
      Err("", "Invalid line count");
      return std::nullopt;
    }
  }
  std::optional<uint32_t> n = MessageArg(first);
  if (!n) return std::nullopt;
  pending_ = Pending::kRetrieve;
  pending_top_ = lines;
  return event::Retrieve{*n, maildrop_[*n - 1].uid, lines};
}

void Session::OnDele(std::string_view args) {
  if (args.empty() || args.find(' ') != std::string_view::npos) {
    Err("", "DELE needs one message number");
    return;
  }
  std::optional<uint32_t> n = MessageArg(args);
  if (!n) return;
  deleted_[*n - 1] = true;
  --live_count_;
  live_size_ -= maildrop_[*n - 1].size;
  Ok("Message " + std::to_string(*n) + " deleted");
}

void Session::OnRset() {
  live_count_ = maildrop_.size();
  live_size_ = 0;
  for (size_t i = 0; i < maildrop_.size(); ++i) {
    deleted_[i] = false;
    live_size_ += maildrop_[i].size;
  }
  Ok("Maildrop has " + std::to_string(live_count_) + " messages (" + std::to_string(live_size_) +
     " octets)");
}

std::optional<Event> Session::OnQuit() {
  if (state_ != State::kTransaction) {
    Ok("Bye");
    Close();
    return std::nullopt;
  }
  event::Commit c;
  for (size_t i = 0; i < maildrop_.size(); ++i) {
    if (deleted_[i]) c.deleted_uids.push_back(maildrop_[i].uid);
  }
  state_ = State::kUpdate;
  stats_.deleted += c.deleted_uids.size();
  pending_ = Pending::kCommit;
  if (c.deleted_uids.empty()) {
    CommitDone(absl::OkStatus()).IgnoreError();  // nothing to expunge
    return std::nullopt;
  }
  return c;
}

}  // namespace mailgrid::pop3
