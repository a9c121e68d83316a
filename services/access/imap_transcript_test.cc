// Scripted IMAP sessions in the spirit of Dovecot's imaptest and James' MPT
// scripts: testdata/imap/NAME.in is the client's side plus setup
// directives, NAME.ref the exact server output (every untagged and tagged
// response), run against ImapSession over the in-memory FakeMailstore.
// Format: testdata/imap/README.md. MAILGRID_UPDATE_GOLDEN=1 rewrites .ref.
// Each script also runs byte by byte; both runs must produce the same bytes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/testing/transcript.h"
#include "services/access/fake_backend.h"
#include "services/access/fetch_cache.h"
#include "services/access/imap_session.h"

namespace mailgrid::access {
namespace {

namespace fs = std::filesystem;

std::string Unescape(std::string_view s, bool* no_crlf) {
  return mailgrid::testing::UnescapeTranscript(s, no_crlf, mailgrid::testing::UnknownEscape::kKeep);
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
  enum Kind {
    kRead,
    kDeliver,
    kFailNext,
    kLoseReply,
    kAuthFailNext,
    kTimeout,
    kShutdown,
    kTls,
    kStore,
    kExpunge
  } kind = kRead;
  std::string a, b, c;
};

struct Script {
  ImapConfig config;
  std::vector<Step> setup;  // deliveries before the session starts
  std::vector<Step> steps;
  bool shared = false;
};

absl::Status StatusFromName(const std::string& n) {
  if (n == "unavailable") return absl::UnavailableError("down");
  if (n == "not_found") return absl::NotFoundError("gone");
  if (n == "quota") return absl::ResourceExhaustedError("quota");
  if (n == "throttled") return absl::ResourceExhaustedError("throttled");
  return absl::InternalError(n);
}

Script ParseScript(const std::string& text) {
  Script s;
  s.config.hostname = "imap.example.test";
  s.config.tls_active = true;
  std::istringstream in(text);
  std::string line;
  bool in_group = false, started = false;
  while (std::getline(in, line)) {
    if (line.rfind("##", 0) == 0) continue;
    if (line.rfind("#", 0) != 0) {
      bool no_crlf = false;
      std::string bytes = Unescape(line, &no_crlf);
      if (!no_crlf) bytes += "\r\n";
      if (!in_group) s.steps.push_back(Step{});
      s.steps.back().a += bytes;
      started = true;
      continue;
    }
    size_t sp = line.find(' ');
    std::string word = line.substr(1, sp == std::string::npos ? std::string::npos : sp - 1);
    std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (word == "config") {
      std::istringstream a(arg);
      std::string kv;
      while (a >> kv) {
        if (kv == "tls=0")
          s.config.tls_active = false;
        else if (kv == "plaintext_auth=1")
          s.config.plaintext_auth = true;
        else if (kv == "starttls=0")
          s.config.starttls_offered = false;
        else if (kv == "shared=1")
          s.shared = true;
        else
          ADD_FAILURE() << "unknown config " << kv;
      }
    } else if (word == "begin") {
      in_group = true;
      s.steps.push_back(Step{});
    } else if (word == "end") {
      in_group = false;
    } else if (word == "deliver") {
      // #deliver MAILBOX FOLDER FLAGS(comma list or -) CONTENT
      std::istringstream a(arg);
      Step st{Step::kDeliver};
      std::string flags, content;
      a >> st.a >> st.b >> flags;
      std::getline(a, content);
      bool ignored;
      st.c = Unescape(content.substr(1), &ignored);
      st.kind = Step::kDeliver;
      Step& target = (started ? s.steps : s.setup).emplace_back(st);
      target.a = st.a + "\t" + flags;
    } else if (word == "store" || word == "expunge") {
      // #store MAILBOX FOLDER UID FLAGS / #expunge MAILBOX FOLDER UID: another
      // client's change (FLAGS: comma list or -).
      std::istringstream a(arg);
      Step st{word == "store" ? Step::kStore : Step::kExpunge};
      std::string uid;
      a >> st.a >> st.b >> uid >> st.c;
      st.a += "\t" + uid;
      s.steps.push_back(st);
    } else if (word == "fail-next") {
      s.steps.push_back(Step{Step::kFailNext, arg});
    } else if (word == "lose-reply") {
      s.steps.push_back(Step{Step::kLoseReply, arg});
    } else if (word == "auth-fail-next") {
      s.steps.push_back(Step{Step::kAuthFailNext, arg});
    } else if (word == "timeout") {
      s.steps.push_back(Step{Step::kTimeout});
    } else if (word == "shutdown") {
      s.steps.push_back(Step{Step::kShutdown});
    } else if (word == "tls") {
      s.steps.push_back(Step{Step::kTls});
    } else {
      ADD_FAILURE() << "unknown directive " << line;
    }
  }
  return s;
}

void DoDeliver(FakeMailstore& store, const Step& st) {
  std::string mailbox = st.a.substr(0, st.a.find('\t'));
  std::string flags_text = st.a.substr(st.a.find('\t') + 1);
  std::vector<std::string> flags;
  if (flags_text != "-") {
    std::stringstream f(flags_text);
    std::string one;
    while (std::getline(f, one, ',')) flags.push_back(one);
  }
  store.Deliver(mailbox, st.b, st.c, flags);
}

// The transcripts' user: user@example.test, owning mailbox mbx-user.
Principal UserWithOwnMailbox() {
  Principal p;
  p.address = "user@example.test";
  p.authorization = "Bearer user-token";
  common::v1::MailboxAccess own;
  own.set_mailbox_id("mbx-user");
  own.set_address("user@example.test");
  p.mailboxes.push_back(own);
  return p;
}

std::string RunScript(const Script& script, bool byte_by_byte, FetchCache* cache = nullptr) {
  FakeAuthenticator auth;
  FakeMailstore store;
  store.AddMailbox("mbx-user");
  Principal p = UserWithOwnMailbox();
  if (script.shared) {
    store.AddMailbox("mbx-support");
    common::v1::MailboxAccess seat;
    seat.set_mailbox_id("mbx-support");
    seat.set_address("support@example.test");
    seat.set_kind(common::v1::MAILBOX_KIND_SHARED);
    p.mailboxes.push_back(seat);
  }
  auth.AddUser("user", "secret", p);
  auth.AddToken("tok", "user");
  for (const Step& st : script.setup) DoDeliver(store, st);

  ImapConfig config = script.config;
  config.fetch_cache = cache;
  ImapSession s(config, &auth, &store);
  std::string out;
  s.Start();
  out += s.TakeOutput();
  for (const Step& st : script.steps) {
    switch (st.kind) {
      case Step::kRead:
        if (byte_by_byte) {
          for (char c : st.a) s.Feed(std::string_view(&c, 1));
        } else {
          s.Feed(st.a);
        }
        break;
      case Step::kDeliver:
        DoDeliver(store, st);
        break;
      case Step::kStore:
      case Step::kExpunge: {
        std::string mailbox = st.a.substr(0, st.a.find('\t'));
        uint32_t uid = static_cast<uint32_t>(std::stoul(st.a.substr(st.a.find('\t') + 1)));
        if (st.kind == Step::kExpunge) {
          store.ExternalExpunge(mailbox, st.b, uid);
          break;
        }
        std::vector<std::string> flags;
        std::stringstream f(st.c == "-" ? "" : st.c);
        std::string one;
        while (std::getline(f, one, ',')) flags.push_back(one);
        store.ExternalStore(mailbox, st.b, uid, flags);
        break;
      }
      case Step::kFailNext: {
        // "#fail-next quota" or "#fail-next 3 quota" (after 3 good calls).
        size_t sp = st.a.find(' ');
        if (sp == std::string::npos) {
          store.FailNext(StatusFromName(st.a));
        } else {
          store.FailNth(std::stoi(st.a.substr(0, sp)), StatusFromName(st.a.substr(sp + 1)));
        }
        break;
      }
      case Step::kLoseReply: {
        // "#lose-reply 3 unavailable": the call after 3 good ones does its
        // work, then answers UNAVAILABLE.
        size_t sp = st.a.find(' ');
        store.LoseNthReply(std::stoi(st.a.substr(0, sp)), StatusFromName(st.a.substr(sp + 1)));
        break;
      }
      case Step::kAuthFailNext:
        auth.FailNext(StatusFromName(st.a));
        break;
      case Step::kTimeout:
        s.Timeout();
        break;
      case Step::kShutdown:
        s.Shutdown();
        break;
      case Step::kTls:
        if (s.TakeStartTls()) {
          s.TlsEstablished();
          out += "[tls]\r\n";
        }
        break;
    }
    out += s.TakeOutput();
  }
  std::string r = Render(out);
  if (s.closed()) r += "[closed]\n";
  if (store.watchers() != 0 && s.closed()) r += "[watch leaked]\n";
  return r;
}

TEST(ImapTranscript, AllScripts) {
  fs::path dir(MAILGRID_ACCESS_IMAP_SCRIPTS);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".in") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  uint64_t cache_hits = 0;
  for (const fs::path& in : files) {
    SCOPED_TRACE(in.filename().string());
    Script script = ParseScript(mailgrid::testing::ReadFile(in));
    std::string got = RunScript(script, false);
    EXPECT_EQ(got, RunScript(script, true)) << "byte-by-byte replay differs";
    // With the FetchCache (fresh, and a tiny one that evicts all the time)
    // every answer must be the same bytes as straight from the store.
    FetchCache cache(FetchCache::Limits{});
    EXPECT_EQ(got, RunScript(script, false, &cache)) << "with the fetch cache differs";
    cache_hits += cache.stats().hits;
    FetchCache::Limits tiny;
    tiny.message_bytes = 2000;
    tiny.flag_messages = 3;
    FetchCache small(tiny);
    EXPECT_EQ(got, RunScript(script, false, &small)) << "with a tiny fetch cache differs";
    fs::path ref = in;
    ref.replace_extension(".ref");
    if (std::getenv("MAILGRID_UPDATE_GOLDEN") != nullptr) {
      std::ofstream(ref, std::ios::binary) << got;
      continue;
    }
    EXPECT_EQ(got, mailgrid::testing::ReadFile(ref));
  }
  EXPECT_GE(files.size(), 5u);
  EXPECT_GT(cache_hits, 5u) << "the scripts never reached the cache";
}

// The one place where the cache is visible, by design: the FETCH right
// after a SELECT reads the flags that SELECT's own mailstored call brought
// into the cache, so another client's change in between shows at the next
// command (as with Dovecot, whose view is synced at the end of a command),
// not in that FETCH. Without a cache mailstored answers it, with the change.
TEST(ImapTranscript, FetchRightAfterSelectShowsTheSelectsFlags) {
  Script script = ParseScript(
      "#deliver mbx-user INBOX - Subject: one\\r\\n\\r\\nbody\\r\\n\n"
      "a1 LOGIN user secret\n"
      "a2 SELECT INBOX\n"
      "a3 FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])\n"
      "a4 SELECT INBOX\n"
      "#store mbx-user INBOX 1 \\Seen\n"
      "a5 FETCH 1 (FLAGS)\n"
      "a6 FETCH 1 (FLAGS)\n"
      "a7 LOGOUT\n");
  auto answer = [](const std::string& out, const std::string& tag) {
    size_t end = out.find("\n" + tag + " OK");
    size_t begin = out.rfind(" OK", end - 1);
    begin = out.find('\n', begin) + 1;
    return out.substr(begin, end + 1 - begin);
  };
  std::string plain = RunScript(script, false);
  EXPECT_EQ(answer(plain, "a5"), "* 1 FETCH (FLAGS (\\Seen))\n") << plain;
  EXPECT_EQ(answer(plain, "a6"), "* 1 FETCH (FLAGS (\\Seen))\n") << plain;
  FetchCache cache(FetchCache::Limits{});
  std::string cached = RunScript(script, false, &cache);
  EXPECT_EQ(answer(cached, "a5"), "* 1 FETCH (FLAGS ())\n") << cached;
  EXPECT_EQ(answer(cached, "a6"), "* 1 FETCH (FLAGS (\\Seen))\n") << cached;
}

// IDLE: another client's flag change reaches every idling session from the
// Watch event itself (it carries the flags), not from one ChangesSince per
// session, and the next NOOP does not report it again.
TEST(ImapTranscript, IdleFlagChangesNeedNoCallPerSession) {
  FakeAuthenticator auth;
  FakeMailstore store;
  store.AddMailbox("mbx-user");
  Principal p = UserWithOwnMailbox();
  auth.AddUser("user", "secret", p);
  store.Deliver("mbx-user", "INBOX", "Subject: one\r\n\r\n1\r\n");
  store.Deliver("mbx-user", "INBOX", "Subject: two\r\n\r\n2\r\n");
  ImapConfig config;
  config.plaintext_auth = true;
  std::vector<std::unique_ptr<ImapSession>> sessions;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(std::make_unique<ImapSession>(config, &auth, &store));
    sessions.back()->Start();
    sessions.back()->Feed("a1 LOGIN user secret\r\na2 SELECT INBOX\r\na3 IDLE\r\n");
    std::string out = sessions.back()->TakeOutput();
    ASSERT_NE(out.find("+ idling"), std::string::npos) << out;
  }
  size_t calls = store.changes_since_calls();
  store.ExternalStore("mbx-user", "INBOX", 2, {"\\Flagged"});
  EXPECT_EQ(store.changes_since_calls(), calls);
  for (auto& s : sessions) {
    std::string out = s->TakeOutput();
    EXPECT_NE(out.find("* 2 FETCH (FLAGS (\\Flagged"), std::string::npos) << out;
    s->Feed("DONE\r\na4 NOOP\r\n");
    out = s->TakeOutput();
    EXPECT_EQ(out.find("FETCH"), std::string::npos) << out;
    EXPECT_NE(out.find("a4 OK"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace mailgrid::access
