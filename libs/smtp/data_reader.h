// The DATA content reader (RFC 5321 §4.1.1.4, §4.5.2): finds the end of the
// message and undoes dot-stuffing, incrementally, over bytes in any split.
//
// SECURITY (SMTP smuggling, CVE-2023-51764/51765/51766 class): the end of
// data is ONLY <CRLF>.<CRLF>, where the first CRLF is a real CR LF pair (or
// the start of the data). A bare LF or bare CR never starts a line here, so
// "\n.\n", "\n.\r\n", "\r.\r\n" and "\r\n.\n" are plain content — and any
// bare CR or LF marks the message as bad: the session rejects it when the
// real end arrives, so a second message can never be cut out of the first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace mailgrid::smtp {

class DotReader {
 public:
  // Messages whose unstuffed size exceeds `max_size` are flagged too_big()
  // and no longer stored (their end is still found). 0 means no limit.
  explicit DotReader(uint64_t max_size) : max_size_(max_size) {}

  // Consumes bytes of `input` up to and including the end-of-data marker
  // and returns how many it consumed (all of them unless done()).
  size_t Consume(std::string_view input);

  bool done() const { return state_ == State::kDone; }
  bool too_big() const { return too_big_; }
  bool bare_cr() const { return bare_cr_; }
  bool bare_lf() const { return bare_lf_; }
  bool failed() const { return too_big_ || bare_cr_ || bare_lf_; }
  // Octets of unstuffed content seen so far, stored or not.
  uint64_t size() const { return size_; }
  // The content with CRLF line ends and stuffing removed; the CRLF before
  // the final dot belongs to the last line. Empty once failed().
  std::string TakeMessage() { return std::move(message_); }

 private:
  enum class State {
    kLineStart,  // after a real CRLF (or at the start): a dot is special
    kDot,        // "." at line start
    kDotCr,      // ".\r" at line start: LF ends the data
    kMid,        // inside a line
    kCr,         // "\r" inside a line, waiting for its LF
    kDone,
  };

  void Emit(std::string_view bytes);

  uint64_t max_size_;
  State state_ = State::kLineStart;
  uint64_t size_ = 0;
  bool too_big_ = false;
  bool bare_cr_ = false;
  bool bare_lf_ = false;
  std::string message_;
};

}  // namespace mailgrid::smtp
