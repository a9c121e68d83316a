// Golden transcript tests (the Postfix smtpd_token.in/.ref idea): every
// testdata/transcripts/NAME.in is a client's side of a session, NAME.ref the
// exact server output. Adding a pair adds a case. The format is described in
// testdata/transcripts/README.md. MAILGRID_UPDATE_GOLDEN=1 rewrites the .ref
// files (review the diff before committing it).
//
// Each transcript runs twice: reads fed whole, and the same reads fed one
// byte at a time with Next() drained after every byte; both must produce
// the same output and messages (parsing does not depend on how TCP split the
// stream). `#no-split` opts out (STARTTLS injection, where what was buffered
// at Accept time is exactly the point).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/testing/transcript.h"
#include "libs/smtp/session.h"

namespace mailgrid::smtp {
namespace {

namespace fs = std::filesystem;

fs::path TranscriptDir() { return fs::path(MAILGRID_SMTP_TRANSCRIPTS); }

std::string Unescape(std::string_view s, bool* no_crlf) {
  return mailgrid::testing::UnescapeTranscript(s, no_crlf, mailgrid::testing::UnknownEscape::kDropBackslash);
}

// Output for the .ref file: each CRLF becomes a newline; any other control
// byte is shown as \xHH (a well-behaved server never writes one).
std::string Render(std::string_view out) {
  std::string r;
  for (size_t i = 0; i < out.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(out[i]);
    if (c == '\r' && i + 1 < out.size() && out[i + 1] == '\n') {
      r.push_back('\n');
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      r += buf;
    } else {
      r.push_back(static_cast<char>(c));
    }
  }
  return r;
}

Reply ParseReplyArg(std::string_view s) {
  // "550 5.1.1 text..." (the status may be omitted for 3xx replies).
  Reply r;
  r.code = std::stoi(std::string(s.substr(0, 3)));
  std::string_view rest = s.size() > 4 ? s.substr(4) : "";
  size_t sp = rest.find(' ');
  std::string_view first = rest.substr(0, sp);
  if (IsValidEnhancedCode(first)) {
    r.enhanced = std::string(first);
    rest = sp == std::string_view::npos ? "" : rest.substr(sp + 1);
  }
  r.lines.emplace_back(rest);
  return r;
}

void ApplyConfig(std::string_view args, SessionConfig* c) {
  std::istringstream ss{std::string(args)};
  std::string kv;
  while (ss >> kv) {
    size_t eq = kv.find('=');
    ASSERT_NE(eq, std::string::npos) << kv;
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    bool b = v == "1" || v == "true" || v == "on";
    std::map<std::string, bool*> flags = {{"starttls", &c->starttls_offered},
                                          {"tls", &c->tls_active},
                                          {"auth", &c->auth_enabled},
                                          {"auth_requires_tls", &c->auth_requires_tls},
                                          {"require_tls", &c->require_tls_for_mail},
                                          {"require_auth", &c->require_auth_for_mail},
                                          {"vrfy", &c->vrfy_enabled},
                                          {"pipelining", &c->pipelining},
                                          {"size", &c->size},
                                          {"8bitmime", &c->eightbitmime},
                                          {"smtputf8", &c->smtputf8},
                                          {"chunking", &c->chunking},
                                          {"binarymime", &c->binarymime},
                                          {"dsn", &c->dsn},
                                          {"enhanced", &c->enhanced_status_codes}};
    if (auto it = flags.find(k); it != flags.end()) {
      *it->second = b;
    } else if (k == "hostname") {
      c->hostname = v;
    } else if (k == "mode") {
      *c = v == "submission" ? SessionConfig::Submission(c->hostname)
                             : SessionConfig::Mx(c->hostname);
    } else if (k == "max_message_size") {
      c->max_message_size = std::stoull(v);
    } else if (k == "max_recipients") {
      c->max_recipients = std::stoul(v);
    } else if (k == "max_command_line_length") {
      c->max_command_line_length = std::stoul(v);
    } else if (k == "max_auth_line_length") {
      c->max_auth_line_length = std::stoul(v);
    } else if (k == "max_errors") {
      c->max_errors = std::stoul(v);
    } else {
      FAIL() << "unknown config key " << k;
    }
  }
}

// One step of the script: a client read, or a directive applied between reads.
struct Step {
  enum Kind { kRead, kShutdown, kTimeout } kind = kRead;
  std::string bytes;
  // Queued driver decisions, keyed by event kind ("rcpt", "message", ...).
  std::vector<std::pair<std::string, std::optional<std::pair<bool, Reply>>>> decisions;
};

struct Script {
  SessionConfig config = SessionConfig::Mx("mx.example.test");
  std::vector<Step> steps;
  std::vector<std::string> expected_messages;
  bool no_split = false;
};

Script ParseScript(const std::string& text) {
  Script s;
  std::istringstream in(text);
  std::string line;
  bool in_group = false;
  std::vector<std::pair<std::string, std::optional<std::pair<bool, Reply>>>> queued;
  auto new_read = [&] {
    s.steps.push_back(Step{Step::kRead, "", std::move(queued)});
    queued.clear();
  };
  while (std::getline(in, line)) {
    if (line.rfind("##", 0) == 0) continue;
    if (line.rfind("#", 0) != 0) {
      bool no_crlf = false;
      std::string bytes = Unescape(line, &no_crlf);
      if (!no_crlf) bytes += "\r\n";
      if (!in_group) new_read();
      s.steps.back().bytes += bytes;
      continue;
    }
    std::string word = line.substr(1, line.find(' ') - 1);
    std::string arg = line.find(' ') == std::string::npos ? "" : line.substr(line.find(' ') + 1);
    if (word == "config") {
      ApplyConfig(arg, &s.config);
    } else if (word == "begin") {
      in_group = true;
      new_read();
    } else if (word == "end") {
      in_group = false;
    } else if (word == "shutdown" || word == "timeout") {
      s.steps.push_back(
          Step{word == "shutdown" ? Step::kShutdown : Step::kTimeout, "", std::move(queued)});
      queued.clear();
    } else if (word == "expect-message") {
      bool ignored;
      s.expected_messages.push_back(Unescape(arg, &ignored));
    } else if (word == "no-split") {
      s.no_split = true;
    } else if (word.rfind("reject-", 0) == 0) {
      queued.push_back({word.substr(7), std::make_pair(false, ParseReplyArg(arg))});
    } else if (word.rfind("accept-", 0) == 0) {
      queued.push_back(
          {word.substr(7),
           arg.empty() ? std::nullopt : std::optional(std::make_pair(true, ParseReplyArg(arg)))});
    } else {
      ADD_FAILURE() << "unknown directive " << line;
    }
  }
  return s;
}

// The default driver: accepts everything except recipients at unknown.test;
// a queued #accept-/#reject- directive overrides the next decision of its
// kind. AUTH knows one account: user / secret (PLAIN and LOGIN).
class Driver {
 public:
  explicit Driver(ServerSession* s) : s_(s) {}

  void Queue(const Step& step) {
    for (const auto& [kind, d] : step.decisions) queued_[kind].push_back(d);
  }

  void Drain() {
    while (true) {
      Event e = s_->Next();
      if (std::holds_alternative<event::NeedInput>(e) || std::holds_alternative<event::Closed>(e)) {
        return;
      }
      ASSERT_FALSE(std::holds_alternative<event::AwaitingDecision>(e));
      if (NeedsDecision(e)) Decide(e);
    }
  }

  std::vector<std::string> messages;

 private:
  static std::string Kind(const Event& e) {
    static const std::map<std::string_view, std::string> kKinds = {
        {"Greeting", "greeting"}, {"Helo", "helo"},      {"MailFrom", "mail"},
        {"RcptTo", "rcpt"},       {"DataBegin", "data"}, {"MessageComplete", "message"},
        {"StartTls", "starttls"}, {"Auth", "auth"},      {"AuthResponse", "auth"},
        {"Vrfy", "vrfy"}};
    return kKinds.at(EventName(e));
  }

  void Decide(const Event& e) {
    auto& q = queued_[Kind(e)];
    if (!q.empty()) {
      std::optional<std::pair<bool, Reply>> d = q.front();
      q.pop_front();
      absl::Status st = !d         ? s_->Accept()
                        : d->first ? s_->Accept(d->second)
                                   : s_->Reject(d->second);
      ASSERT_TRUE(st.ok()) << st;
      if (auto* m = std::get_if<event::MessageComplete>(&e); m && (!d || d->first)) {
        messages.push_back(m->message);
      }
      return;
    }
    absl::Status st;
    if (auto* r = std::get_if<event::RcptTo>(&e)) {
      st = r->forward_path.NormalizedDomain() == "unknown.test"
               ? s_->Reject(Reply::Make(550, "5.1.1",
                                        "<" + r->forward_path.Mailbox() +
                                            ">: Recipient address rejected: User unknown"))
               : s_->Accept();
    } else if (auto* m = std::get_if<event::MessageComplete>(&e)) {
      messages.push_back(m->message);
      st = s_->Accept(
          Reply::Make(250, "2.0.0", "Ok: queued as M" + std::to_string(messages.size())));
    } else if (auto* a = std::get_if<event::Auth>(&e)) {
      mech_ = a->mechanism;
      login_step_ = 0;
      if (a->initial_response) {
        st = Credential(*a->initial_response);
      } else {
        st = s_->Challenge(mech_ == "LOGIN" ? "Username:" : "");
      }
    } else if (auto* r = std::get_if<event::AuthResponse>(&e)) {
      st = Credential(r->response);
    } else {
      st = s_->Accept();
    }
    ASSERT_TRUE(st.ok()) << st;
  }

  absl::Status Credential(const std::string& data) {
    if (mech_ == "PLAIN") {
      return data == std::string("\0user\0secret", 12)
                 ? s_->Accept()
                 : s_->Reject(Reply::Make(535, "5.7.8", "Error: authentication failed"));
    }
    if (login_step_++ == 0) {
      user_ = data;
      return s_->Challenge("Password:");
    }
    return user_ == "user" && data == "secret"
               ? s_->Accept()
               : s_->Reject(Reply::Make(535, "5.7.8", "Error: authentication failed"));
  }

  ServerSession* s_;
  std::map<std::string, std::deque<std::optional<std::pair<bool, Reply>>>> queued_;
  std::string mech_, user_;
  int login_step_ = 0;
};

struct RunResult {
  std::string output;
  std::vector<std::string> messages;
};

RunResult RunScript(const Script& script, bool split) {
  ServerSession session(script.config);
  Driver driver(&session);
  RunResult r;
  // The greeting is the first event of the first Drain(), after the first
  // step's decisions (#reject-greeting) are queued.
  for (const Step& step : script.steps) {
    driver.Queue(step);
    if (step.kind == Step::kShutdown) session.Shutdown();
    if (step.kind == Step::kTimeout) session.Timeout();
    if (step.kind == Step::kRead) {
      if (split) {
        for (char c : step.bytes) {
          session.Feed(std::string_view(&c, 1));
          driver.Drain();
        }
      } else {
        session.Feed(step.bytes);
      }
    }
    driver.Drain();
    r.output += session.TakeOutput();
  }
  driver.Drain();
  r.output += session.TakeOutput();
  r.output = Render(r.output);
  if (session.closed()) r.output += "[closed]\n";
  r.messages = driver.messages;
  return r;
}

std::vector<std::string> ListTranscripts() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(TranscriptDir())) {
    if (entry.path().extension() == ".in") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class TranscriptTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TranscriptTest, MatchesGolden) {
  fs::path in = TranscriptDir() / (GetParam() + ".in");
  fs::path ref = TranscriptDir() / (GetParam() + ".ref");
  Script script = ParseScript(mailgrid::testing::ReadFile(in));
  ASSERT_TRUE(ValidateConfig(script.config).ok());
  RunResult whole = RunScript(script, false);

  const char* update = std::getenv("MAILGRID_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(ref, std::ios::binary) << whole.output;
  }
  ASSERT_TRUE(fs::exists(ref)) << ref << " missing; run with MAILGRID_UPDATE_GOLDEN=1";
  EXPECT_EQ(whole.output, testing::ReadFile(ref));
  EXPECT_EQ(whole.messages, script.expected_messages)
      << "accepted messages differ from the #expect-message lines";

  if (!script.no_split) {
    RunResult split = RunScript(script, true);
    EXPECT_EQ(split.output, whole.output) << "byte-at-a-time feeding changed the output";
    EXPECT_EQ(split.messages, whole.messages);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, TranscriptTest, ::testing::ValuesIn(ListTranscripts()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(TranscriptCorpus, HasEnoughCases) { EXPECT_GE(ListTranscripts().size(), 25u); }

}  // namespace
}  // namespace mailgrid::smtp
