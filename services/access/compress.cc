#include "services/access/compress.h"

#include <zlib.h>

#include <cstring>

namespace mailgrid::access {

struct DeflateStream::Streams {
  z_stream out{};  // deflate
  z_stream in{};   // inflate
  bool ok = false;
};

DeflateStream::DeflateStream() : s_(std::make_unique<Streams>()) {
  // windowBits -15: raw DEFLATE, as RFC 4978 §4 asks.
  bool d =
      deflateInit2(&s_->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  bool i = inflateInit2(&s_->in, -15) == Z_OK;
  s_->ok = d && i;
}

DeflateStream::~DeflateStream() {
  deflateEnd(&s_->out);
  inflateEnd(&s_->in);
}

std::string DeflateStream::Deflate(std::string_view in) {
  std::string out;
  if (!s_->ok || in.empty()) return out;
  z_stream& z = s_->out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[16384];
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    deflate(&z, Z_SYNC_FLUSH);  // cannot fail with valid state and input
    out.append(buf, sizeof buf - z.avail_out);
  } while (z.avail_out == 0);
  return out;
}

absl::StatusOr<std::string> DeflateStream::Inflate(std::string_view in, size_t max_output) {
  if (!s_->ok) return absl::InternalError("zlib initialisation failed");
  std::string out;
  z_stream& z = s_->in;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[16384];
  while (z.avail_in > 0) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
      return absl::InvalidArgumentError("corrupt DEFLATE data");
    }
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > max_output) return absl::ResourceExhaustedError("inflated data too large");
    if (rc == Z_STREAM_END) {
      // The client ended its stream; anything after it is not ours to read.
      if (z.avail_in > 0) return absl::InvalidArgumentError("data after the DEFLATE stream end");
      break;
    }
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;  // no progress possible
  }
  // Output still pending inside zlib (more than one buffer's worth).
  while (z.avail_out == 0) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
      return absl::InvalidArgumentError("corrupt DEFLATE data");
    }
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > max_output) return absl::ResourceExhaustedError("inflated data too large");
    if (rc != Z_OK) break;
  }
  return out;
}

}  // namespace mailgrid::access
