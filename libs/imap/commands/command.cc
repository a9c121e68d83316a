#include "libs/imap/commands/command.h"

namespace mailgrid::imap {

std::string DebugString(const Command& c) {
  std::string out = c.tag;
  out.push_back(' ');
  out.append(c.name);
  std::visit([&out](const auto& args) { AppendDebug(args, &out); }, c.args);
  return out;
}

}  // namespace mailgrid::imap
