#include "libs/smtp/data_reader.h"

#include <cstring>

namespace mailgrid::smtp {
namespace {

// The end (just past its CRLF) of the line starting at in[from] when that
// line is complete in `in` and ends with CRLF without a bare CR or LF
// before it; 0 otherwise. Such a line is copied whole (two memchr scans)
// instead of byte by byte through the states: a 100 KB body is ~1,300
// lines, all on relayd's path from the last read to DeliverBatch (issue 8).
// Tried only at a line start, so each byte is scanned by it at most once
// (a line full of bare CRs is not rescanned after each of them).
size_t PlainLineEnd(std::string_view in, size_t from) {
  const char* start = in.data() + from;
  const void* lf = std::memchr(start, '\n', in.size() - from);
  if (lf == nullptr) return 0;
  size_t len = static_cast<size_t>(static_cast<const char*>(lf) - start);  // up to the LF
  if (len == 0 || start[len - 1] != '\r') return 0;
  if (std::memchr(start, '\r', len - 1) != nullptr) return 0;
  return from + len + 1;
}

}  // namespace

void DotReader::Emit(std::string_view bytes) {
  size_ += bytes.size();
  if (max_size_ != 0 && size_ > max_size_) too_big_ = true;
  if (failed()) {
    // A failed message is answered with an error and never stored: free it
    // now rather than hold up to max_size of hostile bytes until the end.
    if (!message_.empty()) std::string().swap(message_);
    return;
  }
  message_.append(bytes);
}

size_t DotReader::Consume(std::string_view in) {
  size_t i = 0;
  while (i < in.size() && state_ != State::kDone) {
    switch (state_) {
      case State::kMid: {
        size_t j = i;
        while (j < in.size() && in[j] != '\r' && in[j] != '\n') ++j;
        if (j > i) Emit(in.substr(i, j - i));
        i = j;
        if (i == in.size()) break;
        if (in[i] == '\r') {
          state_ = State::kCr;
        } else {
          // Bare LF: content, and NOT a line start, so "\n.\r\n" or "\n.\n"
          // can never end the data.
          bare_lf_ = true;
          Emit("\n");
        }
        ++i;
        break;
      }
      case State::kCr:
        if (in[i] == '\n') {
          Emit("\r\n");
          ++i;
          state_ = State::kLineStart;
        } else {
          // Bare CR ("\r.\r\n" must not end the data either); in[i] is
          // processed again as ordinary content.
          bare_cr_ = true;
          Emit("\r");
          state_ = State::kMid;
        }
        break;
      case State::kLineStart:
        if (in[i] == '.') {
          state_ = State::kDot;
          ++i;
        } else if (size_t end = PlainLineEnd(in, i); end != 0) {
          Emit(in.substr(i, end - i));  // the next line starts at `end`
          i = end;
        } else {
          state_ = State::kMid;
        }
        break;
      case State::kDot:
        if (in[i] == '\r') {
          state_ = State::kDotCr;
          ++i;
        } else {
          // RFC 5321 §4.5.2: a leading dot followed by more text is removed
          // (".." -> "."); the byte after it is ordinary content.
          state_ = State::kMid;
        }
        break;
      case State::kDotCr:
        if (in[i] == '\n') {
          state_ = State::kDone;
          ++i;
        } else {
          // ".\r" then not LF: the CR is bare; the line was ".\r...".
          bare_cr_ = true;
          Emit("\r");
          state_ = State::kMid;
        }
        break;
      case State::kDone:
        break;
    }
  }
  return i;
}

}  // namespace mailgrid::smtp
