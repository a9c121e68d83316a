#include "libs/smtp/data_reader.h"

namespace mailgrid::smtp {

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
