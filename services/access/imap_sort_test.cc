#include "services/access/imap_sort.h"

#include <gtest/gtest.h>

namespace mailgrid::access {
namespace {

namespace ms = ::mailgrid::mailstore::v1;
using imap::SortCriterion;
using imap::SortKey;

ms::FetchResponse Message(uint32_t uid, int64_t arrival, uint64_t size, const char* date,
                          const char* subject, const char* from, const char* to = nullptr) {
  ms::FetchResponse m;
  m.set_uid(uid);
  m.mutable_internal_date()->set_seconds(arrival);
  m.set_rfc822_size(size);
  ms::Envelope* e = m.mutable_envelope();
  if (date != nullptr) e->set_date(date);
  if (subject != nullptr) e->set_subject(subject);
  if (from != nullptr) {
    ms::EnvelopeAddress* a = e->add_from();
    a->set_mailbox(from);
    a->set_host("example.org");
  }
  if (to != nullptr) {
    // A group first: its marker (no host) is not an address.
    e->add_to()->set_mailbox("team");
    ms::EnvelopeAddress* a = e->add_to();
    a->set_mailbox(to);
    a->set_host("example.org");
    e->add_to();
  }
  return m;
}

std::vector<uint32_t> Sort(const std::vector<ms::FetchResponse>& fetched,
                           std::vector<SortCriterion> criteria) {
  std::vector<SortMessage> messages;
  for (const ms::FetchResponse& m : fetched) messages.push_back(SortKeysOf(m, m.uid(), criteria));
  return SortMessages(std::move(messages), criteria);
}

const std::vector<ms::FetchResponse>& Box() {
  static const auto* box = new std::vector<ms::FetchResponse>{
      Message(1, 500, 300, "Mon, 1 Jan 2024 10:00:00 +0000", "Re: Lunch", "carol", "zed"),
      Message(2, 400, 100, "Mon, 1 Jan 2024 11:00:00 +0200", "lunch", "Alice", "yann"),
      Message(3, 300, 200, nullptr, "[fwd: LUNCH]", "bob", nullptr),
      Message(4, 200, 100, "not a date", "=?UTF-8?Q?Caf=C3=A9?=", nullptr, "Xavier"),
      Message(5, 100, 400, "Mon, 1 Jan 2024 09:30:00 -0100", nullptr, "alice", "yann"),
  };
  return *box;
}

TEST(ImapSort, SingleKeys) {
  EXPECT_EQ(Sort(Box(), {{SortKey::kArrival}}), (std::vector<uint32_t>{5, 4, 3, 2, 1}));
  // Size ties (2 and 4) keep mailbox order.
  EXPECT_EQ(Sort(Box(), {{SortKey::kSize}}), (std::vector<uint32_t>{2, 4, 3, 1, 5}));
  // Sent dates in UTC: 2 at 09:00, 1 at 10:00, 5 at 10:30; 3 (no Date:) and 4
  // (unreadable) use the internal date, 1970 here.
  EXPECT_EQ(Sort(Box(), {{SortKey::kDate}}), (std::vector<uint32_t>{4, 3, 2, 1, 5}));
  // i;ascii-casemap on the local part; 4 has no From: "" sorts first.
  EXPECT_EQ(Sort(Box(), {{SortKey::kFrom}}), (std::vector<uint32_t>{4, 2, 5, 3, 1}));
  // The group marker is skipped; 3 has no To.
  EXPECT_EQ(Sort(Box(), {{SortKey::kTo}}), (std::vector<uint32_t>{3, 4, 2, 5, 1}));
  // No Cc anywhere: mailbox order.
  EXPECT_EQ(Sort(Box(), {{SortKey::kCc}}), (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  // Base subjects: "" (5), "CAFÉ" (4), then three "LUNCH" in mailbox order.
  EXPECT_EQ(Sort(Box(), {{SortKey::kSubject}}), (std::vector<uint32_t>{5, 4, 1, 2, 3}));
}

TEST(ImapSort, ReverseAndSecondaryKeys) {
  EXPECT_EQ(Sort(Box(), {{SortKey::kArrival, true}}), (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  // REVERSE SIZE: ties still in mailbox order (RFC 5256 §3).
  EXPECT_EQ(Sort(Box(), {{SortKey::kSize, true}}), (std::vector<uint32_t>{5, 1, 3, 2, 4}));
  // SUBJECT, then REVERSE ARRIVAL among the "LUNCH" ones.
  EXPECT_EQ(Sort(Box(), {{SortKey::kSubject}, {SortKey::kArrival, true}}),
            (std::vector<uint32_t>{5, 4, 1, 2, 3}));
  EXPECT_EQ(Sort(Box(), {{SortKey::kSubject}, {SortKey::kArrival}}),
            (std::vector<uint32_t>{5, 4, 3, 2, 1}));
  // FROM ties (Alice, alice) broken by SIZE: 2 (100) before 5 (400), and
  // with REVERSE SIZE the other way.
  EXPECT_EQ(Sort(Box(), {{SortKey::kFrom}, {SortKey::kSize, true}}),
            (std::vector<uint32_t>{4, 5, 2, 3, 1}));
}

TEST(ImapSort, PrintsTheGivenIds) {
  std::vector<SortCriterion> by_size = {{SortKey::kSize}};
  std::vector<SortMessage> messages;
  messages.push_back(SortKeysOf(Box()[0], 7, by_size));
  messages.push_back(SortKeysOf(Box()[1], 9, by_size));
  EXPECT_EQ(SortMessages(messages, by_size), (std::vector<uint32_t>{9, 7}));
  EXPECT_TRUE(SortMessages({}, by_size).empty());
}

}  // namespace
}  // namespace mailgrid::access
