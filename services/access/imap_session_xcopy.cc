// ImapSession: COPY and MOVE between two mailboxes (own ↔ shared, or two
// shared mailboxes), which mailstored cannot do in one call (its Copy/Move
// stay inside one mailbox, and the two may live on different shards). As
// the store's contract says, the front end does it: each message is
// fetched (raw, flags, internal date) and appended to the destination, one
// at a time so memory stays at one message; MOVE then marks the sources
// \Deleted and expunges exactly those UIDs.
//
// Not atomic (RFC 3501 §6.4.7 asks that a failed COPY leave the
// destination as it was): on a failure the copies already made are
// removed again (\Deleted + UID-restricted Expunge), best effort, before
// the NO. A MOVE that fails after the copies keeps its sources.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/access/imap_session.h"
#include "services/access/imap_session_internal.h"

namespace mailgrid::access {

using imap::Condition;

namespace {

std::string Join(const std::vector<uint32_t>& v) {
  std::string out;
  for (uint32_t u : v) absl::StrAppend(&out, out.empty() ? "" : ",", u);
  return out;
}

}  // namespace

struct ImapSession::CrossCopy {
  std::string tag;
  bool move = false;
  size_t src = 0, dst = 0;  // indexes into principal_->mailboxes
  std::string src_folder_id;
  std::string dst_folder;  // name inside the destination mailbox
  std::vector<uint32_t> uids;
  size_t next = 0;
  std::vector<uint32_t> copied_src, copied_dst;
  uint32_t dst_uidvalidity = 0;
  std::string dst_folder_id;
};

void ImapSession::StartCrossCopy(const std::string& tag, bool move, size_t dst_mailbox,
                                 const std::string& dst_folder, std::vector<uint32_t> uids) {
  auto job = std::make_shared<CrossCopy>();
  job->tag = tag;
  job->move = move;
  job->src = selected_->mailbox;
  job->src_folder_id = selected_->folder_id;
  job->dst = dst_mailbox;
  job->dst_folder = dst_folder;
  job->uids = std::move(uids);
  Begin();
  CrossCopyStep(job);
}

void ImapSession::CrossCopyStep(std::shared_ptr<CrossCopy> job) {
  if (job->next == job->uids.size()) return CrossCopyFinish(job);
  uint32_t uid = job->uids[job->next++];
  ms::FetchRequest req;
  req.set_mailbox_id(principal_->mailboxes[job->src].mailbox_id());
  req.mutable_folder()->set_folder_id(job->src_folder_id);
  *req.mutable_messages()->mutable_uids() = CompactIdSet({uid});
  req.mutable_items()->set_flags(true);
  req.mutable_items()->set_internal_date(true);
  req.mutable_items()->set_raw(true);
  backend_->Fetch(TargetOf(job->src), req,
                  Guard<std::vector<ms::FetchResponse>>(
                      alive_, [this, job, uid](absl::StatusOr<std::vector<ms::FetchResponse>> r) {
                        if (!r.ok()) return CrossCopyFail(job, r.status());
                        // Expunged meanwhile by someone else: nothing to copy.
                        if (r->empty()) return CrossCopyStep(job);
                        const ms::FetchResponse& m = r->front();
                        ms::AppendRequest a;
                        a.set_mailbox_id(principal_->mailboxes[job->dst].mailbox_id());
                        a.mutable_folder()->set_name(job->dst_folder);
                        for (const std::string& f : m.flags()) {
                          if (absl::AsciiStrToLower(f) != "\\recent") a.add_flags(f);
                        }
                        *a.mutable_internal_date() = m.internal_date();
                        a.set_message(m.raw());
                        backend_->Append(
                            TargetOf(job->dst), a,
                            Guard<ms::AppendResponse>(
                                alive_, [this, job, uid](absl::StatusOr<ms::AppendResponse> r) {
                                  if (!r.ok()) return CrossCopyFail(job, r.status());
                                  job->copied_src.push_back(uid);
                                  job->copied_dst.push_back(r->uid());
                                  job->dst_uidvalidity = r->uidvalidity();
                                  job->dst_folder_id = r->folder_id();
                                  CrossCopyStep(job);
                                }));
                      }));
}

void ImapSession::CrossCopyFinish(std::shared_ptr<CrossCopy> job) {
  std::string copyuid = job->copied_src.empty()
                            ? ""
                            : absl::StrCat("COPYUID ", job->dst_uidvalidity, " ",
                                           Join(job->copied_src), " ", Join(job->copied_dst));
  if (!job->move) {
    Finish(job->tag, Condition::kOk, copyuid, "COPY completed");
    return Done();
  }
  if (job->copied_src.empty()) {
    Finish(job->tag, Condition::kOk, "", "MOVE completed");
    return Done();
  }
  // The copies are committed: now remove exactly the sources.
  ms::StoreFlagsRequest st;
  st.set_mailbox_id(principal_->mailboxes[job->src].mailbox_id());
  st.mutable_folder()->set_folder_id(job->src_folder_id);
  *st.mutable_messages()->mutable_uids() = CompactIdSet(job->copied_src);
  st.set_mode(ms::STORE_MODE_ADD);
  st.add_flags("\\Deleted");
  backend_->StoreFlags(
      TargetOf(job->src), st,
      Guard<ms::StoreFlagsResponse>(alive_, [this, job,
                                             copyuid](absl::StatusOr<ms::StoreFlagsResponse> r) {
        if (!r.ok()) return CrossCopyFail(job, r.status());
        ms::ExpungeRequest ex;
        ex.set_mailbox_id(principal_->mailboxes[job->src].mailbox_id());
        ex.mutable_folder()->set_folder_id(job->src_folder_id);
        *ex.mutable_uids() = CompactIdSet(job->copied_src);
        backend_->Expunge(TargetOf(job->src), ex,
                          Guard<ms::ExpungeResponse>(
                              alive_, [this, job, copyuid](absl::StatusOr<ms::ExpungeResponse> r) {
                                if (!r.ok()) return CrossCopyFail(job, r.status());
                                // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
                                Write(imap::StatusLine("*", Condition::kOk, copyuid, "Moved"));
                                if (selected_ && selected_->folder_id == job->src_folder_id) {
                                  ReportExpunged(ExpandIdSet(r->expunged()));
                                }
                                Finish(job->tag, Condition::kOk, "", "MOVE completed");
                                Done();
                              }));
      }));
}

void ImapSession::CrossCopyFail(std::shared_ptr<CrossCopy> job, const absl::Status& st) {
  auto answer = [this, job, st] {
    if (st.code() == absl::StatusCode::kNotFound) {
      Finish(job->tag, Condition::kNo, "TRYCREATE", "No such mailbox");
    } else {
      FinishError(job->tag, st);
    }
    Done();
  };
  if (job->copied_dst.empty() || job->dst_folder_id.empty()) return answer();
  // Undo the copies made so far (best effort; the answer is NO either way).
  std::vector<uint32_t> undo = std::exchange(job->copied_dst, {});
  ms::StoreFlagsRequest del;
  del.set_mailbox_id(principal_->mailboxes[job->dst].mailbox_id());
  del.mutable_folder()->set_folder_id(job->dst_folder_id);
  *del.mutable_messages()->mutable_uids() = CompactIdSet(undo);
  del.set_mode(ms::STORE_MODE_ADD);
  del.add_flags("\\Deleted");
  backend_->StoreFlags(
      TargetOf(job->dst), del,
      Guard<ms::StoreFlagsResponse>(alive_, [this, job, undo,
                                             answer](absl::StatusOr<ms::StoreFlagsResponse> r) {
        if (!r.ok()) return answer();
        ms::ExpungeRequest ex;
        ex.set_mailbox_id(principal_->mailboxes[job->dst].mailbox_id());
        ex.mutable_folder()->set_folder_id(job->dst_folder_id);
        *ex.mutable_uids() = CompactIdSet(undo);
        backend_->Expunge(TargetOf(job->dst), ex,
                          Guard<ms::ExpungeResponse>(
                              alive_, [answer](absl::StatusOr<ms::ExpungeResponse>) { answer(); }));
      }));
}

}  // namespace mailgrid::access
