// Test helpers for libs/mail (tests only).
#pragma once

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace mailgrid::mail::testing {

// A file of libs/mail/testdata, read whole.
inline std::string ReadTestdata(const std::string& name) {
  std::string path = std::string(MAILGRID_MAIL_TESTDATA) + "/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace mailgrid::mail::testing
