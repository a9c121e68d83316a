#include "services/mailstore/ingest.h"

#include <openssl/evp.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "libs/base/strings.h"
#include "libs/mail/decode.h"
#include "libs/mail/header.h"
#include "libs/mail/tokenize.h"
#include "services/mailstore/errors.h"
#include "services/mailstore/sections.h"

namespace mailgrid::mailstore {
namespace {

constexpr size_t kChunkBytes = kBodyChunkBytes;

void AddressesToProto(const std::optional<mail::AddressList>& list,
                      google::protobuf::RepeatedPtrField<v1::EnvelopeAddress>* out) {
  if (!list.has_value()) return;
  for (const mail::Address& a : list->items) {
    v1::EnvelopeAddress* e = out->Add();
    switch (a.kind) {
      case mail::Address::Kind::kMailbox:
        if (!a.raw_name.empty()) e->set_name(a.raw_name);
        if (!a.route.empty()) e->set_route(a.route);
        e->set_mailbox(a.local_part.empty() ? "MISSING_MAILBOX" : a.local_part);
        e->set_host(a.domain.empty() ? "MISSING_DOMAIN" : a.domain);
        break;
      case mail::Address::Kind::kGroupStart:
        e->set_mailbox(a.raw_name.empty() ? a.name : a.raw_name);
        break;
      default:  // group end: every field NIL
        break;
    }
  }
}

// A body repeats its words: each distinct token of one field is prefixed
// and put in the sorted set once (a hash lookup per repeat, not a
// prefixed string and a tree search).
void AddTerms(std::string_view prefix, std::string_view text, size_t cap,
              std::set<std::string>* out) {
  absl::flat_hash_set<std::string> seen;
  mail::ForEachToken(text, [&](std::string_view tok) {
    if (out->size() >= cap) return;
    absl::string_view t = ToAbsl(tok);
    if (seen.contains(t)) return;
    seen.emplace(t);
    out->insert(absl::StrCat(ToAbsl(prefix), t));
  });
}

void AddHeaderTerms(const mail::Header& h, size_t cap, std::set<std::string>* out) {
  for (const mail::HeaderField& field : h.fields) {
    if (out->size() >= cap) return;
    std::string name = absl::AsciiStrToLower(field.name);
    if (!HeaderFieldIndexed(name)) continue;
    AddTerms(HeaderTermPrefix(name), mail::DecodeHeader(field.value), cap, out);
  }
}

// The message with CRLF line ends. What relayd and IMAP APPEND send is
// already CRLF: that case is found with memchr and copied whole, instead of
// mail::ToCrlf's byte-by-byte rebuild (~0.1 ms for a 100 KB body on the
// leader's path to the Raft proposal, issue 8).
std::string CrlfCopy(std::string_view input) {
  for (size_t at = 0;; ++at) {
    const void* lf = std::memchr(input.data() + at, '\n', input.size() - at);
    if (lf == nullptr) return std::string(input);
    at = static_cast<size_t>(static_cast<const char*>(lf) - input.data());
    if (at == 0 || input[at - 1] != '\r') return mail::ToCrlf(input);  // a bare LF
  }
}

}  // namespace

bool HeaderFieldIndexed(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  static const char* const kSkipped[] = {
      // Their own terms.
      "subject", "from", "to", "cc",
      // Trace and signatures: hosts, hashes, timestamps.
      "received", "x-received", "received-spf", "dkim-signature", "x-google-dkim-signature",
      "domainkey-signature", "authentication-results",
      // On every message, always alike: postings of every UID for a search
      // nobody makes (SENT* answers dates).
      "date", "mime-version", "content-transfer-encoding",
      // "text/plain; charset=utf-8" on nearly every message: five postings
      // a message (~10% of a small delivery's kv ops) for a rare search.
      "content-type"};
  for (const char* s : kSkipped)
    if (name == s) return false;
  return !absl::StartsWith(ToAbsl(name), "arc-");
}

std::string HeaderTermPrefix(std::string_view lower_name) {
  return absl::StrCat("h:", ToAbsl(lower_name), ":");
}

std::vector<std::string> HeaderBlockTerms(std::string_view header_bytes, size_t cap) {
  if (header_bytes.empty()) return {};
  mail::Header h = mail::ParseHeaderLenient(header_bytes);
  std::set<std::string> terms;
  AddHeaderTerms(h, cap, &terms);
  return {terms.begin(), terms.end()};
}

std::string Sha256Hex(std::string_view bytes) {
  // Fetched from the provider once: EVP_sha256() makes every digest look
  // the implementation up again (OpenSSL 3's implicit fetch).
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &n, kSha256 != nullptr ? kSha256 : EVP_sha256(),
             nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

std::vector<std::string> CompressChunks(std::string_view raw, int level) {
  // One context per thread, reused: ZSTD_compress would allocate and free
  // a fresh context (its tables) for every message.
  struct Ctx {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ~Ctx() { ZSTD_freeCCtx(c); }
  };
  thread_local Ctx ctx;
  std::vector<std::string> out;
  for (size_t off = 0; off < raw.size() || (off == 0 && raw.empty()); off += kChunkBytes) {
    std::string_view piece = raw.substr(off, kChunkBytes);
    std::string frame(ZSTD_compressBound(piece.size()), '\0');
    size_t n = ctx.c != nullptr ? ZSTD_compressCCtx(ctx.c, frame.data(), frame.size(),
                                                    piece.data(), piece.size(), level)
                                : ZSTD_compress(frame.data(), frame.size(), piece.data(),
                                                piece.size(), level);
    frame.resize(ZSTD_isError(n) ? 0 : n);
    out.push_back(std::move(frame));
    if (raw.empty()) break;
  }
  return out;
}

absl::StatusOr<std::string> DecompressChunk(std::string_view frame) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > 2 * kChunkBytes)
    return absl::DataLossError("stored body chunk is not a zstd frame");
  std::string out(size, '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return absl::DataLossError("stored body chunk does not decompress");
  out.resize(n);
  return out;
}

std::optional<int64_t> ParseDateHeader(std::string_view value_in) {
  std::string v(value_in);
  // Drop comments ("(UTC)") and a leading day name.
  size_t paren = v.find('(');
  if (paren != std::string::npos) v.resize(paren);
  absl::string_view s = absl::StripAsciiWhitespace(v);
  if (size_t comma = s.find(','); comma != absl::string_view::npos) s = s.substr(comma + 1);
  s = absl::StripAsciiWhitespace(s);
  std::string text(s);
  static const char* formats[] = {"%d %b %Y %H:%M:%S %z", "%d %b %Y %H:%M %z",
                                  "%d %b %Y %H:%M:%S %Z", "%d %b %Y %H:%M:%S"};
  for (const char* f : formats) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(f, text, &t, &err)) return absl::ToUnixMicros(t);
  }
  // Obsolete zones (GMT, UT, EST...) map to +0000 for our purposes.
  if (size_t sp = text.rfind(' '); sp != std::string::npos) {
    std::string base = text.substr(0, sp) + " +0000";
    absl::Time t;
    std::string err;
    if (absl::ParseTime(formats[0], base, &t, &err)) return absl::ToUnixMicros(t);
  }
  return std::nullopt;
}

void ToProto(const mail::Envelope& in, v1::Envelope* out) {
  if (in.date) out->set_date(*in.date);
  if (in.subject) {
    out->set_subject(*in.subject);
    out->set_subject_decoded(mail::DecodeHeader(*in.subject));
  }
  if (in.in_reply_to) out->set_in_reply_to(*in.in_reply_to);
  if (in.message_id) out->set_message_id(*in.message_id);
  AddressesToProto(in.from, out->mutable_from());
  AddressesToProto(in.sender, out->mutable_sender());
  AddressesToProto(in.reply_to, out->mutable_reply_to());
  AddressesToProto(in.to, out->mutable_to());
  AddressesToProto(in.cc, out->mutable_cc());
  AddressesToProto(in.bcc, out->mutable_bcc());
  if (in.date) {
    if (auto micros = ParseDateHeader(*in.date)) {
      out->mutable_sent_at()->set_seconds(*micros / 1000000);
      out->mutable_sent_at()->set_nanos(static_cast<int32_t>((*micros % 1000000) * 1000));
    }
  }
}

void StructureToProto(const mail::Message& m, uint32_t index, v1::BodyPart* out) {
  const mail::Part& p = m.parts[index];
  const mail::ContentInfo& c = p.content;
  out->set_part_id(p.number);
  out->set_type(c.type);
  out->set_subtype(c.subtype);
  for (const auto& prm : c.params) {
    auto* q = out->add_params();
    q->set_name(prm.name);
    q->set_value(prm.value);
  }
  if (c.id) out->set_content_id(*c.id);
  if (c.description) out->set_description(*c.description);
  out->set_encoding(c.encoding.empty() ? "7bit" : c.encoding);
  out->set_size(p.body.size);
  out->set_lines(p.body_lines);
  if (c.md5) out->set_md5(*c.md5);
  if (!c.disposition.empty()) out->set_disposition(c.disposition);
  for (const auto& prm : c.disposition_params) {
    auto* q = out->add_disposition_params();
    q->set_name(prm.name);
    q->set_value(prm.value);
  }
  for (const auto& l : c.language) out->add_language(l);
  if (c.location) out->set_location(*c.location);
  if (p.kind == mail::PartKind::kMultipart) {
    for (uint32_t child : p.children) StructureToProto(m, child, out->add_parts());
  } else if (p.kind == mail::PartKind::kMessage && !p.children.empty()) {
    const mail::Part& inner = m.parts[p.children.front()];
    if (inner.envelope) ToProto(*inner.envelope, out->mutable_message_envelope());
    StructureToProto(m, p.children.front(), out->mutable_message_body());
  }
}

std::vector<std::string> QueryTerms(std::string_view prefix, std::string_view text) {
  std::vector<std::string> out;
  mail::ForEachToken(text, [&](std::string_view tok) {
    out.push_back(absl::StrCat(ToAbsl(prefix), ToAbsl(tok)));
  });
  return out;
}

absl::StatusOr<Ingested> Ingest(std::string_view input, const IngestLimits& limits) {
  if (input.size() > limits.max_message_bytes)
    return InvalidField("message", "TOO_LARGE",
                        absl::StrCat("message is ", input.size(), " bytes; the limit is ",
                                     limits.max_message_bytes));
  Ingested out;
  out.raw = CrlfCopy(input);
  if (out.raw.size() > limits.max_message_bytes + limits.max_message_bytes / 8)
    return InvalidField("message", "TOO_LARGE", "message too large once line ends are CRLF");
  mail::Limits ml;
  ml.max_message_bytes = std::max(out.raw.size(), limits.max_message_bytes) + 1;
  ml.max_parts = limits.max_parts;
  ml.max_depth = limits.max_depth;
  ml.header.max_line_bytes = limits.max_header_line_bytes;
  ml.reject_oversized_header = true;
  auto parsed = mail::ParseMessage(out.raw, ml);
  if (!parsed.ok())
    return InvalidField("message", "HEADER_TOO_LONG", std::string(parsed.status().message()));
  const mail::Message& m = *parsed;
  if (m.problems & mail::kPartLimit)
    return InvalidField("message", "TOO_MANY_PARTS",
                        absl::StrCat("message has more than ", limits.max_parts, " MIME parts"));
  if (m.problems & mail::kDepthLimit)
    return InvalidField("message", "TOO_DEEP",
                        absl::StrCat("MIME nesting deeper than ", limits.max_depth));
  out.sha_hex = Sha256Hex(out.raw);
  out.body.set_size(out.raw.size());
  ToProto(m.envelope(), out.body.mutable_envelope());
  StructureToProto(m, 0, out.body.mutable_structure());
  PartsToProto(m, &out.body);
  if (out.body.envelope().has_sent_at())
    out.sent_micros = out.body.envelope().sent_at().seconds() * 1000000;

  mail::SearchText text = mail::ExtractSearchText(out.raw, m);
  std::set<std::string> terms;
  AddTerms("s:", text.subject, limits.max_terms, &terms);
  AddTerms("f:", text.from, limits.max_terms, &terms);
  AddTerms("t:", text.to, limits.max_terms, &terms);
  AddTerms("c:", text.cc, limits.max_terms, &terms);
  AddHeaderTerms(m.header, limits.max_terms, &terms);
  AddTerms("b:", text.body, limits.max_terms, &terms);
  out.terms.assign(terms.begin(), terms.end());

  out.chunks = CompressChunks(out.raw, limits.zstd_level);
  uint64_t stored = 0;
  for (const auto& c : out.chunks) stored += c.size();
  out.body.set_chunks(static_cast<uint32_t>(out.chunks.size()));
  out.body.set_stored_bytes(stored);
  return out;
}

}  // namespace mailgrid::mailstore
