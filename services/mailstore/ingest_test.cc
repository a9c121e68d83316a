// Ingest's line-end normalisation: the stored bytes are always CRLF, what
// already is CRLF (relayd, IMAP APPEND) is kept byte for byte, and bare LFs
// anywhere become CRLF, as mail::ToCrlf makes them (issue 8: the behaviour
// a faster CRLF copy on the leader's path must keep).
#include "services/mailstore/ingest.h"

#include <string>

#include "gtest/gtest.h"
#include "libs/mail/header.h"

namespace mailgrid::mailstore {
namespace {

std::string StoredBytes(const std::string& input) {
  absl::StatusOr<Ingested> ing = Ingest(input, IngestLimits{});
  EXPECT_TRUE(ing.ok()) << ing.status();
  if (!ing.ok()) return "";
  EXPECT_EQ(ing->sha_hex, Sha256Hex(ing->raw));
  EXPECT_EQ(ing->body.size(), ing->raw.size());
  return ing->raw;
}

TEST(IngestTest, CrlfInputIsStoredUnchanged) {
  std::string crlf = "Subject: hi\r\nFrom: a@b.test\r\n\r\n";
  for (int i = 0; i < 3000; ++i) crlf += "line " + std::to_string(i) + " of a long body\r\n";
  EXPECT_EQ(StoredBytes(crlf), crlf);
  // A bare CR is not a line end and stays as it is (as mail::ToCrlf leaves it).
  std::string cr = "Subject: x\r\n\r\na\rb\r\n";
  EXPECT_EQ(StoredBytes(cr), cr);
}

TEST(IngestTest, BareLineFeedsBecomeCrlfWhereverTheyAre) {
  // LF only; LF first; one bare LF after many CRLF lines (the fast path's
  // scan must hand over to the full rewrite); LF as the last byte.
  const std::string inputs[] = {
      "Subject: unix\n\nbody\nmore\n",
      "\nSubject: blank first\r\n\r\nx\r\n",
      "Subject: late\r\n\r\n" + std::string(5000, 'x') + "\r\n" + "tail\nend\r\n",
      "Subject: last\r\n\r\nbody\n",
  };
  for (const std::string& in : inputs) {
    std::string stored = StoredBytes(in);
    EXPECT_EQ(stored, mail::ToCrlf(in));
    for (size_t i = 0; i < stored.size(); ++i) {
      if (stored[i] == '\n') {
        ASSERT_TRUE(i > 0 && stored[i - 1] == '\r') << "bare LF kept at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace mailgrid::mailstore
