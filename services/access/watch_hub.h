// Asynchronous mailstored Watch streams for IMAP IDLE, on gRPC's callback
// API: no thread per stream (10,000 sessions in IDLE must be cheap), events
// delivered through the session's Poster. A stream that fails for a
// transport reason (UNAVAILABLE, a replica that went away or is not the
// leader) is reopened on the next replica of the shard with the last
// cursor, so no committed change is missed (mailbox.proto, Watch); other
// failures (NOT_FOUND, OUT_OF_RANGE, UNAUTHENTICATED) end it (`on_end`).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "libs/rpc/client.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"
#include "services/access/backend.h"
#include "services/access/worker_pool.h"

namespace mailgrid::access {

using Poster = std::function<void(std::function<void()> fn)>;

class WatchHub {
 public:
  // One channel per replica of every shard; shared by all sessions.
  // `tls`: the TLS fields of every channel (empty CA: plain text).
  static absl::StatusOr<std::unique_ptr<WatchHub>> Create(const mailstore_client::ShardMap& shards,
                                                          WorkerPool* pool,
                                                          const rpc::ClientOptions& tls = {});

  std::unique_ptr<WatchHandle> Watch(const CallTarget& t, const ms::WatchRequest& r, Poster post,
                                     std::function<void(const ms::WatchEvent&)> on_event,
                                     std::function<void(absl::Status)> on_end);

  // Streams open now (for tests and metrics).
  int64_t open_streams() const;

  struct Stream;

 private:
  friend struct Stream;
  using Stub = ms::MailboxService::Stub;
  std::map<uint32_t, std::vector<std::shared_ptr<Stub>>> stubs_;
  WorkerPool* pool_ = nullptr;
  std::shared_ptr<std::atomic<int64_t>> open_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace mailgrid::access
