#include "tools/mailctl/cluster.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace mailgrid::mailctl {

absl::StatusOr<std::vector<std::string>> Cluster::Addresses(const std::string& service) const {
  auto it = grpc.find(service);
  if (it == grpc.end() || it->second.empty())
    return absl::FailedPreconditionError(
        absl::StrCat(service, " is not running in this cluster", path.empty() ? "" : " (" + path + ")"));
  return it->second;
}

absl::StatusOr<Cluster> LoadCluster(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path, " (is the cluster up? tools/mailgrid up)"));
  std::stringstream ss;
  ss << in.rdbuf();
  // google.protobuf.Struct parses arbitrary JSON without another library.
  google::protobuf::Struct doc;
  auto parsed = google::protobuf::util::JsonStringToMessage(ss.str(), &doc);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", parsed.ToString()));
  Cluster c;
  c.path = path;
  const auto& fields = doc.fields();
  if (auto it = fields.find("grpc"); it != fields.end() && it->second.has_struct_value()) {
    for (const auto& [name, list] : it->second.struct_value().fields()) {
      for (const auto& v : list.list_value().values()) c.grpc[name].push_back(v.string_value());
    }
  }
  if (auto it = fields.find("ca_cert"); it != fields.end()) c.ca_cert = it->second.string_value();
  return c;
}

}  // namespace mailgrid::mailctl
