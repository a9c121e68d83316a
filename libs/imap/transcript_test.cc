// Golden transcript tests (the Postfix smtpd_token.in/.ref idea): each
// testdata/transcripts/NAME.in is what a client sends, NAME.ref what the
// parser made of it, one line per result (see transcript_driver.h). Adding
// a pair adds a case; MAILGRID_UPDATE_GOLDEN=1 rewrites the .ref files
// (review the diff before committing).
//
// Every transcript runs several ways: each segment fed whole, one byte at a
// time, and in random pieces (three fixed seeds), draining results after
// every piece. All must produce the .ref exactly: parsing must not depend on
// how TCP split the stream.
//
// .in format: each line is client bytes plus CRLF; C escapes \r \n \t \0
// \xHH, and a trailing \c drops the CRLF. "##" lines are comments; "#"
// lines are directives, applied between the bytes before and after them:
//   #limits key=value ...   receiver/parser limits (before any bytes)
//   #state not-authenticated|authenticated|selected
//   #ctx utf8_accept=0|1 qresync=0|1
//   #sasl-steps N
//   #numbers PREFIX|N|SUFFIX   the line PREFIX1,2,...,NSUFFIX (plus CRLF)
//   #repeat N|TEXT             TEXT N times (no CRLF)
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/testing/transcript.h"
#include "libs/imap/transcript_driver.h"

namespace mailgrid::imap {
namespace {

namespace fs = std::filesystem;

fs::path TranscriptDir() {
  const char* src = std::getenv("MAILGRID_SOURCE_DIR");
  return fs::path(src ? src : MAILGRID_SOURCE_DIR_DEFAULT) / "libs/imap/testdata/transcripts";
}

std::string Unescape(std::string_view s, bool* no_crlf) {
  return mailgrid::testing::UnescapeTranscript(s, no_crlf, mailgrid::testing::UnknownEscape::kKeep);
}

// A script: segments of bytes with directives between them.
struct Step {
  std::string bytes;
  std::string directive;  // empty for bytes
};

struct Script {
  ReceiverLimits limits;
  CommandContext ctx;
  std::vector<Step> steps;
};

void ApplyLimit(const std::string& kv, Script* s) {
  const size_t eq = kv.find('=');
  ASSERT_NE(eq, std::string::npos) << kv;
  const std::string k = kv.substr(0, eq);
  const uint64_t v = std::stoull(kv.substr(eq + 1));
  ReceiverLimits& l = s->limits;
  if (k == "max_line")
    l.max_line_length = v;
  else if (k == "max_literal")
    l.max_literal_size = v;
  else if (k == "max_arg_literal")
    l.max_argument_literal_size = v;
  else if (k == "max_command")
    l.max_command_size = v;
  else if (k == "max_small_command")
    l.max_small_command_size = v;
  else if (k == "max_tokens")
    l.max_tokens = v;
  else if (k == "max_depth")
    l.max_depth = v;
  else if (k == "max_discard")
    l.max_discard_size = v;
  else if (k == "max_errors")
    l.max_consecutive_errors = static_cast<int>(v);
  else if (k == "max_ranges")
    s->ctx.limits.max_sequence_ranges = v;
  else if (k == "max_search_depth")
    s->ctx.limits.max_search_depth = v;
  else
    FAIL() << "unknown limit " << k;
}

Script ParseScript(const std::string& text) {
  Script s;
  std::istringstream in(text);
  std::string line;
  auto add_bytes = [&](const std::string& b) {
    if (s.steps.empty() || !s.steps.back().directive.empty()) s.steps.push_back(Step{});
    s.steps.back().bytes += b;
  };
  while (std::getline(in, line)) {
    if (line.rfind("##", 0) == 0) continue;
    if (line.rfind("#", 0) != 0) {
      bool no_crlf = false;
      std::string bytes = Unescape(line, &no_crlf);
      add_bytes(no_crlf ? bytes : bytes + "\r\n");
      continue;
    }
    const size_t sp = line.find(' ');
    const std::string word = line.substr(1, sp == std::string::npos ? std::string::npos : sp - 1);
    const std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (word == "limits") {
      EXPECT_TRUE(s.steps.empty()) << "#limits must come before any bytes";
      std::istringstream kvs(arg);
      std::string kv;
      while (kvs >> kv) ApplyLimit(kv, &s);
    } else if (word == "numbers" || word == "repeat") {
      std::vector<std::string> parts;
      std::string part;
      std::istringstream ps(arg);
      while (std::getline(ps, part, '|')) parts.push_back(part);
      if (word == "numbers") {
        parts.resize(3);
        std::string b = parts[0];
        const int n = std::stoi(parts[1]);
        for (int i = 1; i <= n; ++i) b += (i > 1 ? "," : "") + std::to_string(i);
        add_bytes(b + parts[2] + "\r\n");
      } else {
        parts.resize(2);
        bool ignored;
        const std::string unit = Unescape(parts[1], &ignored);
        std::string b;
        for (int i = std::stoi(parts[0]); i > 0; --i) b += unit;
        add_bytes(b);
      }
    } else if (word == "state" || word == "ctx" || word == "sasl-steps") {
      s.steps.push_back(Step{"", line.substr(1)});
    } else {
      ADD_FAILURE() << "unknown directive " << line;
    }
  }
  return s;
}

void ApplyDirective(const std::string& d, TranscriptDriver* driver) {
  std::istringstream in(d);
  std::string word, arg;
  in >> word;
  if (word == "state") {
    in >> arg;
    SessionState st = SessionState::kNotAuthenticated;
    if (arg == "authenticated")
      st = SessionState::kAuthenticated;
    else if (arg == "selected")
      st = SessionState::kSelected;
    else
      ASSERT_EQ(arg, "not-authenticated");
    driver->context().state = st;
  } else if (word == "ctx") {
    while (in >> arg) {
      const bool on = arg.back() == '1';
      if (arg.rfind("utf8_accept=", 0) == 0)
        driver->context().utf8_accept = on;
      else if (arg.rfind("qresync=", 0) == 0)
        driver->context().qresync_enabled = on;
      else
        FAIL() << "unknown ctx " << arg;
    }
  } else if (word == "sasl-steps") {
    int n = 1;
    in >> n;
    driver->set_sasl_steps(n);
  }
}

// Split modes: 0 whole segments, 1 byte by byte, >= 2 random pieces.
std::string Play(const Script& script, int mode) {
  TranscriptDriver driver(script.limits, script.ctx);
  std::string out;
  std::mt19937 rng(static_cast<uint32_t>(mode));
  for (const Step& step : script.steps) {
    if (!step.directive.empty()) {
      ApplyDirective(step.directive, &driver);
      continue;
    }
    std::string_view rest = step.bytes;
    while (!rest.empty()) {
      size_t n = rest.size();
      if (mode == 1) n = 1;
      if (mode >= 2) n = std::min(rest.size(), std::uniform_int_distribution<size_t>(1, 40)(rng));
      driver.Feed(rest.substr(0, n), &out);
      rest.remove_prefix(n);
    }
  }
  return out;
}

std::vector<std::string> ListTranscripts() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(TranscriptDir())) {
    if (e.path().extension() == ".in") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class TranscriptTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TranscriptTest, MatchesGolden) {
  const fs::path in = TranscriptDir() / (GetParam() + ".in");
  const fs::path ref = TranscriptDir() / (GetParam() + ".ref");
  const Script script = ParseScript(mailgrid::testing::ReadFile(in));
  const std::string whole = Play(script, 0);
  if (std::getenv("MAILGRID_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(ref, std::ios::binary) << whole;
  }
  ASSERT_TRUE(fs::exists(ref)) << ref << " missing; run with MAILGRID_UPDATE_GOLDEN=1";
  EXPECT_EQ(whole, testing::ReadFile(ref)) << "fed whole";
  EXPECT_EQ(Play(script, 1), whole) << "fed byte by byte";
  for (int seed = 2; seed <= 4; ++seed) {
    EXPECT_EQ(Play(script, seed), whole) << "fed in random pieces, seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, TranscriptTest, ::testing::ValuesIn(ListTranscripts()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           for (char& c : n) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

TEST(TranscriptCorpus, HasEnoughCases) { EXPECT_GE(ListTranscripts().size(), 40u); }

}  // namespace
}  // namespace mailgrid::imap
