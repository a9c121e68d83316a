#include "libs/kv/engine.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/strings.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"

namespace mailgrid::kv {
namespace {

// "data" is generation 0, "data.<n>" generation n; anything else is not a
// data family.
bool ParseDataGeneration(std::string_view name, uint64_t* generation) {
  if (name == kDataFamilyBase) {
    *generation = 0;
    return true;
  }
  std::string prefix = absl::StrCat(ToAbsl(kDataFamilyBase), ".");
  if (name.substr(0, prefix.size()) != prefix) return false;
  return absl::SimpleAtoi(ToAbsl(name.substr(prefix.size())), generation) && *generation > 0;
}

bool IsDataFamily(std::string_view name) {
  uint64_t generation = 0;
  return ParseDataGeneration(name, &generation);
}

std::string DataFamilyName(uint64_t generation) {
  if (generation == 0) return std::string(kDataFamilyBase);
  return absl::StrCat(ToAbsl(kDataFamilyBase), ".", generation);
}

// Keys written one after another mostly share their parent path ("a/b/"
// of "a/b/c"): a mailbox's messages by UID, a client's keys by sequence.
// RocksDB remembers one skiplist insert position per such prefix, so the
// next key of a run goes in beside the previous one instead of a search
// from the top of a 16 MB memtable (that search was 14% of a replica's
// raft-loop CPU at 64 clients, perf at stop 28).
//
// RocksDB 7.8 keeps ONE hint map per memtable for both its skiplists,
// point entries and range deletions, so a range deletion whose start key
// is in this domain would walk a point list's splice (an assertion in
// Debian's build, memtable corruption without one; found at stop 27 by
// mailstore's expunge, test InterleavedKeyRunsAndRangeDeletionsReadBackInOrder).
// Hence the domain leaves out keys ending in '\0', and the state machine
// starts every range deletion at such a key (KeyAfter in engine.h).
class ParentPathTransform final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "mailgrid.ParentPath"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), View(key).rfind('/') + 1);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return !key.empty() && key[key.size() - 1] != '\0' &&
           View(key).rfind('/') != std::string_view::npos;
  }

 private:
  static std::string_view View(const rocksdb::Slice& key) { return {key.data(), key.size()}; }
};

// The options of the family `name`: what it holds decides them.
rocksdb::ColumnFamilyOptions FamilyOptions(const std::shared_ptr<rocksdb::Cache>& cache,
                                           const EngineOptions& options, std::string_view name) {
  const bool bloom = name != kRaftLogFamily;  // the log is read by index range only
  const bool meta = name == kMetaFamily;
  const bool data = IsDataFamily(name);
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = options.family_write_buffer_bytes;
  cf.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // Index and filter blocks live in the cache (bounded) rather than beside
  // it; the level-0 ones stay pinned, as they are read on every lookup.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Point lookups (conditions, Get, idempotency records) dominate data/meta.
  if (bloom) table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  if (bloom) {
    // And in the memtable: most idempotency-record lookups are for ids never
    // seen (every new write), and a bloom miss skips the skiplist search.
    cf.memtable_prefix_bloom_size_ratio = 0.02;
    cf.memtable_whole_key_filtering = true;
  }
  if (data) cf.memtable_insert_with_hint_prefix_extractor = std::make_shared<ParentPathTransform>();
  if (meta) {
    // The meta family interleaves a few ascending key runs (idempotency
    // records of a client by seq, expiry keys by index, the applied record).
    // One insert position remembered per 7-byte kind ("sm/req/", "sm/exp/",
    // ...) instead of one for the whole memtable keeps each run's inserts
    // next to the previous one instead of a full skiplist search each.
    //
    // Range deletions and hints (ParentPathTransform above): the meta
    // family's only range deletion starts at "sm/", shorter than 7 bytes,
    // so outside this domain: keep it so.
    cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(7));
  }
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

// RocksDB's own diagnostics go to our log (stderr), never to a LOG file in
// the DB directory. Why: on a full disk, RocksDB 7.8's file logger
// (EnvLogger) keeps appending to its LOG after a failed write, and Debian's
// build (assertions on) then aborts in WritableFileWriter
// (`sync_without_flush_called_`). That is how mailstored died in
// tests/faults/test_disk_full.py: the core dump showed the
// SstFileManager's recovery thread logging while the disk was still full.
// A logger that does not touch the disk cannot fail that way, and one log
// stream is easier to read anyway. INFO (flushes, compactions, recovery
// steps) becomes our debug level; warnings and errors stay what they are.
class RocksLogger final : public rocksdb::Logger {
 public:
  explicit RocksLogger(std::string path)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), path_(std::move(path)) {}

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    // HEADER is the options dump at open: hundreds of lines, not news.
    if (level < GetInfoLogLevel() || level >= rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char buf[2048];
    const int n = vsnprintf(buf, sizeof(buf), format, ap);
    if (n < 0) return;
    std::string_view msg(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
    log::Level ours = log::Level::kDebug;
    if (level == rocksdb::InfoLogLevel::WARN_LEVEL) ours = log::Level::kWarn;
    // Except the error RocksDB logs on every first open ("Error when
    // reading <dir> dir NotFound"): the directory is about to be created.
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL &&
        !(msg.find("Error when reading") == 0 && msg.find("NotFound") != std::string_view::npos)) {
      ours = log::Level::kError;
    }
    log::Write(ours, "rocksdb", {{"db", path_}, {"detail", msg}});
  }

 private:
  const std::string path_;
};

}  // namespace

std::shared_ptr<rocksdb::Logger> NewRocksLogger(const std::string& path) {
  return std::make_shared<RocksLogger>(path);
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(ToAbsl(what), ": ", s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(absl::StrCat("disk full: ", msg));
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const std::string& path,
                                                     const EngineOptions& options) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 5;
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // A failed WAL write stops the DB (a "background error") until it
  // recovers: no later write may reach a WAL file that has seen an error.
  db_options.paranoid_checks = true;
  db_options.info_log = NewRocksLogger(path);
  if (options.env != nullptr) db_options.env = options.env;

  std::vector<std::string> existing;
  rocksdb::Status list = rocksdb::DB::ListColumnFamilies(db_options, path, &existing);
  if (!list.ok()) {
    // No DB yet is the only acceptable reason; anything else is real.
    rocksdb::Status exists = db_options.env->FileExists(path + "/CURRENT");
    if (!exists.IsNotFound()) return FromRocks(list, "list column families");
    existing = {rocksdb::kDefaultColumnFamilyName, std::string(kDataFamilyBase)};
  }

  // 4 shards, not RocksDB's default of 64 (2 MB each at 128 MB): a full
  // filter block of a large SST (~1 MB at 64 MB) did not stay in a 2 MB
  // shard that also holds memtable charges, so every Get read and
  // checksummed it again (mailstore's fill: 19% of CPU, 500 KB read per
  // message). Few threads use one engine, so shard contention is no issue.
  std::shared_ptr<rocksdb::Cache> cache =
      rocksdb::NewLRUCache(options.block_cache_bytes, /*num_shard_bits=*/2);
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_bytes, cache);
  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName, std::string(kMetaFamily),
                                    std::string(kRaftLogFamily)};
  for (const std::string& name : existing) {
    uint64_t generation = 0;
    if (ParseDataGeneration(name, &generation)) names.push_back(name);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, FamilyOptions(cache, options, name));
  }

  auto engine = std::unique_ptr<Engine>(new Engine());
  engine->path_ = path;
  rocksdb::Status s =
      rocksdb::DB::Open(db_options, path, descriptors, &engine->handles_, &engine->db_);
  if (!s.ok()) return FromRocks(s, absl::StrCat("open ", path));
  engine->meta_ = engine->handles_[1];
  engine->raft_log_ = engine->handles_[2];

  std::string current = std::string(kDataFamilyBase);
  s = engine->db_->Get(
      rocksdb::ReadOptions(), engine->meta_,
      rocksdb::Slice(meta_keys::kEngineDataFamily.data(), meta_keys::kEngineDataFamily.size()),
      &current);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "read current data family");

  // Keep the current data family; drop any other (a restore that crashed
  // before its commit point, or an old family whose drop did not finish).
  absl::MutexLock lock(&engine->data_mu_);
  std::vector<rocksdb::ColumnFamilyHandle*> keep;
  for (rocksdb::ColumnFamilyHandle* h : engine->handles_) {
    uint64_t generation = 0;
    if (!ParseDataGeneration(h->GetName(), &generation)) {
      keep.push_back(h);
      continue;
    }
    engine->data_generation_.store(std::max(engine->data_generation_.load(), generation));
    if (h->GetName() == current) {
      engine->data_ = h;
      keep.push_back(h);
      continue;
    }
    log::Warn("kv: dropping leftover data family (interrupted snapshot restore)",
              {{"path", path}, {"family", h->GetName()}, {"current", current}});
    s = engine->db_->DropColumnFamily(h);
    engine->db_->DestroyColumnFamilyHandle(h);
    if (!s.ok()) return FromRocks(s, "drop leftover data family");
    ++engine->dropped_leftover_families_;
  }
  engine->handles_ = std::move(keep);
  if (engine->data_ == nullptr) {
    return absl::DataLossError(
        absl::StrCat("data family '", current, "' named in meta is missing"));
  }
  return engine;
}

Engine::~Engine() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close().PermitUncheckedError();
  delete db_;
}

absl::Status Engine::Write(rocksdb::WriteBatch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, batch), "write");
}

absl::StatusOr<rocksdb::ColumnFamilyHandle*> Engine::CreateNextDataFamily() {
  // Not under data_mu_: a long snapshot dump holds it shared.
  uint64_t generation = ++data_generation_;
  rocksdb::ColumnFamilyOptions cf_options;
  {
    absl::ReaderMutexLock lock(&data_mu_);
    rocksdb::ColumnFamilyDescriptor current;
    rocksdb::Status s = data_->GetDescriptor(&current);
    if (!s.ok()) return FromRocks(s, "describe data family");
    cf_options = current.options;
  }
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  rocksdb::Status s = db_->CreateColumnFamily(cf_options, DataFamilyName(generation), &handle);
  if (!s.ok()) return FromRocks(s, "create data family");
  return handle;
}

void Engine::AbandonDataFamily(rocksdb::ColumnFamilyHandle* fresh) {
  // A failed drop leaves a leftover that the next Open drops.
  db_->DropColumnFamily(fresh).PermitUncheckedError();
  db_->DestroyColumnFamilyHandle(fresh);
}

absl::Status Engine::SwapDataFamily(rocksdb::ColumnFamilyHandle* fresh,
                                    rocksdb::WriteBatch* batch) {
  batch->Put(
      meta_,
      rocksdb::Slice(meta_keys::kEngineDataFamily.data(), meta_keys::kEngineDataFamily.size()),
      fresh->GetName());
  absl::Status written = Write(batch, /*sync=*/true);
  if (!written.ok()) {
    AbandonDataFamily(fresh);
    return written;
  }
  rocksdb::ColumnFamilyHandle* old;
  {
    absl::MutexLock lock(&data_mu_);
    old = data_;
    data_ = fresh;
  }
  std::replace(handles_.begin(), handles_.end(), old, fresh);
  // No reader can still hold `old`: they use it only under data_mu_ shared.
  db_->DropColumnFamily(old).PermitUncheckedError();
  db_->DestroyColumnFamilyHandle(old);
  return absl::OkStatus();
}

absl::Status Engine::Resume() {
  rocksdb::Status s = db_->Resume();
  if (s.IsBusy()) {
    // RocksDB is already recovering by itself (disk-full recovery polls the
    // free space); writes come back when it succeeds.
    return absl::UnavailableError("kv: automatic recovery in progress");
  }
  return FromRocks(s, "resume after error");
}

}  // namespace mailgrid::kv
