// ServerSession, part 3: applying the driver's answers to decision events.
#include "libs/smtp/session.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace mailgrid::smtp {

absl::Status ServerSession::Accept() { return Decide(true, std::nullopt); }
absl::Status ServerSession::Accept(Reply reply) { return Decide(true, std::move(reply)); }
absl::Status ServerSession::Reject(Reply reply) { return Decide(false, std::move(reply)); }

absl::Status ServerSession::Challenge(std::string_view data) {
  if (closed_) return absl::FailedPreconditionError("session closed");
  if (pending_ != Decision::kAuth) {
    return absl::FailedPreconditionError("Challenge() outside an AUTH exchange");
  }
  pending_ = Decision::kNone;
  phase_ = Phase::kAuthLine;
  // Written directly: a challenge may exceed the 512-octet reply line (RFC
  // 4954 §4 allows long exchange lines), and base64 needs no sanitising.
  std::string wire = absl::StrCat("334 ", EncodeBase64(data), "\r\n");
  stats_.bytes_out += wire.size();
  ++stats_.replies_3xx;
  output_.append(wire);
  return absl::OkStatus();
}

bool ServerSession::ValidAcceptCode(int code) const {
  switch (pending_) {
    case Decision::kGreeting:
    case Decision::kStartTls:
      return code == 220;
    case Decision::kData:
      return code == 354;
    case Decision::kAuth:
      return code == 235;
    case Decision::kHelo:
    case Decision::kMail:
    case Decision::kMessage:
      return code == 250;
    case Decision::kRcpt:
    case Decision::kVrfy:
      return code >= 250 && code <= 252;
    case Decision::kBdat:
      return code >= 200 && code < 300;
    case Decision::kNone:
      return false;
  }
  return false;
}

Reply ServerSession::DefaultAccept() const {
  switch (pending_) {
    case Decision::kGreeting:
      return Reply::Make(220, "", absl::StrCat(config_.hostname, " ESMTP"));
    case Decision::kHelo:
      return Reply::Make(250, "", config_.hostname);
    case Decision::kMail:
      return Reply::Make(250, "2.1.0", "Ok");
    case Decision::kRcpt:
      return Reply::Make(250, "2.1.5", "Ok");
    case Decision::kData:
      return Reply::Make(354, "", "End data with <CR><LF>.<CR><LF>");
    case Decision::kMessage:
      return Reply::Make(250, "2.0.0", "Ok: queued");
    case Decision::kStartTls:
      return Reply::Make(220, "2.0.0", "Ready to start TLS");
    case Decision::kAuth:
      return Reply::Make(235, "2.7.0", "Authentication successful");
    case Decision::kVrfy:
      return Reply::Make(252, "2.0.0",
                         "Cannot VRFY user, but will accept message and attempt delivery");
    case Decision::kBdat:
    case Decision::kNone:
      break;
  }
  return Reply::Make(250, "2.0.0", "Ok");
}

absl::Status ServerSession::Decide(bool accept, std::optional<Reply> reply) {
  if (closed_) return absl::FailedPreconditionError("session closed");
  if (pending_ == Decision::kNone) return absl::FailedPreconditionError("no decision pending");
  if (reply) {
    if (accept && !ValidAcceptCode(reply->code)) {
      return absl::InvalidArgumentError(
          absl::StrCat("reply code ", reply->code, " cannot accept this event"));
    }
    if (!accept && (reply->code < 400 || reply->code > 599)) {
      return absl::InvalidArgumentError("a rejection needs a 4xx or 5xx reply");
    }
  }
  if (accept) {
    ApplyAccept(reply ? *reply : DefaultAccept());
  } else {
    ApplyReject(*reply);
  }
  return absl::OkStatus();
}

void ServerSession::ApplyAccept(const Reply& reply) {
  Decision d = std::exchange(pending_, Decision::kNone);
  switch (d) {
    case Decision::kGreeting:
      greeted_ = true;
      phase_ = Phase::kCommand;
      Send(reply);
      break;
    case Decision::kHelo:
      helo_done_ = true;
      esmtp_ = pending_helo_.ehlo;
      helo_ = pending_helo_.domain;
      if (esmtp_) {
        Send(EhloReply(reply.lines.empty() ? config_.hostname : reply.lines.front()));
      } else {
        Send(reply);
      }
      break;
    case Decision::kMail:
      txn_ = Transaction{};
      txn_.active = true;
      txn_.mail = std::move(pending_mail_);
      Send(reply);
      break;
    case Decision::kRcpt:
      txn_.recipients.push_back(std::move(pending_rcpt_));
      Send(reply);
      break;
    case Decision::kData:
      dot_.emplace(config_.max_message_size);
      phase_ = Phase::kData;
      Send(reply);
      break;
    case Decision::kBdat:
      txn_.bdat = true;
      StartBdatChunk(pending_bdat_, std::nullopt);
      break;
    case Decision::kMessage:
      ResetTransaction();
      phase_ = Phase::kCommand;
      Send(reply);
      break;
    case Decision::kStartTls:
      Send(reply);
      // CVE-2011-0411: whatever the client sent after STARTTLS, in clear
      // text, must not run as if it came through TLS. Drop it, and forget
      // every fact learned before TLS (RFC 3207 §4.2).
      stats_.discarded_after_starttls += in_.size() - pos_;
      in_.clear();
      pos_ = scanned_ = 0;
      discarding_ = false;
      tls_ = true;
      helo_done_ = false;
      esmtp_ = false;
      helo_.clear();
      authenticated_ = false;
      ResetTransaction();
      phase_ = Phase::kCommand;
      break;
    case Decision::kAuth:
      authenticated_ = true;
      phase_ = Phase::kCommand;
      Send(reply);
      break;
    case Decision::kVrfy:
      Send(reply);
      break;
    case Decision::kNone:
      break;
  }
}

void ServerSession::ApplyReject(const Reply& reply) {
  Decision d = std::exchange(pending_, Decision::kNone);
  switch (d) {
    case Decision::kGreeting:
      greeted_ = true;
      phase_ = Phase::kRefused;
      Send(reply);
      break;
    case Decision::kHelo:
      helo_done_ = false;
      esmtp_ = false;
      helo_.clear();
      Send(reply);
      break;
    case Decision::kData:
      ResetTransaction();
      Send(reply);
      break;
    case Decision::kBdat:
      // The chunk follows the command whatever we think of it: read it,
      // drop it, then answer; later chunks of this transaction get 503.
      txn_.bdat = true;
      txn_.failed = true;
      StartBdatChunk(pending_bdat_, reply);
      break;
    case Decision::kMessage:
      ResetTransaction();
      phase_ = Phase::kCommand;
      Send(reply);
      break;
    case Decision::kAuth:
      phase_ = Phase::kCommand;
      Send(reply);
      break;
    case Decision::kMail:
    case Decision::kRcpt:
    case Decision::kStartTls:
    case Decision::kVrfy:
      Send(reply);
      break;
    case Decision::kNone:
      break;
  }
}

}  // namespace mailgrid::smtp
