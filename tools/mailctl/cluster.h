// Where a cluster's services listen, read from the cluster.json that
// `tools/mailgrid up` writes (keys documented in docs/operations.md).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::mailctl {

struct Cluster {
  // service name ("tenantd") -> gRPC addresses of its replicas
  std::map<std::string, std::vector<std::string>> grpc;
  std::string ca_cert;
  std::string path;  // the file it came from

  // The addresses of `service`, or FAILED_PRECONDITION naming the service.
  absl::StatusOr<std::vector<std::string>> Addresses(const std::string& service) const;
};

absl::StatusOr<Cluster> LoadCluster(const std::string& path);

}  // namespace mailgrid::mailctl
