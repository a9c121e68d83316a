#include "libs/mail/mime.h"

#include <string>

#include "gtest/gtest.h"
#include "libs/mail/test_util.h"

namespace mailgrid::mail {
namespace {

using testing::ReadTestdata;

Message Parse(std::string_view raw, const Limits& limits = {}) {
  absl::StatusOr<Message> m = ParseMessage(raw, limits);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : Message{};
}

// "number:type/subtype" per part, pre-order.
std::string Shape(const Message& m) {
  std::string out;
  for (const Part& p : m.parts) {
    if (!out.empty()) out += " ";
    out += (p.number.empty() ? "-" : p.number) + ":" + p.content.type + "/" + p.content.subtype;
  }
  return out;
}

TEST(MimeTest, SinglePart) {
  std::string raw = ReadTestdata("rfc3501_fetch.eml");
  Message m = Parse(raw);
  ASSERT_EQ(m.parts.size(), 1u);
  const Part& root = m.root();
  EXPECT_EQ(root.kind, PartKind::kLeaf);
  EXPECT_TRUE(root.message_root);
  EXPECT_EQ(root.body.size, 3028u);
  EXPECT_EQ(root.body_lines, 92u);
  EXPECT_EQ(root.header.end(), root.body.offset);
  EXPECT_EQ(root.body.end(), raw.size());
  EXPECT_EQ(root.content.type, "text");
  EXPECT_EQ(root.content.charset(), "US-ASCII");
  EXPECT_EQ(m.problems, kProblemNone);
  EXPECT_EQ(m.envelope().subject, "IMAP4rev1 WG mtg summary and minutes");
  EXPECT_EQ(m.header.fields.size(), 8u);
}

TEST(MimeTest, NestedMixedWithAttachments) {
  std::string raw = ReadTestdata("mixed_attachments.eml");
  Message m = Parse(raw);
  EXPECT_EQ(m.problems, kProblemNone);
  EXPECT_EQ(Shape(m),
            "-:multipart/mixed 1:multipart/alternative 1.1:text/plain 1.2:text/html "
            "2:application/pdf 3:image/png");
  EXPECT_EQ(m.parts[2].body.In(raw),
            "Hi team,\r\n\r\nplease find the contract attached. Caf=C3=A9 at 3pm.\r\n");
  EXPECT_EQ(m.parts[2].body_lines, 3u);
  EXPECT_EQ(m.parts[2].content.encoding, "quoted-printable");
  EXPECT_EQ(m.parts[3].body.In(raw),
            "<p>Hi team,</p><p>please find the <b>contract</b> attached.</p>\r\n");
  EXPECT_EQ(m.parts[1].body.size, 297u);  // the alternative's own body, from the generator
  EXPECT_EQ(m.parts[4].body.size, 88u);
  EXPECT_EQ(m.parts[4].content.filename(), "contract.pdf");
  EXPECT_EQ(m.parts[4].content.disposition, "attachment");
  EXPECT_EQ(m.parts[5].content.filename(), "公司标志.png");
  EXPECT_EQ(m.parts[5].content.id, "<logo@example.cn>");
  // Part headers are the MIME headers, the blank line included.
  EXPECT_EQ(m.parts[3].header.In(raw), "Content-Type: text/html; charset=utf-8\r\n\r\n");
  // The root body runs from after the header to the end (preamble and
  // epilogue included).
  EXPECT_EQ(m.root().body.end(), raw.size());
  EXPECT_EQ(m.root().children, (std::vector<uint32_t>{1, 4, 5}));
  EXPECT_EQ(m.parts[1].children, (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(m.parts[3].parent, 1u);
}

TEST(MimeTest, PartNumbers) {
  std::string raw = ReadTestdata("mixed_attachments.eml");
  Message m = Parse(raw);
  EXPECT_EQ(*FindPart(m, "1.2"), 3u);
  EXPECT_EQ(*FindPart(m, "3"), 5u);
  EXPECT_EQ(*FindPart(m, ""), 0u);
  EXPECT_EQ(FindPart(m, "4").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FindPart(m, "1.1.1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FindPart(m, "0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FindPart(m, "1..2").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FindPart(m, "a").status().code(), absl::StatusCode::kInvalidArgument);

  Message single = Parse(ReadTestdata("rfc3501_fetch.eml"));
  EXPECT_EQ(*FindPart(single, "1"), 0u);  // a single-part message is its own part 1
  EXPECT_FALSE(FindPart(single, "2").ok());
  EXPECT_FALSE(FindPart(single, "1.1").ok());
}

TEST(MimeTest, ForwardedMessage) {
  std::string raw = ReadTestdata("forward.eml");
  Message m = Parse(raw);
  EXPECT_EQ(Shape(m), "-:multipart/mixed 1:text/plain 2:message/rfc822 2:text/plain");
  const Part& fwd = m.parts[2];
  EXPECT_EQ(fwd.kind, PartKind::kMessage);
  EXPECT_EQ(fwd.body.size, 186u);
  EXPECT_EQ(fwd.body_lines, 7u);
  const Part& inner = m.parts[3];
  EXPECT_TRUE(inner.message_root);
  ASSERT_NE(inner.envelope, nullptr);
  EXPECT_EQ(inner.envelope->subject, "Review");
  EXPECT_EQ(inner.envelope->from->items[0].local_part, "carol");
  EXPECT_EQ(inner.whole(), fwd.body);
  EXPECT_EQ(inner.body.In(raw), "Can we move the review to Thursday?\r\n");
  EXPECT_EQ(*FindPart(m, "2.1"), 3u);
  EXPECT_EQ(*FindPart(m, "2"), 2u);
}

TEST(MimeTest, MissingFinalBoundaryOfANestedMultipart) {
  std::string raw = ReadTestdata("missing_final_boundary.eml");
  Message m = Parse(raw);
  EXPECT_EQ(Shape(m),
            "-:multipart/mixed 1:multipart/alternative 1.1:text/plain 1.2:text/html 2:text/plain");
  EXPECT_EQ(m.parts[1].problems, kMissingFinalBoundary);
  EXPECT_EQ(m.parts[3].body.In(raw), "<p>second</p>");
  EXPECT_EQ(m.parts[4].body.In(raw), "third");
  EXPECT_EQ(m.problems, kMissingFinalBoundary);
}

TEST(MimeTest, Truncated) {
  std::string raw = ReadTestdata("truncated.eml");
  Message m = Parse(raw);
  EXPECT_EQ(Shape(m), "-:multipart/mixed 1:text/plain 2:application/octet-stream");
  EXPECT_EQ(m.parts[1].body.In(raw), "hello");
  EXPECT_EQ(m.parts[2].body.In(raw),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\r\nISIjJCUmJygpKiss");
  EXPECT_EQ(m.parts[2].body.end(), raw.size());
  EXPECT_EQ(m.root().problems, kMissingFinalBoundary);

  // Cut inside a part header: the header runs to the end, the body is empty.
  std::string cut = raw.substr(0, raw.find("Content-Transfer-Encoding"));
  Message c = Parse(cut);
  ASSERT_EQ(c.parts.size(), 3u);
  EXPECT_EQ(c.parts[2].body.size, 0u);
  EXPECT_TRUE(c.parts[2].problems & kMissingBlankLine);
  EXPECT_EQ(c.parts[2].content.type, "application");
}

TEST(MimeTest, HeaderCutByABoundary) {
  std::string raw =
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/html\r\n--b\r\n\r\nsecond\r\n--b--\r\n";
  Message m = Parse(raw);
  ASSERT_EQ(m.parts.size(), 3u);
  EXPECT_EQ(m.parts[1].content.subtype, "html");
  EXPECT_EQ(m.parts[1].body.size, 0u);
  EXPECT_EQ(m.parts[1].header.In(raw), "Content-Type: text/html");
  EXPECT_EQ(m.parts[1].problems, kMissingBlankLine);
  EXPECT_EQ(m.parts[2].body.In(raw), "second");
}

TEST(MimeTest, NulBytes) {
  std::string raw = std::string("Subject: a\0b\r\nX: y\r\n\r\nbody\0with\0nuls\r\n", 38);
  Message m = Parse(raw);
  EXPECT_TRUE(m.problems & kNulBytes);
  EXPECT_EQ(m.root().body.In(raw), std::string("body\0with\0nuls\r\n", 16));
  EXPECT_EQ(m.envelope().subject, std::string("a\0b", 3));
}

TEST(MimeTest, EmptyAndHeaderOnly) {
  Message empty = Parse("");
  ASSERT_EQ(empty.parts.size(), 1u);
  EXPECT_EQ(empty.root().header, (ByteRange{0, 0}));
  EXPECT_EQ(empty.root().body, (ByteRange{0, 0}));
  EXPECT_EQ(empty.problems, kMissingBlankLine);

  Message header_only = Parse("Subject: only\r\n");
  EXPECT_EQ(header_only.root().header.size, 15u);
  EXPECT_EQ(header_only.root().body.size, 0u);

  Message body_only = Parse("\r\njust a body\r\n");
  EXPECT_EQ(body_only.root().body.offset, 2u);
  EXPECT_EQ(body_only.problems, kProblemNone);
}

TEST(MimeTest, BareLf) {
  std::string raw =
      "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\none\n"
      "--x\n\ntwo\n--x--\n";
  Message m = Parse(raw);
  ASSERT_EQ(m.parts.size(), 3u);
  EXPECT_EQ(m.parts[1].body.In(raw), "one");
  EXPECT_EQ(m.parts[2].header.In(raw), "\n");
  EXPECT_EQ(m.parts[2].body.In(raw), "two");
}

TEST(MimeTest, BoundariesThatPrefixEachOther) {
  // The inner boundary extends the outer one, and then the other way round.
  for (auto [outer, inner] : {std::pair<std::string, std::string>{"abc", "abcdef"},
                              std::pair<std::string, std::string>{"abcdef", "abc"}}) {
    std::string raw = "Content-Type: multipart/mixed; boundary=" + outer + "\r\n\r\n--" + outer +
                      "\r\nContent-Type: multipart/alternative; boundary=" + inner + "\r\n\r\n--" +
                      inner + "\r\n\r\nA\r\n--" + inner + "\r\n\r\nB\r\n--" + inner + "--\r\n--" +
                      outer + "\r\n\r\nC\r\n--" + outer + "--\r\n";
    Message m = Parse(raw);
    SCOPED_TRACE(outer + " " + inner);
    EXPECT_EQ(Shape(m),
              "-:multipart/mixed 1:multipart/alternative 1.1:text/plain 1.2:text/plain "
              "2:text/plain");
    EXPECT_EQ(m.problems, kProblemNone);
    EXPECT_EQ(m.parts[4].body.In(raw), "C");
  }
}

TEST(MimeTest, DigestDefaultsAndOpaqueContainers) {
  std::string digest =
      "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody 1\r\n"
      "--d--\r\n";
  Message d = Parse(digest);
  EXPECT_EQ(Shape(d), "-:multipart/digest 1:message/rfc822 1:text/plain");
  EXPECT_EQ(d.parts[2].envelope->subject, "one");

  std::string encoded =
      "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
      "base64\r\n\r\nU3ViamVjdDogeA==\r\n";
  Message e = Parse(encoded);
  EXPECT_EQ(Shape(e), "-:message/rfc822");  // the type stays; it is not parsed
  EXPECT_EQ(e.root().kind, PartKind::kLeaf);
  EXPECT_EQ(e.problems, kEncodedContainer);
  Message em = Parse(
      "Content-Type: multipart/mixed; boundary=x\r\nContent-Transfer-Encoding: "
      "base64\r\n\r\n--x\r\n");
  EXPECT_EQ(Shape(em), "-:application/octet-stream");
  EXPECT_EQ(em.problems, kEncodedContainer);

  Message nb = Parse("Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n");
  EXPECT_EQ(Shape(nb), "-:application/octet-stream");
  EXPECT_EQ(nb.problems, kMissingBoundary);

  Message none = Parse("Content-Type: multipart/mixed; boundary=q\r\n\r\nno delimiter here\r\n");
  EXPECT_EQ(none.root().kind, PartKind::kMultipart);
  EXPECT_TRUE(none.root().children.empty());
  EXPECT_EQ(none.problems, kNoParts);

  Message bad = Parse("Content-Type: garbage\r\n\r\nx");
  EXPECT_EQ(Shape(bad), "-:text/plain");
  EXPECT_EQ(bad.problems, kInvalidContentType);
}

std::string DeepMultipart(int levels) {
  std::string head, tail;
  for (int i = 0; i < levels; ++i) {
    // Not "level1" and "level10": a boundary that prefixes another one
    // delimits it too (RFC 2046 §5.1.1 compares the start of the line).
    std::string b = "level" + std::to_string(i) + "_";
    head += "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n";
    tail = "\r\n--" + b + "--\r\n" + tail;
  }
  return head + "Content-Type: text/plain\r\n\r\ndeepest" + tail;
}

TEST(MimeLimitsTest, ThousandLevelsOfMultipart) {
  std::string raw = DeepMultipart(1000);
  Message m = Parse(raw);
  ASSERT_EQ(m.parts.size(), 33u);  // containers at depth 0..31, then one opaque part
  for (uint32_t i = 0; i < 32; ++i) {
    EXPECT_EQ(m.parts[i].kind, PartKind::kMultipart);
    EXPECT_EQ(m.parts[i].children.size(), 1u);
  }
  const Part& last = m.parts[32];
  EXPECT_EQ(last.depth, 32u);
  EXPECT_EQ(last.problems, kDepthLimit);
  EXPECT_EQ(last.content.type, "application");
  // The opaque part holds all the deeper levels and ends where its parent's
  // close delimiter starts.
  EXPECT_EQ(raw.compare(last.body.end(), 15, "\r\n--level31_--\r"), 0);
  EXPECT_EQ(m.problems, kDepthLimit);
  EXPECT_EQ(m.parts[32].number, "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1");
}

TEST(MimeLimitsTest, ThousandLevelsOfMessageRfc822) {
  std::string raw;
  for (int i = 0; i < 1000; ++i) raw += "Content-Type: message/rfc822\r\n\r\n";
  raw += "Subject: bottom\r\n\r\nbody\r\n";
  Limits limits;
  limits.max_depth = 8;
  Message m = Parse(raw, limits);
  ASSERT_EQ(m.parts.size(), 9u);
  EXPECT_EQ(m.parts[8].problems, kDepthLimit);
  EXPECT_EQ(m.parts[8].body.end(), raw.size());
  EXPECT_EQ(m.parts[7].kind, PartKind::kMessage);
}

std::string ManyParts(int n, size_t part_bytes) {
  std::string line(76, 'x');
  std::string body;
  while (body.size() + 78 <= part_bytes) body += line + "\r\n";
  std::string raw = "Subject: many\r\nContent-Type: multipart/mixed; boundary=sep\r\n\r\n";
  raw.reserve(static_cast<size_t>(n) * (part_bytes + 64));
  for (int i = 0; i < n; ++i) {
    raw += "--sep\r\nContent-Type: text/plain\r\n\r\n" + body + "part " + std::to_string(i + 1) +
           "\r\n";
  }
  return raw + "--sep--\r\n";
}

TEST(MimeLimitsTest, FiftyMegabytesInTenThousandParts) {
  std::string raw = ManyParts(10000, 5000);
  ASSERT_GT(raw.size(), 50'000'000u);
  Limits roomy;
  roomy.max_parts = 20000;
  Message all = Parse(raw, roomy);
  ASSERT_EQ(all.parts.size(), 10001u);
  EXPECT_EQ(all.problems, kProblemNone);
  EXPECT_EQ(all.parts[10000].number, "10000");
  std::string_view last = all.parts[10000].body.In(raw);
  EXPECT_EQ(last.substr(last.size() - 10), "part 10000");

  // With the default limit (10,000 parts, the root included) the last child
  // is the opaque rest.
  Message limited = Parse(raw);
  ASSERT_EQ(limited.parts.size(), 10001u);
  EXPECT_EQ(limited.parts[10000].problems, kPartLimit);
  EXPECT_EQ(limited.parts[10000].header.size, 0u);
  EXPECT_EQ(limited.parts[9999].problems, kProblemNone);
}

TEST(MimeLimitsTest, OpaqueRestSpansEverythingLeft) {
  std::string raw = ManyParts(10, 100);
  Limits limits;
  limits.max_parts = 4;
  Message m = Parse(raw, limits);
  ASSERT_EQ(m.parts.size(), 5u);
  std::string_view rest = m.parts[4].body.In(raw);
  EXPECT_EQ(rest.substr(0, 26), "Content-Type: text/plain\r\n");
  EXPECT_EQ(rest.substr(rest.size() - 7), "part 10");
  EXPECT_EQ(m.problems, kPartLimit);
}

TEST(MimeLimitsTest, MegabyteHeaderLine) {
  std::string big(1024 * 1024, 'a');
  std::string raw = "Subject: kept\r\nX-Huge: " + big + "\r\nTo: lost@example.com\r\n\r\nbody\r\n";
  Message m = Parse(raw);
  EXPECT_EQ(m.problems, kHeaderOverflow);
  EXPECT_EQ(m.envelope().subject, "kept");
  EXPECT_FALSE(m.envelope().to.has_value());
  EXPECT_EQ(m.root().body.In(raw), "body\r\n");

  Limits strict;
  strict.reject_oversized_header = true;
  absl::StatusOr<Message> refused = ParseMessage(raw, strict);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), "header line 2 is longer than 65536 bytes");

  // In a part header it only marks the part.
  std::string nested = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Huge: " + big +
                       "\r\nContent-Type: text/html\r\n\r\nhtml\r\n--b--\r\n";
  Message n = Parse(nested, strict);
  ASSERT_EQ(n.parts.size(), 2u);
  EXPECT_EQ(n.parts[1].problems, kHeaderOverflow);
  EXPECT_EQ(n.parts[1].content.subtype, "plain");  // its Content-Type came after the limit
  EXPECT_EQ(n.parts[1].body.In(nested), "html");
}

TEST(MimeLimitsTest, MessageSize) {
  Limits limits;
  limits.max_message_bytes = 10;
  absl::StatusOr<Message> m = ParseMessage("Subject: too long\r\n\r\n", limits);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "message is 21 bytes; the limit is 10");
}

TEST(MimeLimitsTest, ManyNearBoundaryLines) {
  // Every line starts with "--" and almost matches one of 32 boundaries:
  // still one pass, and every line stays in the leaf.
  std::string raw, tail;
  for (int i = 0; i < 32; ++i) {
    std::string b = "boundary-" + std::to_string(i) + "-" + std::string(50, 'q');
    raw += "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n";
    tail = "\r\n--" + b + "--\r\n" + tail;
  }
  raw += "\r\n";
  for (int i = 0; i < 20000; ++i) raw += "--boundary-" + std::to_string(i % 32) + "-" + "qqqq\r\n";
  raw += "end" + tail;
  Message m = Parse(raw);
  ASSERT_EQ(m.parts.size(), 33u);
  EXPECT_EQ(m.parts[32].body_lines, 20000u);
  EXPECT_EQ(m.problems, kProblemNone);
}

}  // namespace
}  // namespace mailgrid::mail
