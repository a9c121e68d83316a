// Test helpers for libs/kv: a temporary directory, and a RocksDB file system
// that can be told the disk is full.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "mailgrid/kv/v1/kv.pb.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace mailgrid::kv::testing {

// A write of one Put (`min_format` > 0 marks an entry that needs that
// state-machine format).
inline v1::WriteRequest Put(const std::string& key, const std::string& value,
                            uint32_t min_format = 0) {
  v1::WriteRequest r;
  v1::Put* p = r.add_ops()->mutable_put();
  p->set_key(key);
  p->set_value(value);
  if (min_format > 0) r.set_min_format(min_format);
  return r;
}

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/kv_test.XXXXXX";
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Every write to a file fails with NoSpace while `full` is set, as on a full
// disk. Reads are unaffected. Also counts fsyncs of WAL files (*.log), to
// check group commit.
class DiskFullFs : public rocksdb::FileSystemWrapper {
 public:
  explicit DiskFullFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  const char* Name() const override { return "DiskFullFs"; }

  void SetFull(bool full) { full_.store(full); }
  int wal_syncs() const { return wal_syncs_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this, IsWal(f));
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->ReopenWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this, IsWal(f));
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->ReuseWritableFile(f, old, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this, IsWal(f));
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, DiskFullFs* fs, bool wal)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(f)),
          full_(&fs->full_),
          fs_(fs),
          wal_(wal) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (wal_) fs_->wal_syncs_.fetch_add(1);
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (wal_) fs_->wal_syncs_.fetch_add(1);
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (full_->load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return FSWritableFileOwnerWrapper::Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (full_->load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return FSWritableFileOwnerWrapper::Append(d, o, v, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& d, uint64_t off,
                                       const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
      if (full_->load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return FSWritableFileOwnerWrapper::PositionedAppend(d, off, o, dbg);
    }

   private:
    const std::atomic<bool>* full_;
    DiskFullFs* fs_;
    bool wal_;
  };

  static bool IsWal(const std::string& name) {
    return name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0;
  }

  std::atomic<bool> full_{false};
  std::atomic<int> wal_syncs_{0};
};

// An Env over DiskFullFs; keep `fs` to flip the switch.
struct DiskFullEnv {
  DiskFullEnv()
      : fs(std::make_shared<DiskFullFs>(rocksdb::FileSystem::Default())),
        env(rocksdb::NewCompositeEnv(fs)) {}
  std::shared_ptr<DiskFullFs> fs;
  std::unique_ptr<rocksdb::Env> env;
};

}  // namespace mailgrid::kv::testing
