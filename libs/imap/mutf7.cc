#include "libs/imap/mutf7.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "libs/imap/utf8.h"

namespace mailgrid::imap {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

bool IsDirect(uint32_t cp) { return cp >= 0x20 && cp <= 0x7e; }

absl::Status Invalid(std::string_view why) {
  return absl::InvalidArgumentError(std::string("invalid modified UTF-7: ").append(why));
}

// Accumulates UTF-16 code units into modified BASE64.
class ShiftEncoder {
 public:
  explicit ShiftEncoder(std::string* out) : out_(out) {}
  void Unit(uint16_t u) {
    bits_ = (bits_ << 16) | u;
    nbits_ += 16;
    while (nbits_ >= 6) {
      nbits_ -= 6;
      out_->push_back(kAlphabet[(bits_ >> nbits_) & 0x3F]);
    }
    bits_ &= (1u << nbits_) - 1;
  }
  void Close() {
    if (nbits_ > 0) out_->push_back(kAlphabet[(bits_ << (6 - nbits_)) & 0x3F]);
    out_->push_back('-');
    bits_ = 0;
    nbits_ = 0;
  }

 private:
  std::string* out_;
  uint32_t bits_ = 0;
  int nbits_ = 0;
};

// Decodes one shift body (between "&" and "-") into *out.
absl::Status DecodeShift(std::string_view body, std::string* out) {
  uint32_t bits = 0;
  int nbits = 0;
  uint32_t high = 0;  // pending high surrogate
  for (char c : body) {
    const int v = Base64Value(c);
    if (v < 0)
      return Invalid(absl::StrFormat("byte 0x%02X inside a shift", static_cast<unsigned char>(c)));
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits < 16) continue;
    nbits -= 16;
    const uint32_t unit = (bits >> nbits) & 0xFFFF;
    bits &= (1u << nbits) - 1;
    if (high != 0) {
      if (unit < 0xDC00 || unit > 0xDFFF) return Invalid("unpaired high surrogate");
      AppendUtf8(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00), out);
      high = 0;
    } else if (unit >= 0xD800 && unit <= 0xDBFF) {
      high = unit;
    } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
      return Invalid("unpaired low surrogate");
    } else if (IsDirect(unit)) {
      return Invalid("shift encodes a printable ASCII character");
    } else if (unit == 0) {
      return Invalid("shift encodes U+0000");
    } else {
      AppendUtf8(unit, out);
    }
  }
  if (high != 0) return Invalid("unpaired high surrogate");
  if (nbits >= 6) return Invalid("dangling BASE64 character");
  if (bits != 0) return Invalid("non-zero padding bits");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> EncodeMutf7(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() + utf8.size() / 2);
  ShiftEncoder shift(&out);
  bool in_shift = false;
  size_t i = 0;
  while (i < utf8.size()) {
    const int32_t cp = DecodeUtf8(utf8, &i);
    if (cp < 0) return absl::InvalidArgumentError("mailbox name is not valid UTF-8");
    const auto u = static_cast<uint32_t>(cp);
    if (IsDirect(u)) {
      if (in_shift) {
        shift.Close();
        in_shift = false;
      }
      out.push_back(static_cast<char>(u));
      if (u == '&') out.push_back('-');
      continue;
    }
    if (!in_shift) {
      out.push_back('&');
      in_shift = true;
    }
    if (u >= 0x10000) {
      const uint32_t v = u - 0x10000;
      shift.Unit(static_cast<uint16_t>(0xD800 + (v >> 10)));
      shift.Unit(static_cast<uint16_t>(0xDC00 + (v & 0x3FF)));
    } else {
      shift.Unit(static_cast<uint16_t>(u));
    }
  }
  if (in_shift) shift.Close();
  return out;
}

absl::StatusOr<std::string> DecodeMutf7(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  bool after_shift = false;  // the previous input was a "&...-" shift
  size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (!IsDirect(c)) return Invalid(absl::StrFormat("byte 0x%02X must be encoded", c));
    if (c != '&') {
      out.push_back(static_cast<char>(c));
      after_shift = false;
      ++i;
      continue;
    }
    if (i + 1 < in.size() && in[i + 1] == '-') {
      out.push_back('&');
      after_shift = false;
      i += 2;
      continue;
    }
    // Two shifts back to back encode what one shift would: not canonical.
    if (after_shift) return Invalid("adjacent shifts");
    const size_t end = in.find('-', i + 1);
    if (end == std::string_view::npos) return Invalid("unterminated shift");
    if (absl::Status s = DecodeShift(in.substr(i + 1, end - i - 1), &out); !s.ok()) return s;
    after_shift = true;
    i = end + 1;
  }
  return out;
}

}  // namespace mailgrid::imap
