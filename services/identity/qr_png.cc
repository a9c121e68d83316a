#include "services/identity/qr_png.h"

#include <qrencode.h>
#include <zlib.h>

#include <vector>

namespace mailgrid::identity {
namespace {

void Be32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xFF));
}

void Chunk(std::string* png, const char type[5], const std::string& data) {
  Be32(png, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  png->append(body);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
  Be32(png, static_cast<uint32_t>(crc));
}

}  // namespace

absl::StatusOr<std::string> QrPng(std::string_view text, int scale, int margin) {
  std::string input(text);
  QRcode* qr = QRcode_encodeString(input.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
  if (qr == nullptr) return absl::InvalidArgumentError("text too long for a QR code");
  const int modules = qr->width;
  const int size = (modules + 2 * margin) * scale;
  std::string raw;
  raw.reserve(static_cast<size_t>(size) * static_cast<size_t>(size + 1));
  for (int y = 0; y < size; ++y) {
    raw.push_back(0);  // filter: none
    int my = y / scale - margin;
    for (int x = 0; x < size; ++x) {
      int mx = x / scale - margin;
      bool dark = mx >= 0 && my >= 0 && mx < modules && my < modules &&
                  (qr->data[my * modules + mx] & 1) != 0;
      raw.push_back(dark ? 0 : static_cast<char>(0xFF));
    }
  }
  QRcode_free(qr);
  uLongf packed_len = compressBound(static_cast<uLong>(raw.size()));
  std::vector<Bytef> packed(packed_len);
  if (compress2(packed.data(), &packed_len, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), 9) != Z_OK)
    return absl::InternalError("zlib failed");
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  Be32(&ihdr, static_cast<uint32_t>(size));
  Be32(&ihdr, static_cast<uint32_t>(size));
  ihdr.append({8, 0, 0, 0, 0});  // 8-bit, grayscale, deflate, no filter, no interlace
  Chunk(&png, "IHDR", ihdr);
  Chunk(&png, "IDAT", std::string(reinterpret_cast<char*>(packed.data()), packed_len));
  Chunk(&png, "IEND", "");
  return png;
}

}  // namespace mailgrid::identity
