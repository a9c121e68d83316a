// Golden POP3 transcripts: testdata/transcripts/NAME.in is the client's side
// of a session plus the driver's script, NAME.ref the exact server output
// (format in testdata/transcripts/README.md). Each runs fed read by read and
// again byte by byte; both must give the same output.
// MAILGRID_UPDATE_GOLDEN=1 rewrites the .ref files.
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/pop3/session.h"
#include "libs/testing/transcript.h"

namespace mailgrid::pop3 {
namespace {

namespace fs = std::filesystem;

std::string Unescape(std::string_view s, bool* no_crlf) {
  return mailgrid::testing::UnescapeTranscript(s, no_crlf,
                                               mailgrid::testing::UnknownEscape::kDropBackslash);
}

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

struct Step {
  enum Kind { kRead, kShutdown, kTimeout } kind = kRead;
  std::string bytes;
};

struct Script {
  SessionConfig config;
  std::vector<Step> steps;
  std::vector<std::pair<MaildropEntry, std::string>> messages;
  std::deque<std::string> decisions;  // "reject-auth", "temp-auth", "fail-retrieve", ...
  std::string expected_commit = "-";  // deleted UIDs joined by ","; "-": no commit
  bool no_split = false;  // skip the byte-by-byte replay (STLS injection)
};

void ApplyConfig(const std::string& args, SessionConfig* c) {
  std::istringstream ss(args);
  std::string kv;
  while (ss >> kv) {
    size_t eq = kv.find('=');
    ASSERT_NE(eq, std::string::npos) << kv;
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    bool b = v == "1";
    if (k == "tls") c->tls_active = b;
    else if (k == "stls") c->stls_offered = b;
    else if (k == "auth_requires_tls") c->auth_requires_tls = b;
    else if (k == "max_line_length") c->max_line_length = std::stoul(v);
    else if (k == "max_errors") c->max_errors = std::stoul(v);
    else if (k == "hostname") c->hostname = v;
    else FAIL() << "unknown config key " << k;
  }
}

Script ParseScript(const std::string& text) {
  Script s;
  s.config.hostname = "pop.example.test";
  std::istringstream in(text);
  std::string line;
  bool in_group = false;
  while (std::getline(in, line)) {
    if (line.rfind("##", 0) == 0) continue;
    if (line.rfind("#", 0) != 0) {
      bool no_crlf = false;
      std::string bytes = Unescape(line, &no_crlf);
      if (!no_crlf) bytes += "\r\n";
      if (!in_group) s.steps.push_back(Step{});
      s.steps.back().bytes += bytes;
      continue;
    }
    size_t sp = line.find(' ');
    std::string word = line.substr(1, sp == std::string::npos ? std::string::npos : sp - 1);
    std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (word == "config") {
      ApplyConfig(arg, &s.config);
    } else if (word == "begin") {
      in_group = true;
      s.steps.push_back(Step{});
    } else if (word == "end") {
      in_group = false;
    } else if (word == "message") {
      // #message UID UIDL CONTENT
      std::istringstream a(arg);
      MaildropEntry e;
      std::string content;
      a >> e.uid >> e.uidl;
      std::getline(a, content);
      bool ignored;
      std::string raw = Unescape(content.substr(1), &ignored);
      e.size = raw.size();
      s.messages.push_back({e, raw});
    } else if (word == "shutdown") {
      s.steps.push_back(Step{Step::kShutdown, ""});
    } else if (word == "timeout") {
      s.steps.push_back(Step{Step::kTimeout, ""});
    } else if (word == "expect-commit") {
      s.expected_commit = arg;
    } else if (word == "no-split") {
      s.no_split = true;
    } else if (word == "decide") {
      s.decisions.push_back(arg);
    } else {
      ADD_FAILURE() << "unknown directive " << line;
    }
  }
  return s;
}

// The default driver: one account (user / secret, or bearer "tok"), the
// #message maildrop, commits succeed. #decide overrides the next decision:
// reject-stls, reject-auth, temp-auth, in-use, fail-retrieve, fail-commit.
class Driver {
 public:
  Driver(Session* s, const Script& script) : s_(s), script_(script), decisions_(script.decisions) {}

  void Drain() {
    for (;;) {
      Event e = s_->Next();
      if (std::holds_alternative<event::NeedInput>(e) || std::holds_alternative<event::Closed>(e)) {
        return;
      }
      ASSERT_FALSE(std::holds_alternative<event::AwaitingDecision>(e));
      Decide(e);
    }
  }

  std::string commit = "-";

 private:
  bool Override(std::string_view what) {
    if (!decisions_.empty() && decisions_.front() == what) {
      decisions_.pop_front();
      return true;
    }
    return false;
  }

  void Decide(const Event& e) {
    absl::Status st;
    if (std::holds_alternative<event::StartTls>(e)) {
      st = Override("reject-stls") ? s_->RejectStartTls("TLS not available")
                                   : s_->AcceptStartTls();
    } else if (auto* a = std::get_if<event::Authenticate>(&e)) {
      const imap::SaslCredentials& c = a->credentials;
      bool good = (c.authcid == "user" && c.password == "secret") ||
                  (!c.bearer_token.empty() && c.bearer_token == "tok");
      if (Override("temp-auth")) {
        st = s_->RejectAuth(true, "Authentication service unavailable");
      } else if (Override("in-use")) {
        st = s_->RejectAuthInUse();
      } else if (Override("reject-auth") || !good) {
        st = s_->RejectAuth(false, "Authentication failed");
      } else {
        std::vector<MaildropEntry> drop;
        for (const auto& [m, raw] : script_.messages) drop.push_back(m);
        st = s_->AcceptAuth(std::move(drop));
      }
    } else if (auto* r = std::get_if<event::Retrieve>(&e)) {
      if (Override("fail-retrieve")) {
        st = s_->FailRetrieve("Message store unavailable");
      } else {
        std::string raw;
        for (const auto& [m, content] : script_.messages) {
          if (m.uid == r->uid) raw = content;
        }
        st = s_->Deliver(raw);
      }
    } else if (auto* c = std::get_if<event::Commit>(&e)) {
      commit.clear();
      for (uint32_t uid : c->deleted_uids) {
        if (!commit.empty()) commit += ",";
        commit += std::to_string(uid);
      }
      st = s_->CommitDone(Override("fail-commit") ? absl::UnavailableError("down")
                                                  : absl::OkStatus());
    }
    ASSERT_TRUE(st.ok()) << st;
  }

  Session* s_;
  const Script& script_;
  std::deque<std::string> decisions_;
};

std::string RunScript(const Script& script, bool byte_by_byte, std::string* commit) {
  Session s(script.config);
  Driver d(&s, script);
  std::string out;
  s.Start();
  out += s.TakeOutput();
  for (const Step& step : script.steps) {
    if (step.kind == Step::kShutdown) {
      s.Shutdown();
    } else if (step.kind == Step::kTimeout) {
      s.Timeout();
    } else if (byte_by_byte) {
      for (char c : step.bytes) {
        s.Feed(std::string_view(&c, 1));
        d.Drain();
      }
    } else {
      s.Feed(step.bytes);
      d.Drain();
    }
    out += s.TakeOutput();
  }
  out += s.TakeOutput();
  std::string r = Render(out);
  if (s.closed()) r += "[closed]\n";
  *commit = d.commit;
  return r;
}

fs::path Dir() { return fs::path(MAILGRID_POP3_TRANSCRIPTS); }

TEST(Pop3Transcript, AllGolden) {
  int cases = 0;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(Dir())) {
    if (entry.path().extension() == ".in") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& in : files) {
    SCOPED_TRACE(in.filename().string());
    ++cases;
    Script script = ParseScript(mailgrid::testing::ReadFile(in));
    std::string commit1, commit2;
    std::string got = RunScript(script, false, &commit1);
    if (!script.no_split) {
      std::string got_bytes = RunScript(script, true, &commit2);
      EXPECT_EQ(got, got_bytes) << "byte-by-byte replay differs";
      EXPECT_EQ(commit2, script.expected_commit);
    }
    EXPECT_EQ(commit1, script.expected_commit);
    fs::path ref = in;
    ref.replace_extension(".ref");
    if (std::getenv("MAILGRID_UPDATE_GOLDEN") != nullptr) {
      std::ofstream(ref, std::ios::binary) << got;
      continue;
    }
    EXPECT_EQ(got, mailgrid::testing::ReadFile(ref));
  }
  EXPECT_GT(cases, 5);
}

}  // namespace
}  // namespace mailgrid::pop3
