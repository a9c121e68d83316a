#include "services/access/fetch_cache.h"

#include "gtest/gtest.h"

namespace mailgrid::access {
namespace {

ms::FetchItems HeaderItems() {
  ms::FetchItems items;
  items.set_flags(true);
  items.set_rfc822_size(true);
  ms::BodySection* s = items.add_sections();
  s->set_text(ms::SECTION_TEXT_HEADER_FIELDS);
  s->add_header_fields("Subject");
  return items;
}

ms::FetchResponse Answer(uint32_t uid, const std::string& header) {
  ms::FetchResponse m;
  m.set_uid(uid);
  m.set_rfc822_size(100 + uid);
  m.add_flags("\\Seen");
  ms::SectionData* d = m.add_sections();
  d->set_data(header);
  return m;
}

ms::MessageFlags Msg(uint32_t uid, uint64_t modseq, std::vector<std::string> flags) {
  ms::MessageFlags m;
  m.set_uid(uid);
  m.set_modseq(modseq);
  for (auto& f : flags) m.add_flags(f);
  return m;
}

ms::ChangesSinceResponse Changes(uint64_t highest, std::vector<ms::MessageFlags> changed,
                                 uint32_t vanished_first = 0, uint32_t vanished_last = 0) {
  ms::ChangesSinceResponse r;
  r.set_highest_modseq(highest);
  r.set_uidvalidity(7);
  for (auto& m : changed) *r.add_changed() = m;
  if (vanished_first != 0) {
    ms::IdRange* x = r.mutable_vanished()->add_ranges();
    x->set_first(vanished_first);
    x->set_last(vanished_last);
  }
  return r;
}

TEST(FetchCache, ImmutableItemsComeBackOnlyWhenAllAreKnown) {
  FetchCache c(FetchCache::Limits{});
  ms::FetchItems items = HeaderItems();
  ms::FetchResponse out;
  EXPECT_FALSE(c.Lookup("m/f", 7, 1, items, &out));
  c.Store("m/f", 7, items, Answer(1, "Subject: a\r\n\r\n"));
  ASSERT_TRUE(c.Lookup("m/f", 7, 1, items, &out));
  EXPECT_EQ(out.uid(), 1u);
  EXPECT_EQ(out.rfc822_size(), 101u);
  ASSERT_EQ(out.sections_size(), 1);
  EXPECT_EQ(out.sections(0).data(), "Subject: a\r\n\r\n");
  EXPECT_EQ(out.flags_size(), 0) << "flags are never taken from the immutable part";
  // Another UIDVALIDITY, another section or an item not stored: a miss.
  EXPECT_FALSE(c.Lookup("m/f", 8, 1, items, &out));
  ms::FetchItems other = items;
  other.mutable_sections(0)->set_header_fields(0, "From");
  EXPECT_FALSE(c.Lookup("m/f", 7, 1, other, &out));
  ms::FetchItems env = items;
  env.set_envelope(true);
  EXPECT_FALSE(c.Lookup("m/f", 7, 1, env, &out));
  // A missing part (data unset) is remembered as missing.
  ms::FetchResponse nil = Answer(2, "");
  nil.mutable_sections(0)->clear_data();
  c.Store("m/f", 7, items, nil);
  ms::FetchResponse got;
  ASSERT_TRUE(c.Lookup("m/f", 7, 2, items, &got));
  EXPECT_FALSE(got.sections(0).has_data());
}

TEST(FetchCache, BytesAreBoundedAndBigItemsAreNotKept) {
  FetchCache::Limits l;
  l.message_bytes = 4000;
  l.max_item_bytes = 1000;
  FetchCache c(l);
  ms::FetchItems items = HeaderItems();
  ms::FetchResponse out;
  c.Store("m/f", 7, items, Answer(1, std::string(2000, 'x')));
  EXPECT_FALSE(c.Lookup("m/f", 7, 1, items, &out));
  for (uint32_t uid = 1; uid <= 100; ++uid) c.Store("m/f", 7, items, Answer(uid, "Subject: s\r\n"));
  EXPECT_LE(c.stats().bytes, 4000u);
  EXPECT_GT(c.stats().entries, 0u);
  EXPECT_TRUE(c.Lookup("m/f", 7, 100, items, &out)) << "the newest stays";
  EXPECT_FALSE(c.Lookup("m/f", 7, 1, items, &out)) << "the oldest went";
}

TEST(FetchCache, FlagsFollowChangesSince) {
  FetchCache c(FetchCache::Limits{});
  ms::MessageFlags f;
  EXPECT_EQ(c.FlagsBase("m/f", 7), 0u);
  EXPECT_FALSE(c.ApplyChanges("m/f", 5, Changes(9, {}))) << "only a full load starts a folder";
  ASSERT_TRUE(c.ApplyChanges("m/f", 0, Changes(10, {Msg(1, 3, {}), Msg(2, 10, {"\\Seen"})})));
  EXPECT_EQ(c.FlagsBase("m/f", 7), 10u);
  EXPECT_EQ(c.FlagsBase("m/f", 8), 0u);
  ASSERT_TRUE(c.FlagsOf("m/f", 2, &f));
  EXPECT_EQ(f.modseq(), 10u);
  ASSERT_EQ(f.flags_size(), 1);
  // Newer: message 1 flagged, 2 expunged, 3 added.
  ASSERT_TRUE(c.ApplyChanges("m/f", 10, Changes(12, {Msg(1, 11, {"\\Flagged"}), Msg(3, 12, {})}, 2, 2)));
  ASSERT_TRUE(c.FlagsOf("m/f", 1, &f));
  EXPECT_EQ(f.flags(0), "\\Flagged");
  EXPECT_FALSE(c.FlagsOf("m/f", 2, &f));
  EXPECT_TRUE(c.FlagsOf("m/f", 3, &f));
  // A late answer computed before that (it still lists 2): ignored whole.
  ASSERT_TRUE(c.ApplyChanges("m/f", 10, Changes(11, {Msg(2, 11, {"\\Seen"})})));
  EXPECT_FALSE(c.FlagsOf("m/f", 2, &f));
  // A new UIDVALIDITY voids the folder; only a full load restarts it.
  ms::ChangesSinceResponse renewed = Changes(1, {Msg(1, 1, {})});
  renewed.set_uidvalidity(9);
  EXPECT_FALSE(c.ApplyChanges("m/f", 12, renewed));
  EXPECT_FALSE(c.FlagsOf("m/f", 3, &f));
  EXPECT_TRUE(c.ApplyChanges("m/f", 0, renewed));
  EXPECT_EQ(c.FlagsBase("m/f", 9), 1u);
}

TEST(FetchCache, FolderFlagsAreBounded) {
  FetchCache::Limits l;
  l.flag_messages = 3;
  FetchCache c(l);
  ASSERT_TRUE(c.ApplyChanges("a", 0, Changes(2, {Msg(1, 1, {}), Msg(2, 2, {})})));
  ASSERT_TRUE(c.ApplyChanges("b", 0, Changes(2, {Msg(1, 1, {}), Msg(2, 2, {})})));
  ms::MessageFlags f;
  EXPECT_TRUE(c.FlagsOf("b", 1, &f)) << "the folder just loaded stays";
  EXPECT_FALSE(c.FlagsOf("a", 1, &f)) << "the least recent went";
  EXPECT_LE(c.stats().flag_messages, 3u);
}

}  // namespace
}  // namespace mailgrid::access
