// ImapSession: COPY and MOVE between two mailboxes (own ↔ shared, or two
// shared mailboxes), which mailstored cannot do in one call (its Copy/Move
// stay inside one mailbox, and the two may live on different shards). As
// the store's contract says, the front end does it: each message is
// fetched (raw, flags, internal date) and appended to the destination, one
// at a time so memory stays at one message; MOVE then marks the sources
// \Deleted and expunges exactly those UIDs.
//
// Not atomic, but it never loses a message and duplicates one only when
// mailstored cannot be reached to clean up:
// - Every Append carries an idempotency key made of a random id of this
//   command and the source UID, so the client library may retry it across
//   a failover, and an Append whose answer was lost is repeated with the
//   same key to learn where it landed (mailstored returns the first result
//   instead of storing twice).
// - A failure while copying leaves the sources untouched; the copies made
//   so far (the uncertain one included, once located) are removed again
//   before the NO (RFC 3501 §6.4.7 asks that a failed COPY leave the
//   destination as it was).
// - MOVE touches the sources only after every copy committed. If marking
//   or expunging them fails, what happened is read back from mailstored: a
//   source that is gone was moved (its copy stays); a source still there
//   gets its \Deleted taken back (unless it had it before) and only THEN
//   loses its copy. When even that cannot be read or done, the copies stay.
#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

// 128 random bits: this command's Appends, and only they, share the key
// prefix, so copying the same message again later makes a new copy.
std::string NewOperationId() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x%08x%08x", rd(), rd(), rd(), rd());
}

// Errors after which an Append may or may not have been stored.
bool OutcomeUnknown(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

bool HasDeleted(const google::protobuf::RepeatedPtrField<std::string>& flags) {
  return std::any_of(flags.begin(), flags.end(),
                     [](const std::string& f) { return absl::EqualsIgnoreCase(f, "\\Deleted"); });
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
  std::string op_id;  // NewOperationId(): the Appends' idempotency keys
  // Committed copies, in order; had_deleted: the source carried \Deleted
  // before this command (a MOVE that is undone must leave it so).
  std::vector<uint32_t> copied_src, copied_dst;
  std::vector<bool> had_deleted;
  uint32_t dst_uidvalidity = 0;
  std::string dst_folder_id;
  // The Append that failed without saying whether it was stored.
  std::optional<ms::AppendRequest> uncertain;
  uint32_t uncertain_src = 0;
  bool uncertain_had_deleted = false;
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
  job->op_id = NewOperationId();
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
  backend_->Fetch(
      TargetOf(job->src), req,
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
            a.set_idempotency_key(absl::StrCat("imap-xcopy/", job->op_id, "/", uid));
            bool had_deleted = HasDeleted(m.flags());
            backend_->Append(
                TargetOf(job->dst), a,
                Guard<ms::AppendResponse>(alive_, [this, job, uid, a, had_deleted](
                                                      absl::StatusOr<ms::AppendResponse> r) {
                  if (!r.ok()) {
                    if (OutcomeUnknown(r.status())) {
                      job->uncertain = a;
                      job->uncertain_src = uid;
                      job->uncertain_had_deleted = had_deleted;
                    }
                    return CrossCopyFail(job, r.status());
                  }
                  job->copied_src.push_back(uid);
                  job->copied_dst.push_back(r->uid());
                  job->had_deleted.push_back(had_deleted);
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
        if (!r.ok()) return CrossMoveRecover(job, r.status());
        ms::ExpungeRequest ex;
        ex.set_mailbox_id(principal_->mailboxes[job->src].mailbox_id());
        ex.mutable_folder()->set_folder_id(job->src_folder_id);
        *ex.mutable_uids() = CompactIdSet(job->copied_src);
        backend_->Expunge(TargetOf(job->src), ex,
                          Guard<ms::ExpungeResponse>(
                              alive_, [this, job, copyuid](absl::StatusOr<ms::ExpungeResponse> r) {
                                if (!r.ok()) return CrossMoveRecover(job, r.status());
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

void ImapSession::CrossCopyAnswerError(std::shared_ptr<CrossCopy> job, const absl::Status& st) {
  if (st.code() == absl::StatusCode::kNotFound) {
    Finish(job->tag, Condition::kNo, "TRYCREATE", "No such mailbox");
  } else {
    FinishError(job->tag, st);
  }
  Done();
}

void ImapSession::CrossCopyFail(std::shared_ptr<CrossCopy> job, const absl::Status& st) {
  if (job->uncertain) {
    // Stored or not? The same Append again (same key) answers with the
    // first result, or stores it now: either way it is then known, and
    // undone with the others.
    ms::AppendRequest again = *std::exchange(job->uncertain, std::nullopt);
    backend_->Append(TargetOf(job->dst), again,
                     Guard<ms::AppendResponse>(alive_, [this, job, st](
                                                           absl::StatusOr<ms::AppendResponse> r) {
                       if (r.ok()) {
                         job->copied_src.push_back(job->uncertain_src);
                         job->copied_dst.push_back(r->uid());
                         job->had_deleted.push_back(job->uncertain_had_deleted);
                         job->dst_folder_id = r->folder_id();
                       }
                       // Else it stays unknown: the destination may keep
                       // one extra copy (never a missing message).
                       CrossCopyUndo(job, job->copied_dst, [this, job, st] {
                         CrossCopyAnswerError(job, st);
                       });
                     }));
    return;
  }
  CrossCopyUndo(job, job->copied_dst, [this, job, st] { CrossCopyAnswerError(job, st); });
}

// Removes these copies from the destination (\Deleted, then an Expunge of
// exactly them), then `then`, whatever the outcome (a failure leaves an
// extra copy, never a missing message).
void ImapSession::CrossCopyUndo(std::shared_ptr<CrossCopy> job, std::vector<uint32_t> copies,
                                std::function<void()> then) {
  if (copies.empty() || job->dst_folder_id.empty()) return then();
  ms::StoreFlagsRequest del;
  del.set_mailbox_id(principal_->mailboxes[job->dst].mailbox_id());
  del.mutable_folder()->set_folder_id(job->dst_folder_id);
  *del.mutable_messages()->mutable_uids() = CompactIdSet(copies);
  del.set_mode(ms::STORE_MODE_ADD);
  del.add_flags("\\Deleted");
  backend_->StoreFlags(
      TargetOf(job->dst), del,
      Guard<ms::StoreFlagsResponse>(alive_, [this, job, copies,
                                             then](absl::StatusOr<ms::StoreFlagsResponse> r) {
        if (!r.ok()) return then();
        ms::ExpungeRequest ex;
        ex.set_mailbox_id(principal_->mailboxes[job->dst].mailbox_id());
        ex.mutable_folder()->set_folder_id(job->dst_folder_id);
        *ex.mutable_uids() = CompactIdSet(copies);
        backend_->Expunge(TargetOf(job->dst), ex,
                          Guard<ms::ExpungeResponse>(
                              alive_, [then](absl::StatusOr<ms::ExpungeResponse>) { then(); }));
      }));
}

// MOVE: marking or expunging the sources failed, or its answer was lost.
// Reads back which sources still exist and settles each one.
void ImapSession::CrossMoveRecover(std::shared_ptr<CrossCopy> job, const absl::Status& st) {
  ms::FetchRequest req;
  req.set_mailbox_id(principal_->mailboxes[job->src].mailbox_id());
  req.mutable_folder()->set_folder_id(job->src_folder_id);
  *req.mutable_messages()->mutable_uids() = CompactIdSet(job->copied_src);
  req.mutable_items()->set_flags(true);
  using Fetched = std::vector<ms::FetchResponse>;
  backend_->Fetch(
      TargetOf(job->src), req,
      Guard<Fetched>(alive_, [this, job, st](absl::StatusOr<Fetched> r) {
        // Unknown: keep every copy (the sources may be gone).
        if (!r.ok()) return CrossCopyAnswerError(job, st);
        std::vector<uint32_t> present;
        for (const ms::FetchResponse& m : *r) present.push_back(m.uid());
        std::sort(present.begin(), present.end());
        std::vector<uint32_t> moved_src, moved_dst, back_dst, restore;
        for (size_t i = 0; i < job->copied_src.size(); ++i) {
          uint32_t s = job->copied_src[i];
          if (std::binary_search(present.begin(), present.end(), s)) {
            back_dst.push_back(job->copied_dst[i]);
            if (!job->had_deleted[i]) restore.push_back(s);
          } else {
            moved_src.push_back(s);
            moved_dst.push_back(job->copied_dst[i]);
          }
        }
        auto answer = [this, job, st, moved_src, moved_dst, present] {
          if (!moved_src.empty()) {
            Write(imap::StatusLine("*", Condition::kOk,
                                   absl::StrCat("COPYUID ", job->dst_uidvalidity, " ",
                                                Join(moved_src), " ", Join(moved_dst)),
                                   "Moved"));
            if (selected_ && selected_->folder_id == job->src_folder_id) ReportExpunged(moved_src);
          }
          // Every source gone: the MOVE happened, only its answer was lost.
          if (present.empty()) {
            Finish(job->tag, Condition::kOk, "", "MOVE completed");
            return Done();
          }
          CrossCopyAnswerError(job, st);
        };
        if (back_dst.empty()) return answer();
        auto undo = [this, job, back_dst, answer] { CrossCopyUndo(job, back_dst, answer); };
        if (restore.empty()) return undo();
        ms::StoreFlagsRequest un;
        un.set_mailbox_id(principal_->mailboxes[job->src].mailbox_id());
        un.mutable_folder()->set_folder_id(job->src_folder_id);
        *un.mutable_messages()->mutable_uids() = CompactIdSet(restore);
        un.set_mode(ms::STORE_MODE_REMOVE);
        un.add_flags("\\Deleted");
        backend_->StoreFlags(
            TargetOf(job->src), un,
            Guard<ms::StoreFlagsResponse>(
                alive_, [undo, answer](absl::StatusOr<ms::StoreFlagsResponse> r) {
                  // The sources keep \Deleted: their copies must stay.
                  if (!r.ok()) return answer();
                  undo();
                }));
      }));
}

}  // namespace mailgrid::access
