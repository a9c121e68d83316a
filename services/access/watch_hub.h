// Asynchronous mailstored Watch streams for IMAP IDLE, on gRPC's callback
// API, SHARED per mailbox: every session idling in any folder of a mailbox
// rides one mailstored stream (opened without a folder filter; each
// subscriber gets only the events of its folders). 10,000 sessions in IDLE
// on one mailbox are one stream, not 10,000: mailstored serves each Watch
// with a thread that polls its feed, so per-session streams were what made
// a new message take minutes to reach 10,000 sessions.
//
// A subscriber sees READY once, when the shared stream is established (at
// once if it already is), then every later change of its folders. A stream
// that fails for a transport reason (UNAVAILABLE, a replica that went away
// or is not the leader, or the server ending it) is reopened on the next
// replica of the shard with the last cursor, so no committed change is
// missed and subscribers are not disturbed; the reopen uses the newest
// subscriber's credentials (an early subscriber's token may have expired).
// Other failures (NOT_FOUND, OUT_OF_RANGE, UNAUTHENTICATED) end the stream
// and every subscriber's `on_end` is called. The last subscriber leaving
// cancels the stream.
//
// Authorization: mailstored checks the token of the subscriber that opens
// (or reopens) the stream. Every subscriber has SELECTed the folder with its
// own token just before (IDLE needs a selected folder), so it is allowed to
// read that mailbox's changes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "libs/mailstore_client/mailstore_client.h"
#include "libs/rpc/client.h"
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
  ~WatchHub();

  // Subscribes to the changes of r.mailbox_id() (only r.folder_ids() when
  // not empty; r.after_cursor() is ignored: from now). Callbacks run through
  // `post`, never after the handle is cancelled or destroyed.
  std::unique_ptr<WatchHandle> Watch(const CallTarget& t, const ms::WatchRequest& r, Poster post,
                                     std::function<void(const ms::WatchEvent&)> on_event,
                                     std::function<void(absl::Status)> on_end);

  // mailstored streams open now, and subscribers (for tests and metrics).
  int64_t open_streams() const;
  int64_t subscribers() const;

  struct Feed;
  struct Registry;

 private:
  using Stub = ms::MailboxService::Stub;
  std::map<uint32_t, std::vector<std::shared_ptr<Stub>>> stubs_;
  std::shared_ptr<Registry> registry_;
};

}  // namespace mailgrid::access
