// A pub/sub subscriber on its own connection. It SUBSCRIBEs to a fixed set of
// channels and calls back once per message, on its one thread. When Redis
// goes away it redials with backoff and subscribes again; messages published
// meanwhile are lost (pub/sub is fire-and-forget), so `on_subscribed` lets
// the owner resync (e.g. drop a cache) each time the subscription is up.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "libs/redis/options.h"

namespace mailgrid::redis {

class Subscriber {
 public:
  // Runs on the subscriber thread; keep it short (hand work off), since the
  // next message is not read until it returns. The views are valid only for
  // the duration of the call; payloads are binary-safe.
  using MessageCallback = std::function<void(std::string_view channel, std::string_view message)>;
  using SubscribedCallback = std::function<void()>;

  // The pool fields of `options` are unused; command_timeout bounds only
  // AUTH/SELECT: the subscription itself blocks until a message or Stop().
  Subscriber(Options options, std::vector<std::string> channels, MessageCallback on_message,
             SubscribedCallback on_subscribed = nullptr);
  // Stop()s.
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Runs Run() on a thread owned by this object. INVALID_ARGUMENT without
  // channels; FAILED_PRECONDITION if already started or stopped.
  absl::Status Start();
  // Blocks the caller, (re)subscribing, until Stop(). Returns OK after Stop()
  // or INVALID_ARGUMENT without channels. Use either Run() or Start(), once.
  absl::Status Run();
  // Idempotent, from any thread but the callback's: wakes Run() when it is
  // reading or backing off (a dial in progress finishes first, bounded by
  // connect_timeout + command_timeout) and joins the thread Start() made.
  void Stop();

  // True while every channel's subscription is confirmed by Redis.
  bool subscribed() const;
  // The failure that caused the latest reconnect; OK if none yet.
  absl::Status last_error() const;

 private:
  // One connection's life: dial, subscribe, dispatch until it fails or Stop.
  absl::Status RunOnce(bool* was_subscribed);
  bool stopping() const;

  const Options options_;
  const std::vector<std::string> channels_;
  const MessageCallback on_message_;
  const SubscribedCallback on_subscribed_;
  std::thread thread_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool subscribed_ ABSL_GUARDED_BY(mu_) = false;
  // The live connection's socket, so Stop() can shutdown(2) it to wake a
  // blocked read. -1 when there is none.
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::redis
