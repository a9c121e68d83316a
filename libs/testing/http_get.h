// A minimal blocking HTTP/1.0 GET over loopback TCP, for tests that scrape
// /metrics or probe an HTTP endpoint without pulling in an HTTP client library.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace mailgrid::testing {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// url: "http://host:port/path". Reads until the server closes.
absl::StatusOr<HttpResponse> HttpGet(const std::string& url);

}  // namespace mailgrid::testing
