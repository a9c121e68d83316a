// Engine: the ONE RocksDB of a replica and its column families.
//
//   data      user keys -> value + version (the state machine). Its name is
//             "data" or "data.<generation>": a snapshot restore builds a fresh
//             family and swaps it in (see state_machine_snapshot.cc).
//   meta      small records, by prefix (meta_keys below):
//               sm/...     state machine: applied index/term, conf, idempotency
//               log/...    raft log store: hard state, snapshot point
//               engine/... which data family is current
//   raft_log  big-endian index -> checksummed raft entry (raft_log_store.h)
//
// All families share one WAL, so a synced write (a raft log append) makes
// every earlier unsynced write (state machine applies) durable as well.
//
// Threads: the DB is thread-safe. The data family handle is replaced only by
// the state machine's restore; readers hold data_mutex() shared while they use
// it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/status.h"
#include "rocksdb/write_batch.h"

namespace mailgrid::kv {

namespace meta_keys {
// State machine records; everything under kSmPrefix travels in a snapshot.
inline constexpr std::string_view kSmPrefix = "sm/";
inline constexpr std::string_view kSmApplied = "sm/applied";     // index, term (BE)
inline constexpr std::string_view kSmConf = "sm/conf";           // v1::ConfState
inline constexpr std::string_view kSmRequest = "sm/req/";        // + id -> IdempotencyRecord
inline constexpr std::string_view kSmRequestExpiry = "sm/exp/";  // + BE index + id -> "", or
                                                                 // + BE index -> ids (batch)
inline constexpr std::string_view kSmSession = "sm/ses/";        // + client id -> ClientSession
// Raft log store records (per replica, never in a snapshot).
inline constexpr std::string_view kLogHardState = "log/hard_state";
inline constexpr std::string_view kLogSnapshot = "log/snapshot";
// Engine records (per replica).
inline constexpr std::string_view kEngineDataFamily = "engine/data_cf";
}  // namespace meta_keys

inline constexpr std::string_view kDataFamilyBase = "data";

// A range deletion on a data family must start at a key that ends in '\0'
// (a KeyAfter), so that it never shares a memtable insert hint with point
// keys: engine.cc, ParentPathTransform, says why. The state machine
// deletes `start` itself as a point and the range from the key right after
// it, which is the same set of keys.
inline std::string KeyAfter(std::string_view key) {
  std::string after(key);
  after.push_back('\0');  // the smallest key greater than `key`
  return after;
}
inline constexpr std::string_view kMetaFamily = "meta";
inline constexpr std::string_view kRaftLogFamily = "raft_log";

// The engine's memory is bounded by one LRU cache: data, index and filter
// blocks of every column family, and (charged through a WriteBufferManager)
// every memtable. Without that, each of the four families could hold two
// 64 MB memtables and index blocks grew with the data (a 1M-message
// mailstored leader reached 1.67 GB).
struct EngineOptions {
  size_t block_cache_bytes = 128 << 20;
  // All memtables together, charged to (so within) block_cache_bytes.
  size_t write_buffer_bytes = 64 << 20;
  // One memtable of one family; a flush starts when it is full.
  size_t family_write_buffer_bytes = 16 << 20;
  // Not owned. Tests inject a fault-injecting Env (disk full); nullptr means
  // rocksdb::Env::Default().
  rocksdb::Env* env = nullptr;
};

// Maps a RocksDB status to absl, in one place. Disk full (NoSpace) becomes
// ResourceExhausted; corruption becomes DataLoss.
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);

// The logger every Engine gives RocksDB (DBOptions::info_log): lines go to
// libs/base/log, never to a LOG file on the (possibly full) disk. Exposed
// for tests.
std::shared_ptr<rocksdb::Logger> NewRocksLogger(const std::string& path);

class Engine {
 public:
  // Opens (creating if missing) the DB at `path`. Drops data families left
  // over by a restore that crashed before its commit point.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const std::string& path,
                                                      const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* meta() const { return meta_; }
  rocksdb::ColumnFamilyHandle* raft_log() const { return raft_log_; }
  const std::string& path() const { return path_; }

  absl::Mutex& data_mutex() const ABSL_LOCK_RETURNED(data_mu_) { return data_mu_; }
  rocksdb::ColumnFamilyHandle* data() const ABSL_SHARED_LOCKS_REQUIRED(data_mu_) { return data_; }

  // Writes `batch` atomically; `sync` fsyncs the WAL (and so every earlier
  // write) before returning.
  absl::Status Write(rocksdb::WriteBatch* batch, bool sync);

  // Creates an empty data family with the next generation's name.
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> CreateNextDataFamily();
  // The commit point of a restore: adds the pointer to `fresh` to `batch`,
  // writes it synced, then makes `fresh` the data family and drops the old one.
  // On error `fresh` is dropped and the old family stays current.
  absl::Status SwapDataFamily(rocksdb::ColumnFamilyHandle* fresh, rocksdb::WriteBatch* batch);
  // Drops a family made by CreateNextDataFamily that will not be used.
  void AbandonDataFamily(rocksdb::ColumnFamilyHandle* fresh);

  // After a disk-full (or other background) error RocksDB refuses writes but
  // keeps serving reads. Once space is freed, Resume() re-enables writes.
  absl::Status Resume();

  // How many leftover data families Open dropped (observability and tests).
  int dropped_leftover_families() const { return dropped_leftover_families_; }

 private:
  Engine() = default;

  std::string path_;
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // all open, for Close
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* raft_log_ = nullptr;
  mutable absl::Mutex data_mu_;
  rocksdb::ColumnFamilyHandle* data_ ABSL_GUARDED_BY(data_mu_) = nullptr;
  std::atomic<uint64_t> data_generation_{0};  // highest data family generation used
  int dropped_leftover_families_ = 0;
};

}  // namespace mailgrid::kv
