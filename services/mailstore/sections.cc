#include "services/mailstore/sections.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/mail/decode.h"
#include "libs/mail/header.h"
#include "services/mailstore/ingest.h"
#include "services/mailstore/keys.h"
#include "services/mailstore/mail_store.h"

namespace mailgrid::mailstore {

void PartsToProto(const mail::Message& m, storage::BodyRecord* out) {
  for (const mail::Part& p : m.parts) {
    storage::PartSpan* s = out->add_parts();
    s->set_parent(p.parent == mail::kNoPart ? 0 : p.parent + 1);
    s->set_kind(static_cast<uint32_t>(p.kind));
    s->set_header_offset(p.header.offset);
    s->set_header_size(p.header.size);
    s->set_body_offset(p.body.offset);
    s->set_body_size(p.body.size);
    s->set_encoding(p.content.encoding);
    s->set_missing_blank_line((p.problems & mail::kMissingBlankLine) != 0);
  }
}

StoredMessage::StoredMessage(MailStore* store, std::string tenant, std::string sha,
                             const storage::BodyRecord& body, std::string prepend)
    : store_(store),
      tenant_(std::move(tenant)),
      sha_(std::move(sha)),
      body_(body),
      prepend_(std::move(prepend)) {
  const size_t shift = prepend_.size();
  skeleton_.size = size();
  skeleton_.parts.resize(body.parts_size());
  for (int i = 0; i < body.parts_size(); ++i) {
    const storage::PartSpan& s = body.parts(i);
    mail::Part& p = skeleton_.parts[i];
    p.kind = static_cast<mail::PartKind>(s.kind());
    p.header = {s.header_offset() + shift, s.header_size()};
    if (i == 0) p.header = {0, s.header_size() + shift};  // the prepend is header lines
    p.body = {s.body_offset() + shift, s.body_size()};
    p.content.encoding = s.encoding();
    if (s.missing_blank_line()) p.problems |= mail::kMissingBlankLine;
    // Pre-order: a parent precedes its children, so children come in order.
    if (s.parent() > 0 && s.parent() <= static_cast<uint32_t>(i)) {
      p.parent = s.parent() - 1;
      skeleton_.parts[p.parent].children.push_back(static_cast<uint32_t>(i));
    }
  }
}

absl::StatusOr<std::string> StoredMessage::Read(uint64_t offset, uint64_t length) {
  std::string out;
  const uint64_t end = std::min<uint64_t>(size(), offset + std::min<uint64_t>(length, size()));
  if (offset >= end) return out;
  out.reserve(end - offset);
  const uint64_t p = prepend_.size();
  if (offset < p) out.append(prepend_, offset, std::min(end, p) - offset);
  if (end <= p) return out;
  const uint64_t b0 = std::max(offset, p) - p, b1 = end - p;  // in the shared body
  for (uint64_t c = b0 / kBodyChunkBytes; c * kBodyChunkBytes < b1; ++c) {
    if (c >= body_.chunks()) return absl::DataLossError("body shorter than its record");
    auto it = chunks_.find(static_cast<uint32_t>(c));
    if (it == chunks_.end()) {
      ASSIGN_OR_RETURN(auto got, store_->Get(keys::BodyChunk(tenant_, sha_, static_cast<uint32_t>(c))));
      if (!got.found()) return absl::DataLossError(absl::StrCat("body ", sha_, " chunk missing"));
      ASSIGN_OR_RETURN(std::string piece, DecompressChunk(got.value()));
      ++chunks_read_;
      it = chunks_.emplace(static_cast<uint32_t>(c), std::move(piece)).first;
    }
    const uint64_t base = c * kBodyChunkBytes;
    const uint64_t from = std::max(b0, base) - base;
    const uint64_t to = std::min<uint64_t>(b1 - base, it->second.size());
    if (from < to) out.append(it->second, from, to - from);
  }
  return out;
}

absl::StatusOr<std::string> StoredMessage::Range(
    mail::ByteRange r, std::optional<std::pair<uint64_t, uint64_t>> partial) {
  if (!partial) return Read(r.offset, r.size);
  // Only the <origin.length> window is read.
  if (partial->first >= r.size) return std::string();
  return Read(r.offset + partial->first, std::min<uint64_t>(partial->second, r.size - partial->first));
}

absl::StatusOr<std::string> StoredMessage::Header(const mail::Part& part) {
  ASSIGN_OR_RETURN(std::string h, Read(part.header.offset, part.header.size));
  if (part.problems & mail::kMissingBlankLine) {
    // IMAP sends a header with its blank line (as mail::ResolveSection does).
    if (!h.empty() && h.back() != '\n') h += "\r\n";
    h += "\r\n";
  }
  return h;
}

absl::StatusOr<std::string> StoredMessage::Section(
    const mail::SectionSpec& spec, bool decode,
    std::optional<std::pair<uint64_t, uint64_t>> partial) {
  using Text = mail::SectionSpec::Text;
  if (skeleton_.parts.empty()) return absl::DataLossError("no stored structure");
  uint32_t index = 0;
  if (!spec.part.empty()) {
    ASSIGN_OR_RETURN(index, mail::ResolvePart(skeleton_, spec.part));
  }
  const mail::Part& part = skeleton_.parts[index];
  auto cut = [&](std::string s) {
    if (partial) s = std::string(mail::ApplyPartial(s, partial->first, partial->second));
    return s;
  };
  switch (spec.text) {
    case Text::kNone: {
      if (decode) {
        // IMAP BINARY: the part's body without its transfer encoding.
        ASSIGN_OR_RETURN(std::string bytes, Read(part.body.offset, part.body.size));
        mail::Part local = part;
        local.body = {0, bytes.size()};
        std::optional<std::string> decoded = mail::DecodedBody(bytes, local);
        if (spec.part.empty()) {
          // As before: the whole message unless its body decodes.
          if (!decoded) {
            ASSIGN_OR_RETURN(std::string all, Read(0, size()));
            return cut(std::move(all));
          }
        }
        return cut(decoded ? std::move(*decoded) : std::move(bytes));
      }
      return Range(spec.part.empty() ? mail::ByteRange{0, size()} : part.body, partial);
    }
    case Text::kMime: {
      if (spec.part.empty()) return absl::InvalidArgumentError("MIME needs a part number");
      ASSIGN_OR_RETURN(std::string h, Header(part));
      return cut(std::move(h));
    }
    default:
      break;
  }
  // HEADER, HEADER.FIELDS[.NOT] and TEXT address a message: the top level
  // or the message inside a message/rfc822 part.
  const mail::Part* msg = &part;
  if (!spec.part.empty()) {
    if (part.kind != mail::PartKind::kMessage || part.children.empty())
      return absl::InvalidArgumentError("HEADER and TEXT need a message/rfc822 part");
    msg = &skeleton_.parts[part.children.front()];
  }
  if (spec.text == Text::kText) return Range(msg->body, partial);
  if (spec.text == Text::kHeader) {
    ASSIGN_OR_RETURN(std::string h, Header(*msg));
    return cut(std::move(h));
  }
  ASSIGN_OR_RETURN(std::string raw, Read(msg->header.offset, msg->header.size));
  mail::Header header = mail::ParseHeaderLenient(raw, mail::HeaderLimits{}, 0);
  const bool want = spec.text == Text::kHeaderFields;
  std::string out;
  for (const mail::HeaderField& f : header.fields) {
    bool listed = std::any_of(spec.fields.begin(), spec.fields.end(), [&](const std::string& n) {
      return mail::HeaderNameEquals(n, f.name);
    });
    if (listed != want) continue;
    std::string_view line = f.line.In(raw);
    out.append(line);
    if (line.empty() || line.back() != '\n') out += "\r\n";
  }
  out += "\r\n";
  return cut(std::move(out));
}

}  // namespace mailgrid::mailstore
