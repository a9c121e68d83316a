// BODY[section] from the stored MIME offsets (BodyRecord.parts, written at
// append): the part is found from the offsets and only the bytes of the
// section are read, decompressing only the 1 MiB zstd chunks that the
// range touches (each at most once per message). Nothing is re-parsed but
// the few header bytes HEADER.FIELDS asks about.
//
// The bytes a client sees are the recipient's prepended header lines
// followed by the shared body: the root header is widened by the prepend and
// every other offset shifted by its length.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "libs/mail/imap_format.h"
#include "libs/mail/mime.h"
#include "services/mailstore/mailstore_storage.pb.h"

namespace mailgrid::mailstore {

class MailStore;

class StoredMessage {
 public:
  // `body` must have parts (parts_size() > 0) and outlive this object.
  StoredMessage(MailStore* store, std::string tenant, std::string sha,
                const storage::BodyRecord& body, std::string prepend);

  uint64_t size() const { return prepend_.size() + body_.size(); }
  // Bytes [offset, offset + length) of the message, clamped to its end.
  absl::StatusOr<std::string> Read(uint64_t offset, uint64_t length);

  // The section's bytes (RFC 3501 §6.4.5), decoded (IMAP BINARY) when
  // `decode` and the section is a part's body, cut to the partial window.
  // NotFoundError: no such part (the caller answers NIL);
  // InvalidArgumentError: HEADER/TEXT of a part that is not a message, MIME
  // without a part.
  absl::StatusOr<std::string> Section(const mail::SectionSpec& spec, bool decode,
                                      std::optional<std::pair<uint64_t, uint64_t>> partial);

  // Chunks decompressed so far (tests: a part fetch reads only its chunks).
  size_t chunks_read() const { return chunks_read_; }

 private:
  absl::StatusOr<std::string> Header(const mail::Part& part);
  absl::StatusOr<std::string> Range(mail::ByteRange r,
                                    std::optional<std::pair<uint64_t, uint64_t>> partial);

  MailStore* store_;
  std::string tenant_, sha_;
  const storage::BodyRecord& body_;
  std::string prepend_;
  mail::Message skeleton_;  // parts with kind, children and byte ranges only
  std::map<uint32_t, std::string> chunks_;
  size_t chunks_read_ = 0;
};

// The offsets of a parsed message, for BodyRecord.parts (ingest).
void PartsToProto(const mail::Message& m, storage::BodyRecord* out);

}  // namespace mailgrid::mailstore
