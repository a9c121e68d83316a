#include "libs/imap/transcript_driver.h"

#include <algorithm>

#include "libs/imap/response.h"

namespace mailgrid::imap {

TranscriptDriver::TranscriptDriver(ReceiverLimits limits, CommandContext ctx)
    : reader_(limits), ctx_(ctx) {}

void TranscriptDriver::OnCommand(const Command& c) {
  switch (c.id) {
    case CommandId::kLogin:
      ctx_.state = SessionState::kAuthenticated;
      break;
    case CommandId::kAuthenticate: {
      const int left = sasl_steps_ - (c.get<AuthenticateArgs>().initial_response ? 1 : 0);
      if (left <= 0) {
        ctx_.state = SessionState::kAuthenticated;
      } else {
        sasl_left_ = left;
        sasl_tag_ = c.tag;
        reader_.receiver().ExpectSaslResponse(c.tag);
      }
      break;
    }
    case CommandId::kSelect:
    case CommandId::kExamine:
      ctx_.state = SessionState::kSelected;
      break;
    case CommandId::kClose:
    case CommandId::kUnselect:
      ctx_.state = SessionState::kAuthenticated;
      break;
    case CommandId::kLogout:
      ctx_.state = SessionState::kLogout;
      break;
    case CommandId::kIdle:
      reader_.receiver().ExpectIdleDone(c.tag);
      break;
    case CommandId::kEnable: {
      const auto& caps = c.get<EnableArgs>().capabilities;
      auto has = [&](std::string_view cap) {
        return std::find(caps.begin(), caps.end(), cap) != caps.end();
      };
      if (has("UTF8=ACCEPT")) ctx_.utf8_accept = true;
      if (has("QRESYNC")) ctx_.qresync_enabled = true;
      break;
    }
    default:
      break;
  }
}

void TranscriptDriver::Feed(std::string_view bytes, std::string* out) {
  if (closed_) return;
  reader_.Feed(bytes);
  for (;;) {
    ReadResult r = reader_.Next(ctx_);
    if (std::holds_alternative<NeedMoreData>(r)) return;
    if (const auto* cont = std::get_if<NeedContinuation>(&r)) {
      *out += "CONT " + std::to_string(cont->literal_size) + "\n";
    } else if (const auto* cmd = std::get_if<Command>(&r)) {
      *out += "CMD " + DebugString(*cmd) + "\n";
      if (on_command_) on_command_(*cmd);
      OnCommand(*cmd);
    } else if (const auto* sasl = std::get_if<SaslResponse>(&r)) {
      if (sasl->cancelled) {
        *out += "SASL cancel\n";
        sasl_left_ = 0;
      } else {
        *out += "SASL " + std::to_string(sasl->data.size()) + " bytes\n";
        if (--sasl_left_ > 0) {
          reader_.receiver().ExpectSaslResponse(sasl_tag_);
        } else {
          ctx_.state = SessionState::kAuthenticated;
        }
      }
    } else if (std::holds_alternative<IdleDone>(r)) {
      *out += "IDLE-DONE\n";
    } else if (const auto* err = std::get_if<ProtocolError>(&r)) {
      std::string line = FormatError(*err);
      line.resize(line.size() - 2);  // CRLF
      *out += "ERR " + line + "\n";
      sasl_left_ = 0;
      if (err->close_connection) {
        *out += "CLOSE\n";
        closed_ = true;
        return;
      }
    }
  }
}

}  // namespace mailgrid::imap
