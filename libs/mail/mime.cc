#include "libs/mail/mime.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/mail/mime_fields.h"

namespace mailgrid::mail {
namespace {

constexpr uint32_t kHardMaxDepth = 128;

// Where a part's content stopped: at a boundary line of an enclosing
// multipart, or at the end of the input.
struct Stop {
  size_t line = 0;         // start of the boundary line (raw.size() at the end)
  size_t content_end = 0;  // the content before it, its line ending excluded
  size_t after = 0;        // first byte after the boundary line
  int level = -1;          // index in the boundary stack; -1: end of input
  bool close = false;      // "--boundary--"
};

bool IsContainerEncoding(std::string_view enc) {
  return enc.empty() || enc == "7bit" || enc == "8bit" || enc == "binary";
}

std::string ChildNumber(const std::string& parent, int n) {
  return parent.empty() ? absl::StrCat(n) : absl::StrCat(parent, ".", n);
}

class Parser {
 public:
  Parser(std::string_view raw, const Limits& limits, Message* msg)
      : raw_(raw),
        limits_(limits),
        msg_(msg),
        max_depth_(std::min(limits.max_depth, kHardMaxDepth)) {}

  absl::Status Run() {
    uint32_t root;
    ParsePart(0, kNoPart, "", 0, false, true, &root);
    if (!status_.ok()) return status_;
    for (const Part& p : msg_->parts) msg_->problems |= p.problems;
    return absl::OkStatus();
  }

 private:
  Part& At(uint32_t index) { return msg_->parts[index]; }

  // The boundary that the line at `line` (which starts with "--") opens, if
  // any: the longest match wins, so nested boundaries that prefix one
  // another are told apart; delimiters may carry trailing garbage.
  int MatchBoundary(size_t line, bool* close) const {
    int best = -1;
    size_t best_len = 0;
    std::string_view rest = raw_.substr(line + 2);
    for (size_t i = 0; i < boundaries_.size(); ++i) {
      std::string_view b = boundaries_[i];
      if (rest.size() >= b.size() && rest.compare(0, b.size(), b) == 0 && b.size() >= best_len) {
        best = static_cast<int>(i);
        best_len = b.size();
      }
    }
    if (best >= 0) *close = rest.substr(best_len, 2) == "--";
    return best;
  }

  Stop MakeStop(size_t from, size_t line, int level, bool close) const {
    Stop s;
    s.line = line;
    s.level = level;
    s.close = close;
    s.content_end = line;
    if (line > from && raw_[line - 1] == '\n') {
      s.content_end = line - 1;
      if (s.content_end > from && raw_[s.content_end - 1] == '\r') --s.content_end;
    }
    const void* nl = std::memchr(raw_.data() + line, '\n', raw_.size() - line);
    s.after = nl == nullptr ? raw_.size() : static_cast<const char*>(nl) - raw_.data() + 1;
    return s;
  }

  Stop EndOfInput() const {
    Stop s;
    s.line = s.content_end = s.after = raw_.size();
    return s;
  }

  bool IsBoundaryLine(size_t line, int* level, bool* close) const {
    if (line + 2 > raw_.size() || raw_[line] != '-' || raw_[line + 1] != '-') return false;
    *level = MatchBoundary(line, close);
    return *level >= 0;
  }

  // The next boundary line at or after `from` (a line start).
  Stop Scan(size_t from) const {
    if (boundaries_.empty()) return EndOfInput();
    int level;
    bool close = false;
    if (IsBoundaryLine(from, &level, &close)) return MakeStop(from, from, level, close);
    size_t pos = from;
    while (pos < raw_.size()) {
      const void* hit = memmem(raw_.data() + pos, raw_.size() - pos, "\n--", 3);
      if (hit == nullptr) break;
      size_t line = static_cast<const char*>(hit) - raw_.data() + 1;
      if (IsBoundaryLine(line, &level, &close)) return MakeStop(from, line, level, close);
      pos = line;
    }
    return EndOfInput();
  }

  // The end of the header that starts at `from`: after its blank line, or at
  // a boundary line that cuts it short (*cut is set), or at the end.
  size_t HeaderEnd(size_t from, Stop* cut_stop, bool* cut) const {
    size_t pos = from;
    while (pos < raw_.size()) {
      int level;
      bool close = false;
      if (!boundaries_.empty() && IsBoundaryLine(pos, &level, &close)) {
        *cut = true;
        *cut_stop = MakeStop(from, pos, level, close);
        return cut_stop->content_end;
      }
      const void* nl = std::memchr(raw_.data() + pos, '\n', raw_.size() - pos);
      if (nl == nullptr) return raw_.size();
      size_t at = static_cast<const char*>(nl) - raw_.data();
      bool blank = at == pos || (at == pos + 1 && raw_[pos] == '\r');
      pos = at + 1;
      if (blank) return pos;
    }
    return raw_.size();
  }

  void MakeOpaque(uint32_t index, uint32_t problem) {
    Part& p = At(index);
    p.kind = PartKind::kLeaf;
    p.content.type = "application";
    p.content.subtype = "octet-stream";
    p.content.params.clear();
    p.problems |= problem;
  }

  void SetBody(uint32_t index, size_t start, size_t end) {
    Part& p = At(index);
    p.body = {start, end - start};
    if (p.kind != PartKind::kMultipart) {
      p.body_lines = std::count(raw_.begin() + start, raw_.begin() + end, '\n');
    }
  }

  Stop ParsePart(size_t start, uint32_t parent, std::string number, uint32_t depth,
                 bool digest_child, bool message_root, uint32_t* index_out) {
    uint32_t index = static_cast<uint32_t>(msg_->parts.size());
    *index_out = index;
    msg_->parts.emplace_back();
    Part& part = At(index);
    part.parent = parent;
    part.number = std::move(number);
    part.depth = depth;
    part.message_root = message_root;

    Stop cut_stop;
    bool cut = false;
    size_t header_end = HeaderEnd(start, &cut_stop, &cut);
    Header header =
        ParseHeaderLenient(raw_.substr(start, header_end - start), limits_.header, start);
    if (header.overflow != HeaderOverflow::kNone) {
      part.problems |= kHeaderOverflow;
      if (index == 0 && limits_.reject_oversized_header) {
        status_ = absl::InvalidArgumentError(DescribeOverflow(header, limits_.header));
      }
    }
    if (!header.malformed.empty()) part.problems |= kMalformedHeaderLine;
    if (header.missing_blank_line) part.problems |= kMissingBlankLine;
    if (header.has_nul) part.problems |= kNulBytes;
    part.header = {start, header_end - start};
    part.content = ParseContentInfo(header, digest_child, limits_.decode, &part.problems);
    if (message_root) {
      AddressOptions options;
      options.decode = limits_.decode;
      part.envelope = std::make_shared<const Envelope>(BuildEnvelope(header, options));
    }
    if (index == 0) msg_->header = std::move(header);
    if (cut) {
      SetBody(index, header_end, header_end);
      return cut_stop;
    }
    if (part.content.type == "multipart") return ParseMultipart(index, header_end);
    if (part.content.Is("message", "rfc822")) return ParseEncapsulated(index, header_end);
    Stop s = Scan(header_end);
    SetBody(index, header_end, s.content_end);
    return s;
  }

  // Checks shared by both containers; false makes the part a leaf.
  bool ContainerAllowed(uint32_t index) {
    const Part& p = At(index);
    if (!IsContainerEncoding(p.content.encoding)) {
      if (p.content.type == "multipart") {
        MakeOpaque(index, kEncodedContainer);
      } else {
        // An encoded message/rfc822 keeps its type (as Dovecot does): the
        // client can decode it from BINARY or BODY with its encoding.
        At(index).problems |= kEncodedContainer;
      }
    } else if (p.depth >= max_depth_) {
      MakeOpaque(index, kDepthLimit);
    } else if (msg_->parts.size() >= limits_.max_parts) {
      MakeOpaque(index, kPartLimit);
    } else {
      return true;
    }
    return false;
  }

  Stop ParseLeafBody(uint32_t index, size_t body_start) {
    Stop s = Scan(body_start);
    SetBody(index, body_start, s.content_end);
    return s;
  }

  Stop ParseEncapsulated(uint32_t index, size_t body_start) {
    if (!ContainerAllowed(index)) return ParseLeafBody(index, body_start);
    At(index).kind = PartKind::kMessage;
    const Part& p = At(index);
    std::string number = p.number.empty() ? "1" : p.number;
    uint32_t child;
    Stop s = ParsePart(body_start, index, std::move(number), p.depth + 1, false, true, &child);
    At(index).children.push_back(child);
    SetBody(index, body_start, std::max(s.content_end, body_start));
    return s;
  }

  Stop ParseMultipart(uint32_t index, size_t body_start) {
    const MimeParameter* b = FindParameter(At(index).content.params, "boundary");
    if (b == nullptr || b->value.empty() || b->extended) {
      MakeOpaque(index, kMissingBoundary);
      return ParseLeafBody(index, body_start);
    }
    if (!ContainerAllowed(index)) return ParseLeafBody(index, body_start);
    At(index).kind = PartKind::kMultipart;
    std::string boundary = b->value;  // params may move while children are added
    bool digest = At(index).content.subtype == "digest";
    int level = static_cast<int>(boundaries_.size());
    boundaries_.push_back(boundary);
    Stop s = Scan(body_start);  // skips the preamble
    int child_no = 0;
    for (;;) {
      if (s.level != level) {  // end of input or an outer boundary: never closed
        At(index).problems |= child_no == 0 ? kNoParts : kMissingFinalBoundary;
        boundaries_.pop_back();
        break;
      }
      if (s.close) {
        boundaries_.pop_back();
        s = Scan(s.after);  // the epilogue runs to the next outer boundary
        break;
      }
      ++child_no;
      std::string number = ChildNumber(At(index).number, child_no);
      uint32_t child;
      if (msg_->parts.size() >= limits_.max_parts) {
        s = OpaqueRest(index, s.after, std::move(number), level, &child);
      } else {
        s = ParsePart(s.after, index, std::move(number), At(index).depth + 1, digest, false,
                      &child);
      }
      At(index).children.push_back(child);
    }
    SetBody(index, body_start, std::max(s.content_end, body_start));
    return s;
  }

  // Past max_parts: everything up to the multipart's close delimiter (or an
  // outer boundary) is one opaque part.
  Stop OpaqueRest(uint32_t parent, size_t start, std::string number, int level, uint32_t* out) {
    *out = static_cast<uint32_t>(msg_->parts.size());
    msg_->parts.emplace_back();
    Part& p = At(*out);
    p.parent = parent;
    p.number = std::move(number);
    p.depth = At(parent).depth + 1;
    p.header = {start, 0};
    MakeOpaque(*out, kPartLimit);
    Stop s = Scan(start);
    while (s.level == level && !s.close) s = Scan(s.after);
    SetBody(*out, start, s.content_end);
    return s;
  }

  std::string_view raw_;
  const Limits& limits_;
  Message* msg_;
  uint32_t max_depth_;
  std::vector<std::string> boundaries_;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<Message> ParseMessage(std::string_view raw, const Limits& limits) {
  if (raw.size() > limits.max_message_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message is ", raw.size(), " bytes; the limit is ", limits.max_message_bytes));
  }
  Message msg;
  msg.size = raw.size();
  Parser parser(raw, limits, &msg);
  absl::Status st = parser.Run();
  if (!st.ok()) return st;
  return msg;
}

absl::StatusOr<uint32_t> ResolvePart(const Message& message, const std::vector<uint32_t>& path) {
  uint32_t cur = 0;
  bool top = true;  // a non-multipart message is its own part 1
  for (uint32_t n : path) {
    const Part& p = message.parts[cur];
    if (n == 0) return absl::NotFoundError("part numbers start at 1");
    if (p.kind == PartKind::kMultipart) {
      if (n > p.children.size()) return absl::NotFoundError(absl::StrCat("no part ", n));
      cur = p.children[n - 1];
    } else if (top) {
      if (n != 1) return absl::NotFoundError(absl::StrCat("no part ", n));
    } else if (p.kind == PartKind::kMessage) {
      const Part& inner = message.parts[p.children.front()];
      if (inner.kind == PartKind::kMultipart) {
        if (n > inner.children.size()) return absl::NotFoundError(absl::StrCat("no part ", n));
        cur = inner.children[n - 1];
      } else if (n == 1) {
        cur = p.children.front();
      } else {
        return absl::NotFoundError(absl::StrCat("no part ", n));
      }
    } else {
      return absl::NotFoundError("part has no sub-parts");
    }
    top = false;
  }
  return cur;
}

absl::StatusOr<uint32_t> FindPart(const Message& message, std::string_view number) {
  std::vector<uint32_t> path;
  uint64_t n = 0;
  bool digit = false;
  for (size_t i = 0; i <= number.size(); ++i) {
    if (i == number.size() || number[i] == '.') {
      if (!digit) {
        if (number.empty()) break;
        return absl::InvalidArgumentError("bad part number");
      }
      path.push_back(static_cast<uint32_t>(n));
      n = 0;
      digit = false;
    } else if (number[i] >= '0' && number[i] <= '9' && n < 100000000) {
      n = n * 10 + (number[i] - '0');
      digit = true;
    } else {
      return absl::InvalidArgumentError("bad part number");
    }
  }
  return ResolvePart(message, path);
}

}  // namespace mailgrid::mail
