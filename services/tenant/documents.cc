// TenantService document RPCs: client-streaming upload, list, and download
// for platform reviewers.
//
// SECURITY: the bytes are hostile. Only the first bytes are interpreted
// (magic numbers for PDF, PNG, JPEG); the declared content type is
// advisory and the file is never parsed or rendered by tenantd. Size is
// enforced while streaming, so an oversize upload is refused at the limit,
// not after buffering it.
//
// Atomicity ("nothing is stored unless the whole stream is accepted"): a
// 20 MiB file does not fit one store write (16 MiB), so chunks are written
// as they arrive under a fresh document id, marked by a PendingUpload key,
// and the document becomes visible only in the final write (metadata +
// index + state transition + event, conditioned on the tenant record). Any
// failure deletes the chunks; a crash leaves the marker, and the background
// loop sweeps it and its chunks after an hour (TenantServiceImpl::PurgeExpired).
#include "services/tenant/documents.h"

#include <openssl/evp.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

std::optional<std::string> DetectContentType(std::string_view head) {
  if (head.substr(0, 5) == "%PDF-") return "application/pdf";
  if (head.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return "image/png";
  if (head.size() >= 3 && head.substr(0, 3) == "\xFF\xD8\xFF") return "image/jpeg";
  return std::nullopt;
}

namespace {

struct MdFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// Streams one upload into the store (chunks only; the commit is separate).
class ChunkWriter {
 public:
  ChunkWriter(TenantStore* store, std::string tenant_id, std::string doc_id)
      : store_(store),
        tenant_(std::move(tenant_id)),
        doc_(std::move(doc_id)),
        sha_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(sha_.get(), EVP_sha256(), nullptr);
  }

  absl::Status Add(std::string_view data) {
    EVP_DigestUpdate(sha_.get(), data.data(), data.size());
    buffer_.append(data);
    while (buffer_.size() >= kDocumentChunkBytes) {
      batch_.PutRaw(keys::DocumentChunk(tenant_, doc_, chunks_++),
                    buffer_.substr(0, kDocumentChunkBytes));
      buffer_.erase(0, kDocumentChunkBytes);
      if (++in_batch_ >= kChunksPerWrite) RETURN_IF_ERROR(Flush());
    }
    return absl::OkStatus();
  }

  // Writes what is left; returns the hex SHA-256 of everything added.
  absl::StatusOr<std::string> Finish() {
    if (!buffer_.empty()) {
      batch_.PutRaw(keys::DocumentChunk(tenant_, doc_, chunks_++), buffer_);
      buffer_.clear();
    }
    RETURN_IF_ERROR(Flush());
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha_.get(), digest, &len);
    return Hex(std::string_view(reinterpret_cast<const char*>(digest), len));
  }

  // Removes every chunk written so far (the upload was refused).
  void Abandon() {
    if (!wrote_anything_) return;
    Batch batch;
    batch.DeletePrefix(keys::DocumentChunkPrefix(tenant_, doc_))
        .Delete(keys::PendingUpload(tenant_, doc_));
    auto s = store_->Commit(std::move(batch));
    if (!s.ok())
      log::Warn("could not remove a refused upload; the sweeper will", {{"document", doc_}});
  }

  uint64_t chunks() const { return chunks_; }

 private:
  absl::Status Flush() {
    if (batch_.empty()) return absl::OkStatus();
    if (!wrote_anything_) {
      storage::PendingUpload marker;
      marker.set_document_id(doc_);
      *marker.mutable_started_at() = ToProto(absl::Now());
      batch_.Put(keys::PendingUpload(tenant_, doc_), marker);
    }
    wrote_anything_ = true;
    Batch batch = std::move(batch_);
    batch_ = Batch();
    in_batch_ = 0;
    return store_->Commit(std::move(batch)).status();
  }

  TenantStore* store_;
  std::string tenant_, doc_;
  std::unique_ptr<EVP_MD_CTX, MdFree> sha_;
  std::string buffer_;
  Batch batch_;
  size_t in_batch_ = 0;
  uint64_t chunks_ = 0;
  bool wrote_anything_ = false;
};

std::string LimitText(int64_t bytes) {
  if (bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  return absl::StrCat(bytes, " bytes");
}

}  // namespace

absl::Status TenantServiceImpl::UploadImpl(const Principal& p,
                                           grpc::ServerReader<v1::UploadDocumentRequest>* reader,
                                           v1::Document* out) {
  v1::UploadDocumentRequest msg;
  if (!reader->Read(&msg) || !msg.has_metadata()) {
    return InvalidField("metadata", "MISSING",
                        "the first message of the stream must carry the metadata");
  }
  const v1::DocumentMetadata meta = msg.metadata();
  ASSIGN_OR_RETURN(
      std::string tenant_id,
      AuthorizeTenant(p, meta.tenant_id(), {.platform_operator = true, .tenant_admin = true}));
  ASSIGN_OR_RETURN(std::string filename, ValidateFilename(meta.filename(), "metadata.filename"));
  // Refuse early when the state forbids uploads; checked again at commit.
  ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, tenant_id));
  RETURN_IF_ERROR(
      NextState(tenant_id, record.value.tenant().state(), Action::kUploadDocument).status());

  const std::string doc_id = NewId("doc-");
  ChunkWriter writer(store_, tenant_id, doc_id);
  std::string head;  // the first bytes, for the magic check
  std::optional<std::string> content_type;
  int64_t total = 0;
  absl::Status status;
  while (status.ok() && reader->Read(&msg)) {
    if (!msg.has_chunk()) {
      status = InvalidField("metadata", "DUPLICATE", "only the first message may carry metadata");
      break;
    }
    const std::string& chunk = msg.chunk();
    if (chunk.size() > kMaxStreamChunkBytes) {
      status = InvalidField("chunk", "TOO_LARGE", "one stream message may carry at most 1 MiB");
      break;
    }
    total += static_cast<int64_t>(chunk.size());
    if (total > options_->max_document_bytes) {
      status = InvalidField("chunk", "TOO_LARGE",
                            absl::StrCat("the document exceeds the ",
                                         LimitText(options_->max_document_bytes), " limit"));
      break;
    }
    if (!content_type.has_value() && head.size() < kMagicBytes) {
      head.append(chunk, 0, std::min(chunk.size(), kMagicBytes - head.size()));
      if (head.size() >= kMagicBytes) {
        content_type = DetectContentType(head);
        if (!content_type.has_value()) {
          status = InvalidField("chunk", "UNSUPPORTED_TYPE",
                                "not a PDF, PNG or JPEG file (checked by its content)");
          break;
        }
      }
    }
    status = writer.Add(chunk);
  }
  if (status.ok() && total == 0) status = InvalidField("chunk", "EMPTY", "the document is empty");
  if (status.ok() && !content_type.has_value()) {
    content_type = DetectContentType(head);
    if (!content_type.has_value()) {
      status = InvalidField("chunk", "UNSUPPORTED_TYPE",
                            "not a PDF, PNG or JPEG file (checked by its content)");
    }
  }
  std::string sha256;
  if (status.ok()) {
    auto digest = writer.Finish();
    if (digest.ok()) sha256 = *digest;
    status = digest.status();
  }
  if (status.ok()) {
    v1::Document doc;
    doc.set_document_id(doc_id);
    doc.set_tenant_id(tenant_id);
    doc.set_kind(meta.kind() == v1::DOCUMENT_KIND_UNSPECIFIED ? v1::DOCUMENT_KIND_OTHER
                                                              : meta.kind());
    doc.set_filename(filename);
    doc.set_content_type(*content_type);
    doc.set_size_bytes(total);
    doc.set_sha256(sha256);
    *doc.mutable_uploaded_by() = p.ToActor();
    status = store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto rec, ReadTenant(*store_, tenant_id));
      v1::Tenant& t = *rec.value.mutable_tenant();
      absl::Time now = absl::Now();
      ASSIGN_OR_RETURN(struct Transition tr,
                       NextState(tenant_id, t.state(), Action::kUploadDocument, now));
      *doc.mutable_uploaded_at() = ToProto(now);
      storage::DocumentRecord dr;
      *dr.mutable_document() = doc;
      dr.set_chunks(writer.chunks());
      Batch batch;
      batch.ExpectVersion(keys::Tenant(tenant_id), rec.version)
          .ExpectAbsent(keys::DocumentIndex(doc_id))
          .Put(keys::Document(tenant_id, doc_id), dr)
          .PutRaw(keys::DocumentIndex(doc_id), tenant_id)
          .Delete(keys::PendingUpload(tenant_id, doc_id));
      std::string why = absl::StrCat(filename, " (", *content_type, ", ", total, " bytes)");
      if (tr.from != tr.to) {
        t.set_state(tr.to);
        t.set_state_reason("");
        *t.mutable_updated_at() = ToProto(now);
        batch.Put(keys::Tenant(tenant_id), rec.value);
        AddEvent(batch, tenant_id, tr.from, tr.to, tr.action, p, why, now);
      } else {
        AddEvent(batch, tenant_id, v1::TENANT_STATE_UNSPECIFIED, v1::TENANT_STATE_UNSPECIFIED,
                 tr.action, p, why, now);
      }
      return batch;
    });
    if (status.ok()) *out = doc;
  }
  if (!status.ok()) writer.Abandon();
  return status;
}

grpc::Status TenantServiceImpl::UploadDocument(
    Ctx* ctx, grpc::ServerReader<v1::UploadDocumentRequest>* reader, v1::Document* resp) {
  return Serve(*auth_, ctx, "UploadDocument", [&](const Principal& p) -> absl::Status {
    absl::Status s = UploadImpl(p, reader, resp);
    if (s.ok())
      log::Info("document stored",
                {{"tenant", resp->tenant_id()}, {"document", resp->document_id()}});
    return s;
  });
}

grpc::Status TenantServiceImpl::ListDocuments(Ctx* ctx, const v1::ListDocumentsRequest* req,
                                              v1::ListDocumentsResponse* resp) {
  return Serve(*auth_, ctx, "ListDocuments", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id, AuthorizeTenant(p, req->tenant_id(),
                                                     {.platform_operator = true,
                                                      .platform_reviewer = true,
                                                      .tenant_admin = true}));
    ASSIGN_OR_RETURN(auto record, ReadTenant(*store_, id));
    ASSIGN_OR_RETURN(auto page, store_->Scan(keys::DocumentPrefix(id), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      storage::DocumentRecord dr;
      if (!dr.ParseFromString(e.value()))
        return absl::DataLossError("stored document record does not parse");
      *resp->add_documents() = dr.document();
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    resp->mutable_page_info()->set_total_size(-1);
    return absl::OkStatus();
  });
}

grpc::Status TenantServiceImpl::DownloadDocument(
    Ctx* ctx, const v1::DownloadDocumentRequest* req,
    grpc::ServerWriter<v1::DownloadDocumentResponse>* writer) {
  return Serve(*auth_, ctx, "DownloadDocument", [&](const Principal& p) -> absl::Status {
    absl::Status not_found = NotFound("document", req->document_id());
    if (req->document_id().empty())
      return InvalidField("document_id", "EMPTY", "must not be empty");
    ASSIGN_OR_RETURN(auto tenant_id, store_->GetRaw(keys::DocumentIndex(req->document_id())));
    if (!tenant_id.has_value()) {
      // Same answer as for a document of another tenant, after the same
      // role check, so the two cannot be told apart.
      RETURN_IF_ERROR(CheckAccess(p, "", {.platform_reviewer = true}, not_found));
      return not_found;
    }
    RETURN_IF_ERROR(CheckAccess(p, *tenant_id, {.platform_reviewer = true}, not_found));
    ASSIGN_OR_RETURN(auto dr, store_->Read<storage::DocumentRecord>(
                                  keys::Document(*tenant_id, req->document_id())));
    if (!dr.found()) return not_found;
    v1::DownloadDocumentResponse first;
    *first.mutable_metadata() = dr.value.document();
    if (!writer->Write(first)) return absl::CancelledError("client went away");
    std::string token;
    int64_t sent = 0;
    do {
      ASSIGN_OR_RETURN(
          auto page,
          store_->Scan(keys::DocumentChunkPrefix(*tenant_id, req->document_id()), 4, token));
      for (const auto& e : page.entries) {
        v1::DownloadDocumentResponse chunk;
        chunk.set_chunk(e.value());
        sent += static_cast<int64_t>(e.value().size());
        if (!writer->Write(chunk)) return absl::CancelledError("client went away");
      }
      token = page.next_token;
    } while (!token.empty());
    if (sent != dr.value.document().size_bytes()) {
      return absl::DataLossError(absl::StrCat("document ", req->document_id(), ": stored ", sent,
                                              " bytes of ", dr.value.document().size_bytes()));
    }
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
