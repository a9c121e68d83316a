// StateMachine snapshots: create (a consistent SST dump of the state) and
// restore (ingest into a fresh data family, then swap in one synced write).
//
// Why SST files written from a RocksDB snapshot, rather than a Checkpoint or
// ExportColumnFamily: see README.md ("Snapshots"). In short: it is one
// consistent point without pausing Apply, it carries exactly the replicated
// state (never this replica's raft vote or log), and restore needs no reopen.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/kv/checksum.h"
#include "libs/kv/keys.h"
#include "libs/kv/state_machine.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_reader.h"
#include "rocksdb/sst_file_writer.h"

namespace mailgrid::kv {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kManifestName = "MANIFEST";
constexpr std::string_view kMetaFileName = "meta.sst";
constexpr uint32_t kSnapshotFormat = 1;

rocksdb::Slice S(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// Names come from a peer: only plain file names, never a path.
bool SafeFileName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || (c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<v1::SnapshotFile> DescribeFile(const std::string& dir, std::string_view name) {
  ASSIGN_OR_RETURN(FileDigest digest, Sha256File(absl::StrCat(dir, "/", ToAbsl(name))));
  v1::SnapshotFile f;
  f.set_name(std::string(name));
  f.set_size(digest.size);
  f.set_sha256(DigestBytes(digest.sha256));
  return f;
}

absl::Status CheckFile(const std::string& dir, const v1::SnapshotFile& f) {
  if (!SafeFileName(f.name())) {
    return absl::DataLossError(absl::StrCat("snapshot: bad file name '", f.name(), "'"));
  }
  absl::StatusOr<FileDigest> digest = Sha256File(absl::StrCat(dir, "/", f.name()));
  if (!digest.ok())
    return absl::DataLossError(absl::StrCat("snapshot: ", digest.status().message()));
  if (digest->size != f.size() || DigestBytes(digest->sha256) != f.sha256()) {
    return absl::DataLossError(absl::StrCat("snapshot file ", f.name(), ": checksum mismatch"));
  }
  return absl::OkStatus();
}

// Writes the entries of one iterator into SST files of about `file_bytes`
// each, named <stem>-NNNNNN.sst (or exactly `single_name` when set).
class SstSink {
 public:
  SstSink(const rocksdb::Options& options, std::string dir, std::string stem, uint64_t file_bytes)
      : options_(options), dir_(std::move(dir)), stem_(std::move(stem)), file_bytes_(file_bytes) {}

  absl::Status Add(const rocksdb::Slice& key, const rocksdb::Slice& value) {
    if (writer_ == nullptr) {
      // nullptr family: the files carry no column family id, so they can be
      // ingested into the fresh family of the receiver.
      writer_ = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), options_);
      std::string name =
          file_bytes_ == 0 ? stem_ : absl::StrFormat("%s-%06d.sst", stem_, names_.size() + 1);
      RETURN_IF_ERROR(FromRocks(writer_->Open(absl::StrCat(dir_, "/", name)), "snapshot open"));
      names_.push_back(name);
    }
    RETURN_IF_ERROR(FromRocks(writer_->Put(key, value), "snapshot write"));
    // Counted before compression: file sizes are approximate, by design.
    bytes_ += key.size() + value.size();
    if (file_bytes_ != 0 && bytes_ >= file_bytes_) return Finish();
    return absl::OkStatus();
  }

  absl::Status Finish() {
    if (writer_ == nullptr) return absl::OkStatus();
    absl::Status s = FromRocks(writer_->Finish(), "snapshot finish");
    writer_.reset();
    bytes_ = 0;
    return s;
  }

  const std::vector<std::string>& names() const { return names_; }

 private:
  rocksdb::Options options_;
  std::string dir_;
  std::string stem_;
  uint64_t file_bytes_;  // 0: one file named exactly stem_
  std::unique_ptr<rocksdb::SstFileWriter> writer_;
  uint64_t bytes_ = 0;  // key+value bytes in the open file
  std::vector<std::string> names_;
};

absl::Status DumpRange(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, rocksdb::ReadOptions ro,
                       std::string_view start, std::string_view end, SstSink* sink) {
  rocksdb::Slice lower = S(start), upper = S(end);
  ro.iterate_lower_bound = &lower;
  if (!end.empty()) ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;  // a full scan would evict the working set
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cf));
  for (it->Seek(lower); it->Valid(); it->Next()) RETURN_IF_ERROR(sink->Add(it->key(), it->value()));
  RETURN_IF_ERROR(FromRocks(it->status(), "snapshot scan"));
  return sink->Finish();
}

absl::Status WriteManifest(const std::string& dir, const v1::SnapshotManifest& manifest) {
  std::string body = manifest.SerializeAsString();
  std::ofstream out(absl::StrCat(dir, "/", ToAbsl(kManifestName)),
                    std::ios::binary | std::ios::trunc);
  std::string digest = DigestBytes(Sha256(body));
  out.write(digest.data(), static_cast<std::streamsize>(digest.size()));
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("snapshot: cannot write manifest in ", dir));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotInfo> StateMachine::CreateSnapshot(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("snapshot: mkdir ", dir, ": ", ec.message()));
  if (!fs::is_empty(dir, ec)) return absl::FailedPreconditionError("snapshot: directory not empty");

  rocksdb::DB* db = engine_->db();
  // Held shared for the whole dump: a restore cannot drop the family under us.
  absl::ReaderMutexLock data_lock(&engine_->data_mutex());
  const rocksdb::Snapshot* snap = db->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* snap;
    ~Release() { db->ReleaseSnapshot(snap); }
  } release{db, snap};
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;

  // The applied point as of the same sequence number as the data.
  ASSIGN_OR_RETURN(AppliedState applied, ReadAppliedState(*engine_, snap));
  v1::SnapshotManifest manifest;
  manifest.set_format(kSnapshotFormat);
  manifest.set_applied_index(applied.index);
  manifest.set_applied_term(applied.term);
  *manifest.mutable_conf() = applied.conf;

  rocksdb::ColumnFamilyDescriptor data_desc;
  RETURN_IF_ERROR(FromRocks(engine_->data()->GetDescriptor(&data_desc), "describe data"));
  rocksdb::Options data_options(db->GetDBOptions(), data_desc.options);
  SstSink data_sink(data_options, dir, "data", options_.snapshot_file_bytes);
  RETURN_IF_ERROR(DumpRange(db, engine_->data(), ro, "", "", &data_sink));

  rocksdb::ColumnFamilyDescriptor meta_desc;
  RETURN_IF_ERROR(FromRocks(engine_->meta()->GetDescriptor(&meta_desc), "describe meta"));
  rocksdb::Options meta_options(db->GetDBOptions(), meta_desc.options);
  SstSink meta_sink(meta_options, dir, std::string(kMetaFileName), 0);
  KeyRange sm = PrefixRange(meta_keys::kSmPrefix);
  RETURN_IF_ERROR(DumpRange(db, engine_->meta(), ro, sm.start, sm.end, &meta_sink));

  SnapshotInfo info;
  info.dir = dir;
  for (const std::string& name : data_sink.names()) {
    ASSIGN_OR_RETURN(v1::SnapshotFile f, DescribeFile(dir, name));
    *manifest.add_data_files() = f;
    info.files.push_back(std::move(f));
  }
  if (!meta_sink.names().empty()) {
    ASSIGN_OR_RETURN(v1::SnapshotFile f, DescribeFile(dir, kMetaFileName));
    *manifest.mutable_meta_file() = f;
    info.files.push_back(std::move(f));
  }
  RETURN_IF_ERROR(WriteManifest(dir, manifest));
  ASSIGN_OR_RETURN(v1::SnapshotFile mf, DescribeFile(dir, kManifestName));
  info.files.push_back(std::move(mf));
  info.applied = std::move(applied);
  return info;
}

absl::StatusOr<v1::SnapshotManifest> StateMachine::VerifySnapshot(const std::string& dir) {
  std::ifstream in(absl::StrCat(dir, "/", ToAbsl(kManifestName)), std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat("snapshot: no MANIFEST in ", dir));
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (raw.size() < 32) return absl::DataLossError("snapshot: MANIFEST truncated");
  std::string_view body = std::string_view(raw).substr(32);
  if (DigestBytes(Sha256(body)) != raw.substr(0, 32)) {
    return absl::DataLossError("snapshot: MANIFEST checksum mismatch");
  }
  v1::SnapshotManifest manifest;
  if (!manifest.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return absl::DataLossError("snapshot: MANIFEST unreadable");
  }
  if (manifest.format() != kSnapshotFormat) {
    return absl::DataLossError(absl::StrCat("snapshot: unknown format ", manifest.format()));
  }
  for (const v1::SnapshotFile& f : manifest.data_files()) RETURN_IF_ERROR(CheckFile(dir, f));
  if (manifest.has_meta_file()) {
    if (manifest.meta_file().name() != kMetaFileName) {
      return absl::DataLossError("snapshot: unexpected meta file name");
    }
    RETURN_IF_ERROR(CheckFile(dir, manifest.meta_file()));
  }
  return manifest;
}

absl::Status StateMachine::RestoreFromSnapshot(const std::string& dir) {
  ASSIGN_OR_RETURN(v1::SnapshotManifest manifest, VerifySnapshot(dir));
  if (manifest.applied_index() < applied_index()) {
    return absl::FailedPreconditionError(absl::StrCat("snapshot at ", manifest.applied_index(),
                                                      " is older than applied ", applied_index()));
  }
  rocksdb::DB* db = engine_->db();

  // The replacement meta records, read (and checked) before touching anything.
  rocksdb::WriteBatch batch;
  KeyRange sm = PrefixRange(meta_keys::kSmPrefix);
  batch.DeleteRange(engine_->meta(), sm.start, sm.end);
  if (manifest.has_meta_file()) {
    rocksdb::ColumnFamilyDescriptor meta_desc;
    RETURN_IF_ERROR(FromRocks(engine_->meta()->GetDescriptor(&meta_desc), "describe meta"));
    rocksdb::SstFileReader reader(rocksdb::Options(db->GetDBOptions(), meta_desc.options));
    std::string path = absl::StrCat(dir, "/", ToAbsl(kMetaFileName));
    RETURN_IF_ERROR(FromRocks(reader.Open(path), "snapshot: open meta"));
    RETURN_IF_ERROR(FromRocks(reader.VerifyChecksum(), "snapshot: meta"));
    std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      // Only state-machine records: a snapshot must never set this
      // replica's raft vote, log position or engine records.
      if (!InRange(it->key().ToStringView(), sm.start, sm.end)) {
        return absl::DataLossError("snapshot: meta file holds a non state-machine key");
      }
      batch.Put(engine_->meta(), it->key(), it->value());
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "snapshot: read meta"));
  }
  // The manifest is authoritative for the applied point.
  std::string applied = EncodeUint64(manifest.applied_index());
  AppendUint64(&applied, manifest.applied_term());
  batch.Put(engine_->meta(), S(meta_keys::kSmApplied), applied);
  batch.Put(engine_->meta(), S(meta_keys::kSmConf), manifest.conf().SerializeAsString());

  ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * fresh, engine_->CreateNextDataFamily());
  if (manifest.data_files_size() > 0) {
    std::vector<std::string> paths;
    for (const v1::SnapshotFile& f : manifest.data_files()) {
      paths.push_back(absl::StrCat(dir, "/", f.name()));
    }
    rocksdb::IngestExternalFileOptions io;
    // Copy, never link: the snapshot directory belongs to the transport,
    // which may reuse its files.
    io.move_files = false;
    io.verify_checksums_before_ingest = true;
    absl::Status ingested = FromRocks(db->IngestExternalFile(fresh, paths, io), "snapshot: ingest");
    if (!ingested.ok()) {
      engine_->AbandonDataFamily(fresh);
      return ingested;
    }
  }
  // Commit point: one synced write switches data family and meta records.
  RETURN_IF_ERROR(engine_->SwapDataFamily(fresh, &batch));
  prune_cursor_.clear();
  RETURN_IF_ERROR(LoadApplied());
  // A snapshot of a group that committed a newer format than this binary
  // applies: the state is installed, but nothing after it will be applied.
  return LoadFormat();
}

}  // namespace mailgrid::kv
