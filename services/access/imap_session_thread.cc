// THREAD and UID THREAD (RFC 5256): the search runs as SEARCH does
// (imap_session_messages.cc), then one Fetch of the five header fields and
// the internal date of the matches, and imap_thread.cc builds the threads.
#include <optional>

#include "libs/mail/header.h"
#include "services/access/imap_session.h"
#include "services/access/imap_session_internal.h"
#include "services/access/imap_thread.h"

namespace mailgrid::access {

using imap::Condition;

void ImapSession::ThreadMatches(std::shared_ptr<SearchJob> job, const ms::SearchResponse& r) {
  if (r.uids().ranges_size() == 0) {
    Write("* THREAD\r\n");
    Finish(job->tag, Condition::kOk, "", "THREAD completed");
    return Done();
  }
  ms::FetchRequest f;
  f.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  f.mutable_folder()->set_folder_id(selected_->folder_id);
  *f.mutable_messages()->mutable_uids() = r.uids();
  f.mutable_items()->set_internal_date(true);
  ms::BodySection* s = f.mutable_items()->add_sections();
  s->set_text(ms::SECTION_TEXT_HEADER_FIELDS);
  for (const char* name : {"Subject", "Date", "Message-ID", "In-Reply-To", "References"}) {
    s->add_header_fields(name);
  }
  backend_->Fetch(
      TargetOf(selected_->mailbox), f,
      Guard<std::vector<ms::FetchResponse>>(
          alive_, [this, job](absl::StatusOr<std::vector<ms::FetchResponse>> got) {
            if (!got.ok()) {
              FinishError(job->tag, got.status());
              return Done();
            }
            std::vector<ThreadMessage> messages;
            for (const ms::FetchResponse& m : *got) {
              uint32_t seq = SeqOf(m.uid());
              if (seq == 0) continue;  // not known to the client: not reported
              ThreadMessage t;
              t.id = job->uid ? m.uid() : seq;
              t.order = m.uid();
              std::string_view block;
              if (m.sections_size() > 0 && m.sections(0).has_data()) block = m.sections(0).data();
              mail::Header h = mail::ParseHeaderLenient(block);
              auto value = [&h](std::string_view name) {
                std::optional<std::string_view> v = h.Value(name);
                return v ? std::string(*v) : std::string();
              };
              t.subject = value("Subject");
              t.message_id = value("Message-ID");
              t.in_reply_to = value("In-Reply-To");
              t.references = value("References");
              // RFC 5256 §2.2: the Date: header, else the internal date.
              if (!ParseSentDate(value("Date"), &t.sent)) t.sent = m.internal_date().seconds();
              messages.push_back(std::move(t));
            }
            std::string threads = *job->thread == imap::ThreadAlgorithm::kReferences
                                      ? ThreadReferences(messages)
                                      : ThreadOrderedSubject(messages);
            Write(threads.empty() ? std::string("* THREAD\r\n") : "* THREAD " + threads + "\r\n");
            Finish(job->tag, Condition::kOk, "", "THREAD completed");
            Done();
          }));
}

}  // namespace mailgrid::access
