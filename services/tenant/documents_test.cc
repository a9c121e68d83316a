#include "services/tenant/documents.h"

#include "gtest/gtest.h"

namespace mailgrid::tenant {
namespace {

TEST(DocumentsTest, MagicBytes) {
  EXPECT_EQ(DetectContentType("%PDF-1.7\n%"), "application/pdf");
  EXPECT_EQ(DetectContentType(std::string_view("\x89PNG\r\n\x1a\n\0\0", 10)), "image/png");
  EXPECT_EQ(DetectContentType("\xFF\xD8\xFF\xE0\x00\x10JFIF"), "image/jpeg");
  EXPECT_EQ(DetectContentType("GIF89a......"), std::nullopt);
  EXPECT_EQ(DetectContentType("PK\x03\x04 zip file"), std::nullopt);
  EXPECT_EQ(DetectContentType("<html>%PDF-"), std::nullopt);
  EXPECT_EQ(DetectContentType("%PD"), std::nullopt);  // too short to be a PDF header
  EXPECT_EQ(DetectContentType(""), std::nullopt);
}

}  // namespace
}  // namespace mailgrid::tenant
