// The routing table of smart hosts (relay.v1.Route), persisted in the same
// replicated store as the queue so every relayd replica routes alike:
//   G("outq_route") / route_id -> relay.v1.Route
// Each replica keeps a RouteTable (libs/outbound) loaded from it, refreshed
// by Refresh() (the runner's transport calls it at most every few seconds,
// SetRoute/DeleteRoute on the replica that served them at once).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/outbound/delivery.h"
#include "libs/store/store.h"
#include "mailgrid/relay/v1/relay.pb.h"

namespace mailgrid::relay {

class RouteStore {
 public:
  explicit RouteStore(store::Store* store) : store_(store) {}

  absl::StatusOr<std::vector<v1::Route>> List();
  // Creates (empty route_id) or replaces; validation per relay.proto.
  absl::StatusOr<v1::Route> Set(v1::Route route, absl::Time now);
  absl::Status Delete(const std::string& route_id);

  // Reloads the table when it is older than `max_age` (0: now).
  void Refresh(absl::Duration max_age);
  const outbound::RouteTable& table() const { return table_; }
  // Destination-region map (relayd --route-regions), see RouteTable.
  void SetRegionMap(std::vector<std::pair<std::string, std::string>> map) {
    table_.SetRegionMap(std::move(map));
  }

  // Pure (exposed for tests): INVALID_ARGUMENT naming the field.
  static absl::Status Validate(const v1::Route& route);

 private:
  store::Store* store_;
  outbound::RouteTable table_;
  absl::Mutex mu_;
  absl::Time loaded_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace mailgrid::relay
