// What happens to a message once, at append: line ends made CRLF, limits
// checked, the MIME tree parsed (libs/mail), ENVELOPE and BODYSTRUCTURE
// converted to their proto form, search terms extracted, SHA-256 taken and
// the bytes zstd-compressed in chunks. Reads use the stored results and
// never re-parse: flags/envelope/structure are stored, and BODY[section]
// reads its bytes by the part offsets stored with the body (sections.h).
//
// SECURITY: the input is hostile; libs/mail never fails on content, and
// the limits here refuse, before anything is stored, what would be too
// big: INVALID_ARGUMENT field "message" reason TOO_LARGE, TOO_MANY_PARTS,
// TOO_DEEP or HEADER_TOO_LONG (mailbox.proto LIMITS).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/mail/mime.h"
#include "services/mailstore/mailstore_storage.pb.h"

namespace mailgrid::mailstore { namespace v1 = ::mailgrid::mailstore::v1; }

namespace mailgrid::mailstore {

// The uncompressed bytes per stored chunk (chunk n holds [n, n+1) MiB).
inline constexpr size_t kBodyChunkBytes = 1u << 20;

struct IngestLimits {
  size_t max_message_bytes = 50u << 20;
  uint32_t max_parts = 10000;
  uint32_t max_depth = 32;
  size_t max_header_line_bytes = 64u << 10;
  size_t max_terms = 4000;  // distinct index terms per message (headers first)
  int zstd_level = 3;
};

struct Ingested {
  std::string raw;      // CRLF line ends: the stored bytes
  std::string sha_hex;  // lower-case hex SHA-256 of raw
  storage::BodyRecord body;  // refcount 0; size, envelope, structure
  std::vector<std::string> terms;  // sorted, unique (header fields' "h:" terms included)
  int64_t sent_micros = 0;
  std::vector<std::string> chunks;  // zstd frames of <= 1 MiB input each
  bool chunks_prewritten = false;   // big bodies: chunks written before the commit
};

absl::StatusOr<Ingested> Ingest(std::string_view input, const IngestLimits& limits);

// Search terms of a query string for one field prefix ("s:", "b:", ...).
std::vector<std::string> QueryTerms(std::string_view prefix, std::string_view text);

// Header fields in the index (SEARCH HEADER <field> as a posting lookup):
// each field's decoded value tokenised as "h:" + lower-case name + ":" +
// token. Not indexed: Subject/From/To/Cc (their own "s:"/"f:"/"t:"/"c:"
// terms answer them), names over 64 bytes, the trace and signature fields
// machines write on every message (Received, DKIM-Signature, ARC-*,
// Authentication-Results, ...: hosts, hashes and timestamps) and Date,
// MIME-Version, Content-Transfer-Encoding, Content-Type (alike on every message): each
// would add postings to every message for searches nobody makes. A search
// on those reads every message's header, as before.
bool HeaderFieldIndexed(std::string_view lower_name);
// "h:<lower-case name>:".
std::string HeaderTermPrefix(std::string_view lower_name);
// The "h:" terms of a header block (a recipient's prepended lines), sorted and unique.
std::vector<std::string> HeaderBlockTerms(std::string_view header_bytes, size_t cap);

// Chunked zstd.
std::vector<std::string> CompressChunks(std::string_view raw, int level);
absl::StatusOr<std::string> DecompressChunk(std::string_view frame);

std::string Sha256Hex(std::string_view bytes);

// RFC 5322 Date: -> micros since the epoch (nullopt when unparseable).
std::optional<int64_t> ParseDateHeader(std::string_view value);

// Converters from libs/mail to the proto shapes.
void ToProto(const mail::Envelope& in, v1::Envelope* out);
void StructureToProto(const mail::Message& m, uint32_t index, v1::BodyPart* out);

}  // namespace mailgrid::mailstore
