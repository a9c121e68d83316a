// Typed checks the golden transcripts cannot show (secrets, moved data,
// structure) and the consistency of the command table.
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "libs/imap/commands/registry.h"
#include "libs/imap/reader.h"

namespace mailgrid::imap {
namespace {

Command Parse(std::string_view wire, SessionState state = SessionState::kSelected) {
  CommandReader reader;
  CommandContext ctx;
  ctx.state = state;
  ctx.qresync_enabled = true;
  reader.Feed(wire);
  for (;;) {
    ReadResult r = reader.Next(ctx);
    if (auto* c = std::get_if<Command>(&r)) return std::move(*c);
    if (auto* e = std::get_if<ProtocolError>(&r)) {
      ADD_FAILURE() << wire << " -> " << e->text;
      return Command{};
    }
    if (std::holds_alternative<NeedMoreData>(r)) {
      ADD_FAILURE() << "incomplete: " << wire;
      return Command{};
    }
  }
}

TEST(Commands, LoginKeepsThePasswordButDumpsOnlyItsLength) {
  Command c = Parse("a LOGIN alice {6+}\r\nse\"cr3\r\n", SessionState::kNotAuthenticated);
  EXPECT_EQ(c.get<LoginArgs>().user, "alice");
  EXPECT_EQ(c.get<LoginArgs>().password, "se\"cr3");
  EXPECT_EQ(DebugString(c), "a LOGIN user=\"alice\" password=<6 bytes>");
}

TEST(Commands, AuthenticateInitialResponseIsDecoded) {
  Command c = Parse("a AUTHENTICATE PLAIN AGEAYg==\r\n", SessionState::kNotAuthenticated);
  EXPECT_EQ(c.get<AuthenticateArgs>().mechanism, "PLAIN");
  EXPECT_EQ(c.get<AuthenticateArgs>().initial_response, std::string("\0a\0b", 4));
}

TEST(Commands, AppendMovesTheMessage) {
  const std::string body(100000, 'm');
  Command c =
      Parse("a APPEND INBOX (\\Seen) {100000+}\r\n" + body + "\r\n", SessionState::kAuthenticated);
  const AppendArgs& a = c.get<AppendArgs>();
  ASSERT_EQ(a.messages.size(), 1u);
  EXPECT_EQ(a.messages[0].data, body);
  EXPECT_EQ(a.messages[0].flags, std::vector<std::string>{"\\Seen"});
}

TEST(Commands, FetchItemsAreStructured) {
  Command c = Parse("a UID FETCH 1:* (BODY.PEEK[1.2.HEADER.FIELDS (From)]<5.10> BINARY[3])\r\n");
  EXPECT_TRUE(c.uid);
  const FetchArgs& f = c.get<FetchArgs>();
  ASSERT_EQ(f.items.size(), 2u);
  const FetchItem& b = f.items[0];
  EXPECT_EQ(b.attr, FetchAttr::kBodySection);
  EXPECT_TRUE(b.peek);
  EXPECT_EQ(b.section.part, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(b.section.text, FetchSection::Text::kHeaderFields);
  EXPECT_EQ(b.section.fields, std::vector<std::string>{"From"});
  ASSERT_TRUE(b.partial.has_value());
  EXPECT_EQ(b.partial->offset, 5u);
  EXPECT_EQ(b.partial->length, 10u);
  EXPECT_EQ(FetchResponseName(b), "BODY[1.2.HEADER.FIELDS (From)]<5>");
  EXPECT_EQ(FetchResponseName(f.items[1]), "BINARY[3]");
}

TEST(Commands, Thread) {
  Command c = Parse("a UID THREAD references utf-8 OR (FROM x SEEN) NOT 1:3\r\n");
  ASSERT_EQ(c.id, CommandId::kThread);
  EXPECT_TRUE(c.uid);
  const ThreadArgs& t = c.get<ThreadArgs>();
  EXPECT_EQ(t.algorithm, ThreadAlgorithm::kReferences);
  EXPECT_EQ(*t.search.charset, "UTF-8");
  ASSERT_EQ(t.search.criteria.children.size(), 1u);  // OR takes both
  EXPECT_EQ(t.search.criteria.children[0].kind, SearchKeyKind::kOr);
  EXPECT_EQ(Parse("b THREAD ORDEREDSUBJECT US-ASCII ALL\r\n").get<ThreadArgs>().algorithm,
            ThreadAlgorithm::kOrderedSubject);
  // Unknown algorithm, unknown charset, missing charset or keys: refused.
  for (std::string_view bad :
       {"c THREAD REFS UTF-8 ALL\r\n", "d THREAD REFERENCES KOI8-R ALL\r\n",
        "e THREAD REFERENCES UTF-8\r\n", "f THREAD REFERENCES\r\n", "g THREAD\r\n"}) {
    CommandReader reader;
    CommandContext ctx;
    ctx.state = SessionState::kSelected;
    reader.Feed(bad);
    ReadResult r = reader.Next(ctx);
    EXPECT_TRUE(std::holds_alternative<ProtocolError>(r)) << bad;
  }
}

TEST(Commands, Sort) {
  Command c = Parse("a UID SORT (reverse DATE subject) utf-8 OR (FROM x SEEN) NOT 1:3\r\n");
  ASSERT_EQ(c.id, CommandId::kSort);
  EXPECT_TRUE(c.uid);
  const SortArgs& s = c.get<SortArgs>();
  ASSERT_EQ(s.criteria.size(), 2u);
  EXPECT_EQ(s.criteria[0].key, SortKey::kDate);
  EXPECT_TRUE(s.criteria[0].reverse);
  EXPECT_EQ(s.criteria[1].key, SortKey::kSubject);
  EXPECT_FALSE(s.criteria[1].reverse);
  EXPECT_EQ(*s.search.charset, "UTF-8");
  ASSERT_EQ(s.search.criteria.children.size(), 1u);
  EXPECT_EQ(s.search.criteria.children[0].kind, SearchKeyKind::kOr);
  Command c2 = Parse("b SORT (ARRIVAL CC FROM SIZE TO) US-ASCII ALL\r\n");
  const SortArgs& all = c2.get<SortArgs>();
  ASSERT_EQ(all.criteria.size(), 5u);
  EXPECT_EQ(all.criteria[4].key, SortKey::kTo);
  // Empty or unknown keys, a dangling or double REVERSE, no list, unknown
  // charset, missing charset or search keys: refused.
  for (std::string_view bad :
       {"c SORT () UTF-8 ALL\r\n", "d SORT (NAME) UTF-8 ALL\r\n", "e SORT (REVERSE) UTF-8 ALL\r\n",
        "f SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n", "g SORT DATE UTF-8 ALL\r\n",
        "h SORT (DATE) KOI8-R ALL\r\n", "i SORT (DATE) UTF-8\r\n", "j SORT (DATE)\r\n",
        "k SORT\r\n", "l SORT RETURN (SAVE) (DATE) UTF-8 ALL\r\n",
        "m SORT RETURN (BOGUS) (DATE) UTF-8 ALL\r\n", "n SORT RETURN (DATE) UTF-8 ALL\r\n",
        "o SORT RETURN MIN (DATE) UTF-8 ALL\r\n"}) {
    CommandReader reader;
    CommandContext ctx;
    ctx.state = SessionState::kSelected;
    reader.Feed(bad);
    ReadResult r = reader.Next(ctx);
    EXPECT_TRUE(std::holds_alternative<ProtocolError>(r)) << bad;
  }
  // ESORT (RFC 5267): RETURN before the criteria; () means ALL.
  EXPECT_FALSE(all.search.result_options.has_value());
  Command e = Parse("p UID SORT RETURN (MIN COUNT) (REVERSE DATE) UTF-8 ALL\r\n");
  const SortArgs& es = e.get<SortArgs>();
  ASSERT_TRUE(es.search.result_options.has_value());
  EXPECT_TRUE(es.search.result_options->min);
  EXPECT_TRUE(es.search.result_options->count);
  EXPECT_FALSE(es.search.result_options->max);
  EXPECT_FALSE(es.search.result_options->all);
  ASSERT_EQ(es.criteria.size(), 1u);
  EXPECT_TRUE(es.criteria[0].reverse);
  Command e2 = Parse("q SORT RETURN () (SIZE) UTF-8 ALL\r\n");
  EXPECT_TRUE(e2.get<SortArgs>().search.result_options->all);
}

TEST(Commands, SearchTree) {
  Command c = Parse("a SEARCH OR (FROM x SEEN) NOT 1:3\r\n");
  const SearchKey& root = c.get<SearchArgs>().criteria;
  ASSERT_EQ(root.kind, SearchKeyKind::kAnd);
  ASSERT_EQ(root.children.size(), 1u);
  const SearchKey& o = root.children[0];
  ASSERT_EQ(o.kind, SearchKeyKind::kOr);
  ASSERT_EQ(o.children.size(), 2u);
  EXPECT_EQ(o.children[0].kind, SearchKeyKind::kAnd);
  EXPECT_EQ(o.children[0].children[0].text, "x");
  EXPECT_EQ(o.children[1].kind, SearchKeyKind::kNot);
  EXPECT_EQ(o.children[1].children[0].set.ToString(), "1:3");
}

TEST(Commands, MailboxNamesAreUtf8) {
  Command c = Parse("a SELECT &ZTZO9nux-\r\n", SessionState::kAuthenticated);
  EXPECT_EQ(c.get<SelectArgs>().mailbox, "收件箱");
}

TEST(Registry, TableIsConsistent) {
  std::set<std::string_view> names;
  for (const CommandSpec& s : AllCommands()) {
    EXPECT_TRUE(names.insert(s.name).second) << "duplicate " << s.name;
    EXPECT_EQ(s.uid, s.name.rfind("UID ", 0) == 0) << s.name;
    EXPECT_NE(s.states, 0) << s.name;
    EXPECT_EQ(FindCommand(s.name), &s);
    for (char c : s.name) EXPECT_FALSE(c >= 'a' && c <= 'z') << s.name;
  }
  // Every command the issue lists.
  for (const char* n :
       {"CAPABILITY",  "NOOP",         "LOGOUT",     "STARTTLS",  "AUTHENTICATE", "LOGIN",
        "SELECT",      "EXAMINE",      "CREATE",     "DELETE",    "RENAME",       "SUBSCRIBE",
        "UNSUBSCRIBE", "LIST",         "LSUB",       "NAMESPACE", "STATUS",       "APPEND",
        "CHECK",       "CLOSE",        "UNSELECT",   "EXPUNGE",   "UID EXPUNGE",  "SEARCH",
        "FETCH",       "STORE",        "COPY",       "MOVE",      "UID COPY",     "UID MOVE",
        "UID FETCH",   "UID STORE",    "UID SEARCH", "IDLE",      "ENABLE",       "ID",
        "GETQUOTA",    "GETQUOTAROOT", "SETQUOTA",   "COMPRESS"}) {
    EXPECT_NE(FindCommand(n), nullptr) << n;
  }
  EXPECT_EQ(FindCommand("fetch"), nullptr);  // the receiver upper-cases first
}

TEST(Registry, CheckCommand) {
  using V = CommandCheck::Verdict;
  EXPECT_EQ(CheckCommand("XYZZY", SessionState::kSelected).verdict, V::kUnknown);
  EXPECT_EQ(CheckCommand("FETCH", SessionState::kAuthenticated).verdict, V::kNotAllowed);
  EXPECT_EQ(CheckCommand("LOGIN", SessionState::kSelected).verdict, V::kNotAllowed);
  EXPECT_EQ(CheckCommand("NOOP", SessionState::kLogout).verdict, V::kNotAllowed);
  EXPECT_TRUE(CheckCommand("APPEND", SessionState::kSelected).large_literals);
  EXPECT_FALSE(CheckCommand("LOGIN", SessionState::kNotAuthenticated).large_literals);
  EXPECT_TRUE(FindCommand("FETCH")->uses_sequence_numbers);
  EXPECT_FALSE(FindCommand("UID FETCH")->uses_sequence_numbers);
}

}  // namespace
}  // namespace mailgrid::imap
