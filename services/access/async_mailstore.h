// AsyncMailstore: the mailstored calls of an IMAP session's usual loop
// (SelectFolder, StoreFlags, ChangesSince) on gRPC's callback API, started
// from the connection's strand, instead of a WorkerPool thread blocked in
// libs/mailstore_client's synchronous call. Per call that saves the hand-off
// to a pool thread, the pool thread's wake-up by whichever thread polled the
// reply, and a completion queue per call: under the IMAP load bench
// (bench/access/imap_load.py) these calls were ~45% of accessd's CPU.
//
// It makes ONE attempt, at the replica it believes leads the shard, and says
// whether the caller should fall back to MailstoreClient (the full client:
// leader hints, retries across a failover, SelectFolder for an older
// mailstored): on UNAVAILABLE when the call is safe to repeat or the replica
// refused before doing anything (`mailgrid-not-leader`), and on
// UNIMPLEMENTED. Every other answer is final, as MailstoreClient would
// return it. A `mailgrid-leader` hint (or a refusal without one) moves the
// next attempt to that (the next) replica.
//
// Threads: any. Completions run on gRPC's threads; callers post them on.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "libs/rpc/client.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"

namespace mailgrid::access {

namespace ms = ::mailgrid::mailstore::v1;

class AsyncMailstore : public std::enable_shared_from_this<AsyncMailstore> {
 public:
  // `fall_back`: make the call again through MailstoreClient (r is then an
  // error and must not be answered).
  template <typename Resp>
  using Done = std::function<void(absl::StatusOr<Resp> r, bool fall_back)>;

  // One channel per replica of every shard. `tls`: as WatchHub's.
  static absl::StatusOr<std::shared_ptr<AsyncMailstore>> Create(
      const mailstore_client::ShardMap& shards, const rpc::ClientOptions& tls = {},
      absl::Duration timeout = absl::Seconds(15));

  void SelectFolder(uint32_t shard, const std::string& authorization,
                    const ms::SelectFolderRequest& r, Done<ms::SelectFolderResponse> done);
  void StoreFlags(uint32_t shard, const std::string& authorization, const ms::StoreFlagsRequest& r,
                  Done<ms::StoreFlagsResponse> done);
  void ChangesSince(uint32_t shard, const std::string& authorization,
                    const ms::ChangesSinceRequest& r, Done<ms::ChangesSinceResponse> done);

  // Calls whose completion has not run yet (shutdown waits for 0).
  int64_t in_flight() const { return in_flight_.load(); }

 private:
  using Stub = ms::MailboxService::Stub;
  struct Shard {
    std::vector<std::string> addresses;
    std::vector<std::unique_ptr<Stub>> stubs;
    std::atomic<size_t> leader{0};  // index into stubs
  };
  template <typename Req, typename Resp, typename Start>
  void Call(uint32_t shard, const std::string& authorization, const Req& r, bool idempotent,
            Start start, Done<Resp> done);
  // After a failed attempt at replica `tried`: where the next one goes.
  static void Learn(Shard& shard, size_t tried, const std::string& hint);

  absl::Duration timeout_;
  std::map<uint32_t, std::unique_ptr<Shard>> shards_;
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace mailgrid::access
