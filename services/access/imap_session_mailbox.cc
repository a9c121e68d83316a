// ImapSession: mailbox-level commands (LIST/LSUB, SELECT/EXAMINE, STATUS,
// CREATE, DELETE, RENAME, (UN)SUBSCRIBE, APPEND, QUOTA, CLOSE/UNSELECT).
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/access/fetch_cache.h"
#include "services/access/imap_session.h"
#include "services/access/imap_session_internal.h"

namespace mailgrid::access {

using imap::Condition;

namespace {

std::string_view SpecialUseAttr(ms::SpecialUse u) {
  switch (u) {
    case ms::SPECIAL_USE_SENT:
      return "\\Sent";
    case ms::SPECIAL_USE_DRAFTS:
      return "\\Drafts";
    case ms::SPECIAL_USE_TRASH:
      return "\\Trash";
    case ms::SPECIAL_USE_JUNK:
      return "\\Junk";
    case ms::SPECIAL_USE_ARCHIVE:
      return "\\Archive";
    default:
      return "";
  }
}

ms::SpecialUse SpecialUseOf(std::string_view attr) {
  std::string a = absl::AsciiStrToLower(std::string(attr));
  if (a == "\\sent") return ms::SPECIAL_USE_SENT;
  if (a == "\\drafts") return ms::SPECIAL_USE_DRAFTS;
  if (a == "\\trash") return ms::SPECIAL_USE_TRASH;
  if (a == "\\junk") return ms::SPECIAL_USE_JUNK;
  if (a == "\\archive") return ms::SPECIAL_USE_ARCHIVE;
  return ms::SPECIAL_USE_UNSPECIFIED;
}

// RFC 3501 §6.3.8 wildcards: "*" matches anything, "%" anything but the
// delimiter. INBOX matches case-insensitively. Iterative with backtracking
// over the last wildcard (no recursion on hostile patterns).
std::string CanonicalInbox(std::string_view s) {
  std::string n(s);
  if (absl::AsciiStrToUpper(n.substr(0, 5)) == "INBOX" && (n.size() == 5 || n[5] == '/')) {
    n.replace(0, 5, "INBOX");
  }
  return n;
}

bool Match(std::string_view pattern_in, std::string_view name_in) {
  std::string pattern = CanonicalInbox(pattern_in), n = CanonicalInbox(name_in);
  size_t pi = 0, ni = 0, star_p = std::string::npos, star_n = 0;
  bool star_any = false;
  while (ni < n.size()) {
    if (pi < pattern.size() && (pattern[pi] == '*' || pattern[pi] == '%')) {
      star_any = pattern[pi] == '*';
      star_p = pi++;
      star_n = ni;
    } else if (pi < pattern.size() && pattern[pi] == n[ni]) {
      ++pi;
      ++ni;
    } else if (star_p != std::string::npos && (star_any || n[star_n] != '/')) {
      pi = star_p + 1;
      ni = ++star_n;
    } else {
      return false;
    }
  }
  while (pi < pattern.size() && (pattern[pi] == '*' || pattern[pi] == '%')) ++pi;
  return pi == pattern.size();
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// `append_limit`: the largest APPEND this server takes (RFC 7889);
// `deleted`: messages with \Deleted (RFC 9051), when it was counted.
std::string StatusItems(const ms::Folder& f, const std::vector<imap::StatusItem>& items,
                        uint64_t append_limit, std::optional<uint64_t> deleted = std::nullopt) {
  std::string out;
  for (imap::StatusItem it : items) {
    uint64_t v = 0;
    switch (it) {
      case imap::StatusItem::kMessages:
        v = f.messages();
        break;
      case imap::StatusItem::kRecent:
        v = f.recent();
        break;
      case imap::StatusItem::kUidNext:
        v = f.uidnext();
        break;
      case imap::StatusItem::kUidValidity:
        v = f.uidvalidity();
        break;
      case imap::StatusItem::kUnseen:
        v = f.unseen();
        break;
      case imap::StatusItem::kSize:
        v = f.size_bytes();
        break;
      case imap::StatusItem::kHighestModSeq:
        v = f.highest_modseq();
        break;
      case imap::StatusItem::kAppendLimit:
        v = append_limit;
        break;
      case imap::StatusItem::kDeleted:
        if (!deleted) continue;  // LIST-STATUS: not counted per folder
        v = *deleted;
        break;
    }
    if (!out.empty()) out += ' ';
    absl::StrAppend(&out, std::string(imap::StatusItemName(it)), " ", v);
  }
  return out;
}

}  // namespace

void ImapSession::CmdList(const imap::Command& c) {
  auto job = std::make_shared<ListJob>();
  job->args = c.get<imap::ListArgs>();
  job->tag = c.tag;
  job->verb = c.id == imap::CommandId::kLsub ? "LSUB" : "LIST";
  if (job->args.patterns.size() == 1 && job->args.patterns[0].empty()) {
    // RFC 3501: LIST "" "" asks for the delimiter and the root.
    Write("* " + job->verb + " (\\Noselect) \"/\" \"\"\r\n");
    return Finish(job->tag, Condition::kOk, "", job->verb + " completed");
  }
  for (const std::string& p : job->args.patterns) job->patterns.push_back(job->args.reference + p);
  Begin();
  ListStep(job, 0);
}

// One ListFolders call per mailbox (own, then seats), one after the other.
void ImapSession::ListStep(std::shared_ptr<ListJob> job, size_t i) {
  if (i == principal_->mailboxes.size()) return ListDeleted(job, 0);
  ms::ListFoldersRequest req;
  req.set_mailbox_id(principal_->mailboxes[i].mailbox_id());
  // LIST (SUBSCRIBED RECURSIVEMATCH) needs the unsubscribed parents too.
  req.set_subscribed_only(job->verb == "LSUB" ||
                          (job->args.select_subscribed && !job->args.select_recursive_match));
  req.set_with_status(job->args.return_status.has_value());
  backend_->ListFolders(TargetOf(i), req,
                        Guard<ms::ListFoldersResponse>(
                            alive_, [this, i, job](absl::StatusOr<ms::ListFoldersResponse> r) {
                              if (!r.ok()) {
                                FinishError(job->tag, r.status());
                                return Done();
                              }
                              ListAppend(*job, i, *r);
                              ListStep(job, i + 1);
                            }));
}

std::string ImapSession::ListStatusLine(const std::string& name, const ms::Folder& f,
                                        const std::vector<imap::StatusItem>& items,
                                        std::optional<uint64_t> deleted) {
  auto st = imap::ResponseWriter::Untagged()
                .Atom("STATUS")
                .Mailbox(name)
                .Raw("(" + StatusItems(f, items, config_.limits.max_literal_size, deleted) + ")")
                .Finish();
  return st.ok() ? *st : std::string();
}

// LIST-STATUS DELETED: one \Deleted search per listed folder, in turn, then
// every response in LIST order.
void ImapSession::ListDeleted(std::shared_ptr<ListJob> job, size_t k) {
  if (k == job->deleted.size()) {
    for (const std::string& r : job->responses) Write(r);
    Finish(job->tag, Condition::kOk, "", job->verb + " completed");
    return Done();
  }
  const ListJob::PendingStatus& p = job->deleted[k];
  ms::SearchRequest s;
  s.set_mailbox_id(principal_->mailboxes[p.mailbox].mailbox_id());
  s.mutable_folder()->set_folder_id(p.folder.folder_id());
  s.mutable_query()->mutable_flag()->set_flag("\\Deleted");
  backend_->Search(
      TargetOf(p.mailbox), s,
      Guard<ms::SearchResponse>(alive_, [this, job, k](absl::StatusOr<ms::SearchResponse> r) {
        ListJob::PendingStatus& p = job->deleted[k];
        // A folder gone meanwhile: its STATUS is left out
        // (RFC 5819 §2 lets a server omit it).
        if (r.ok()) {
          job->responses[p.response] =
              ListStatusLine(p.name, p.folder, *job->args.return_status, r->count());
        } else if (r.status().code() != absl::StatusCode::kNotFound) {
          FinishError(job->tag, r.status());
          return Done();
        }
        ListDeleted(job, k + 1);
      }));
}

void ImapSession::ListAppend(ListJob& job, size_t i, const ms::ListFoldersResponse& r) {
  const imap::ListArgs& args = job.args;
  bool list = job.verb == "LIST";
  auto matches = [&](const std::string& name) {
    for (const std::string& p : job.patterns) {
      if (Match(p, name)) return true;
    }
    return false;
  };
  // RFC 5258 selection options (LIST only): SUBSCRIBED and SPECIAL-USE;
  // REMOTE selects nothing more (there are no remote mailboxes).
  auto selected = [&](const ms::Folder& f) {
    if (!list) return true;  // LSUB: the store already filtered
    if (args.select_subscribed && !f.subscribed()) return false;
    if (args.select_special_use && f.special_use() == ms::SPECIAL_USE_UNSPECIFIED) return false;
    return true;
  };
  bool has_selection = list && (args.select_subscribed || args.select_special_use);
  std::string childinfo;
  if (args.select_recursive_match) {
    childinfo = args.select_subscribed ? "SUBSCRIBED" : "SPECIAL-USE";
  }
  // Does a folder below `prefix` (a full internal name + "/", or "" for
  // the whole mailbox) meet the selection? (RECURSIVEMATCH, CHILDINFO)
  auto descendant_selected = [&](const std::string& prefix) {
    for (const ms::Folder& g : r.folders()) {
      if (g.name().size() > prefix.size() && g.name().compare(0, prefix.size(), prefix) == 0 &&
          selected(g)) {
        return true;
      }
    }
    if (args.select_subscribed) {
      for (const std::string& d : r.dangling_subscriptions()) {
        if (d.size() > prefix.size() && d.compare(0, prefix.size(), prefix) == 0) return true;
      }
    }
    return false;
  };
  auto emit = [&](std::string_view attrs, const std::string& name, bool child_info) {
    auto w = imap::ResponseWriter::Untagged();
    w.Atom(job.verb).Raw("(" + std::string(attrs) + ")").String("/").Mailbox(name);
    if (child_info) w.Raw("(\"CHILDINFO\" (\"" + childinfo + "\"))");
    auto line = w.Finish();
    if (line.ok()) job.responses.push_back(*line);
  };
  auto add = [](std::string& attrs, std::string_view a) {
    if (a.empty()) return;
    if (!attrs.empty()) attrs += ' ';
    attrs += a;
  };
  if (i > 0 && list) {
    // The shared namespace's intermediate levels: never selectable, so
    // under a selection option only as parents of a match (RECURSIVEMATCH).
    bool show = !has_selection || (!childinfo.empty() && descendant_selected(""));
    std::string mid = ExternalName(i, "");
    mid.pop_back();
    if (show && i == 1 && matches("Shared"))
      emit("\\Noselect \\HasChildren", "Shared", has_selection);
    if (show && matches(mid)) emit("\\Noselect \\HasChildren", mid, has_selection);
  }
  for (const ms::Folder& f : r.folders()) {
    std::string name = ExternalName(i, f.name());
    if (!matches(name)) continue;
    bool self = selected(f);
    bool child_info = !childinfo.empty() && descendant_selected(f.name() + "/");
    if (!self && !child_info) continue;
    std::string attrs;
    if (f.noselect()) add(attrs, "\\Noselect");
    if (list) add(attrs, f.has_children() ? "\\HasChildren" : "\\HasNoChildren");
    if (list) add(attrs, SpecialUseAttr(f.special_use()));
    if ((args.return_subscribed || args.select_subscribed) && f.subscribed()) {
      add(attrs, "\\Subscribed");
    }
    emit(attrs, name, child_info);
    // RFC 5819: the STATUS of each selectable mailbox right after its LIST.
    if (list && args.return_status && !f.noselect() && self) {
      const auto& items = *args.return_status;
      if (std::find(items.begin(), items.end(), imap::StatusItem::kDeleted) != items.end()) {
        job.deleted.push_back({job.responses.size(), i, name, f});
        job.responses.emplace_back();  // filled by ListDeleted
        continue;
      }
      job.responses.push_back(ListStatusLine(name, f, items, std::nullopt));
    }
  }
  // Subscribed names with no folder: LSUB shows them \Noselect, LIST
  // (SUBSCRIBED) as \NonExistent (RFC 5258 §3.1).
  if (!list || args.select_subscribed) {
    for (const std::string& d : r.dangling_subscriptions()) {
      std::string name = ExternalName(i, d);
      if (!matches(name)) continue;
      emit(list ? "\\NonExistent \\Subscribed" : "\\Noselect", name, false);
    }
  }
}

void ImapSession::CmdSelect(const imap::Command& c) {
  const auto& a = c.get<imap::SelectArgs>();
  bool examine = c.id == imap::CommandId::kExamine;
  std::string tag = c.tag;
  if (selected_) {
    // RFC 7162 §3.2.11: the boundary between the old mailbox's responses
    // and the new one's (a QRESYNC server sends it on every implicit close).
    selected_.reset();
    state_ = imap::SessionState::kAuthenticated;
    Write("* OK [CLOSED] Previous mailbox closed\r\n");
  }
  std::optional<Target> t = Resolve(a.mailbox);
  if (!t) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such mailbox");
  if (a.condstore) condstore_ = true;
  const std::string& mailbox_id = principal_->mailboxes[t->mailbox].mailbox_id();
  // One mailstored call (SelectFolder): the folder's status and, in the
  // same read, either QRESYNC's changes since the client's MODSEQ or the
  // changes since what the FETCH cache holds of this folder (so the FETCH
  // that usually follows needs no call of its own).
  ms::SelectFolderRequest req;
  req.set_mailbox_id(mailbox_id);
  req.mutable_folder()->set_name(t->folder);
  req.set_claim_recent(!examine);
  req.set_include_uids(true);
  std::string cache_key;
  uint64_t cache_base = 0;
  if (a.qresync) {
    ms::ChangesSinceRequest* cs = req.mutable_changes();
    cs->set_modseq(a.qresync->modseq);
    cs->set_include_vanished(true);
    cs->set_uidvalidity(a.qresync->uidvalidity);
    if (a.qresync->known_uids) *cs->mutable_uids() = IdSetOf(*a.qresync->known_uids);
  } else if (FetchCache* cache = config_.fetch_cache; cache != nullptr) {
    if (std::optional<std::string> id = cache->FolderIdHint(mailbox_id, t->folder)) {
      cache_key = absl::StrCat(mailbox_id, "/", *id);
      // Only a folder the cache holds is refreshed here: loading a whole
      // folder's flags is left to the first FETCH that needs them.
      if (auto state = cache->FlagsState(cache_key); state && state->second != 0) {
        cache_base = state->second;
        ms::ChangesSinceRequest* cs = req.mutable_changes();
        cs->set_modseq(cache_base);
        cs->set_include_vanished(true);
        cs->set_uidvalidity(state->first);
      }
    }
  }
  uint32_t qresync_uidvalidity = a.qresync ? a.qresync->uidvalidity : 0;
  Begin();
  backend_->SelectFolder(
      TargetOf(t->mailbox), req,
      Guard<ms::SelectFolderResponse>(alive_, [this, tag, examine, t = *t, mailbox_id,
                                               qresync_uidvalidity, cache_key, cache_base](
                                                  absl::StatusOr<ms::SelectFolderResponse> r) {
        if (!r.ok()) {
          FinishError(tag, r.status());
          return Done();
        }
        const ms::FolderStatusResponse& st = r->status();
        const ms::Folder& f = st.folder();
        if (f.noselect()) {
          Finish(tag, Condition::kNo, "CANNOT", "Mailbox cannot be selected");
          return Done();
        }
        auto s = std::make_unique<Selected>();
        s->mailbox = t.mailbox;
        s->folder = t.folder;
        s->folder_id = f.folder_id();
        s->read_only = examine;
        s->uidvalidity = f.uidvalidity();
        s->modseq = f.highest_modseq();
        s->uids = ExpandIdSet(st.uids());
        s->recent = ExpandIdSet(st.recent_uids());
        Write("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
        Write(examine ? "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n"
                      : "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
                        "\\*)] Flags permitted\r\n");
        Write(absl::StrCat("* ", s->uids.size(), " EXISTS\r\n"));
        Write(absl::StrCat("* ", s->recent.size(), " RECENT\r\n"));
        selected_ = std::move(s);
        if (uint32_t seq = SeqOf(st.first_unseen_uid()); seq != 0) {
          Write(absl::StrCat("* OK [UNSEEN ", seq, "] First unseen\r\n"));
        }
        Write(absl::StrCat("* OK [UIDVALIDITY ", f.uidvalidity(), "] UIDs valid\r\n"));
        Write(absl::StrCat("* OK [UIDNEXT ", f.uidnext(), "] Predicted next UID\r\n"));
        Write(absl::StrCat("* OK [HIGHESTMODSEQ ", f.highest_modseq(), "] Highest\r\n"));
        state_ = imap::SessionState::kSelected;
        if (FetchCache* cache = config_.fetch_cache; cache != nullptr) {
          cache->RememberFolderId(mailbox_id, t.folder, f.folder_id());
          // The changes were read with the status: the cache is now at least
          // as new as what this SELECT showed, so the next command may read
          // flags from it without a call (see refreshed_modseq_).
          if (qresync_uidvalidity == 0 && r->has_changes() &&
              cache_key == absl::StrCat(mailbox_id, "/", f.folder_id()) &&
              cache->ApplyChanges(cache_key, cache_base, r->changes())) {
            refreshed_modseq_ = r->changes().highest_modseq();
          }
        }
        // A QRESYNC parameter with another UIDVALIDITY is ignored (mailstored
        // then sends no changes): the client's cache is void and it
        // resynchronises from scratch.
        if (qresync_uidvalidity != 0 && qresync_uidvalidity == f.uidvalidity() &&
            r->has_changes()) {
          return QresyncSelect(tag, r->changes(), examine);
        }
        Finish(tag, Condition::kOk, examine ? "READ-ONLY" : "READ-WRITE",
               examine ? "EXAMINE completed" : "SELECT completed");
        Done();
      }));
}

void ImapSession::CmdStatus(const imap::Command& c) {
  const auto& a = c.get<imap::StatusArgs>();
  std::string tag = c.tag;
  std::optional<Target> t = Resolve(a.mailbox);
  if (!t) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such mailbox");
  ms::FolderStatusRequest req;
  req.set_mailbox_id(principal_->mailboxes[t->mailbox].mailbox_id());
  req.mutable_folder()->set_name(t->folder);
  bool want_deleted = std::find(a.items.begin(), a.items.end(), imap::StatusItem::kDeleted) !=
                      a.items.end();
  Begin();
  backend_->FolderStatus(
      TargetOf(t->mailbox), req,
      Guard<ms::FolderStatusResponse>(alive_, [this, tag, name = a.mailbox, items = a.items,
                                               want_deleted, target = *t](
                                                  absl::StatusOr<ms::FolderStatusResponse> r) {
        if (!r.ok()) {
          FinishError(tag, r.status());
          return Done();
        }
        auto answer = [this, tag, name, items, folder = r->folder()](std::optional<uint64_t> d) {
          auto line = imap::ResponseWriter::Untagged()
                          .Atom("STATUS")
                          .Mailbox(name)
                          .Raw("(" +
                               StatusItems(folder, items, config_.limits.max_literal_size, d) +
                               ")")
                          .Finish();
          Untagged(line);
          Finish(tag, Condition::kOk, "", "STATUS completed");
          Done();
        };
        if (!want_deleted) return answer(std::nullopt);
        // DELETED (RFC 9051 §6.3.11): mailstored keeps no such counter, so
        // count the \Deleted messages with one search.
        ms::SearchRequest s;
        s.set_mailbox_id(principal_->mailboxes[target.mailbox].mailbox_id());
        s.mutable_folder()->set_folder_id(r->folder().folder_id());
        s.mutable_query()->mutable_flag()->set_flag("\\Deleted");
        backend_->Search(TargetOf(target.mailbox), s,
                         Guard<ms::SearchResponse>(
                             alive_, [this, tag, answer](absl::StatusOr<ms::SearchResponse> sr) {
                               if (!sr.ok()) {
                                 FinishError(tag, sr.status());
                                 return Done();
                               }
                               answer(sr->count());
                             }));
      }));
}

void ImapSession::CmdCreate(const imap::Command& c) {
  const auto& a = c.get<imap::CreateArgs>();
  std::string tag = c.tag;
  std::string name = a.mailbox;
  while (!name.empty() && name.back() == '/') name.pop_back();  // "foo/" creates foo
  std::optional<Target> t = Resolve(name);
  if (!t) return Finish(tag, Condition::kNo, "CANNOT", "Invalid mailbox name");
  ms::CreateFolderRequest req;
  req.set_mailbox_id(principal_->mailboxes[t->mailbox].mailbox_id());
  req.set_name(t->folder);
  for (const std::string& u : a.use) {
    ms::SpecialUse su = SpecialUseOf(u);
    if (su == ms::SPECIAL_USE_UNSPECIFIED) {
      return Finish(tag, Condition::kNo, "USEATTR", "Unsupported special-use attribute");
    }
    req.set_special_use(su);
  }
  Begin();
  backend_->CreateFolder(TargetOf(t->mailbox), req,
                         Guard<ms::Folder>(alive_, [this, tag](absl::StatusOr<ms::Folder> r) {
                           if (r.ok()) {
                             Finish(tag, Condition::kOk, "", "CREATE completed");
                           } else {
                             FinishError(tag, r.status());
                           }
                           Done();
                         }));
}

void ImapSession::CmdDelete(const imap::Command& c) {
  std::string tag = c.tag;
  std::optional<Target> t = Resolve(c.get<imap::MailboxArgs>().mailbox);
  if (!t) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such mailbox");
  if (t->folder == "INBOX") return Finish(tag, Condition::kNo, "CANNOT", "INBOX cannot be deleted");
  ms::DeleteFolderRequest req;
  req.set_mailbox_id(principal_->mailboxes[t->mailbox].mailbox_id());
  req.mutable_folder()->set_name(t->folder);
  Begin();
  backend_->DeleteFolder(TargetOf(t->mailbox), req,
                         Guard<ms::DeleteFolderResponse>(
                             alive_, [this, tag](absl::StatusOr<ms::DeleteFolderResponse> r) {
                               if (r.ok()) {
                                 Finish(tag, Condition::kOk, "", "DELETE completed");
                               } else {
                                 FinishError(tag, r.status());
                               }
                               Done();
                             }));
}

void ImapSession::CmdRename(const imap::Command& c) {
  const auto& a = c.get<imap::RenameArgs>();
  std::string tag = c.tag;
  std::optional<Target> from = Resolve(a.from), to = Resolve(a.to);
  if (!from) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such mailbox");
  if (!to || to->mailbox != from->mailbox) {
    return Finish(tag, Condition::kNo, "CANNOT", "Cannot rename across mailboxes");
  }
  ms::RenameFolderRequest req;
  req.set_mailbox_id(principal_->mailboxes[from->mailbox].mailbox_id());
  req.mutable_folder()->set_name(from->folder);
  req.set_new_name(to->folder);
  Begin();
  backend_->RenameFolder(TargetOf(from->mailbox), req,
                         Guard<ms::Folder>(alive_, [this, tag](absl::StatusOr<ms::Folder> r) {
                           if (r.ok()) {
                             Finish(tag, Condition::kOk, "", "RENAME completed");
                           } else {
                             FinishError(tag, r.status());
                           }
                           Done();
                         }));
}

void ImapSession::CmdSubscribe(const imap::Command& c, bool subscribe) {
  std::string tag = c.tag;
  std::optional<Target> t = Resolve(c.get<imap::MailboxArgs>().mailbox);
  if (!t) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such mailbox");
  ms::SubscribeFolderRequest req;
  req.set_mailbox_id(principal_->mailboxes[t->mailbox].mailbox_id());
  req.set_name(t->folder);
  req.set_subscribe(subscribe);
  Begin();
  backend_->SubscribeFolder(
      TargetOf(t->mailbox), req,
      Guard<ms::SubscribeFolderResponse>(
          alive_, [this, tag, subscribe](absl::StatusOr<ms::SubscribeFolderResponse> r) {
            if (r.ok()) {
              Finish(tag, Condition::kOk, "",
                     subscribe ? "SUBSCRIBE completed" : "UNSUBSCRIBE completed");
            } else {
              FinishError(tag, r.status());
            }
            Done();
          }));
}

void ImapSession::CmdAppend(const imap::Command& c) {
  auto args = std::make_shared<imap::AppendArgs>(
      std::move(const_cast<imap::Command&>(c).get<imap::AppendArgs>()));
  for (const imap::AppendMessage& m : args->messages) {
    // RFC 3516 §4.4: content the store cannot keep as is is refused with
    // UNKNOWN-CTE. 8-bit data is stored unchanged; NUL bytes cannot be
    // (they could never be sent back in an IMAP4rev1 BODY[] literal).
    if (m.binary && m.data.find('\0') != std::string::npos) {
      return Finish(c.tag, Condition::kNo, "UNKNOWN-CTE", "Binary content with NUL is not stored");
    }
  }
  if (!Resolve(args->mailbox)) {
    return Finish(c.tag, Condition::kNo, "TRYCREATE", "No such mailbox");
  }
  Begin();
  AppendNext(c.tag, args, 0, "", 0);
}

void ImapSession::AppendNext(std::string tag, std::shared_ptr<imap::AppendArgs> args, size_t i,
                             std::string uids, uint32_t uidvalidity) {
  if (i == args->messages.size()) {
    std::string code = absl::StrCat("APPENDUID ", uidvalidity, " ", uids);
    std::optional<Target> t = Resolve(args->mailbox);
    if (selected_ && t && t->mailbox == selected_->mailbox && t->folder == selected_->folder) {
      // RFC 3501 §6.3.11: appending to the selected mailbox announces the
      // new message (EXISTS) at once.
      return Sync([this, tag, code] {
        if (!closed_) Finish(tag, Condition::kOk, code, "APPEND completed");
        Done();
      });
    }
    Finish(tag, Condition::kOk, code, "APPEND completed");
    return Done();
  }
  std::optional<Target> t = Resolve(args->mailbox);
  const imap::AppendMessage& m = args->messages[i];
  ms::AppendRequest req;
  req.set_mailbox_id(principal_->mailboxes[t->mailbox].mailbox_id());
  req.mutable_folder()->set_name(t->folder);
  for (const std::string& f : m.flags) req.add_flags(f);
  if (m.internal_date) {
    const imap::DateTime& d = *m.internal_date;
    int64_t secs = DaysFromCivil(d.date.year, d.date.month, d.date.day) * 86400 + d.hour * 3600 +
                   d.minute * 60 + d.second - d.zone_minutes * 60;
    req.mutable_internal_date()->set_seconds(secs);
  }
  req.set_message(m.data);
  backend_->Append(
      TargetOf(t->mailbox), req,
      Guard<ms::AppendResponse>(
          alive_, [this, tag, args, i, uids](absl::StatusOr<ms::AppendResponse> r) mutable {
            if (!r.ok()) {
              if (r.status().code() == absl::StatusCode::kNotFound) {
                Finish(tag, Condition::kNo, "TRYCREATE", "No such mailbox");
              } else if (r.status().code() == absl::StatusCode::kInvalidArgument) {
                Finish(tag, Condition::kNo, "LIMIT", "Message refused by the store");
              } else {
                FinishError(tag, r.status());
              }
              return Done();
            }
            if (!uids.empty()) uids += ",";
            absl::StrAppend(&uids, r->uid());
            AppendNext(tag, args, i + 1, uids, r->uidvalidity());
          }));
}

void ImapSession::CmdGetQuota(const imap::Command& c, bool root) {
  std::string tag = c.tag;
  size_t mailbox = 0;
  std::string root_name;
  std::string mailbox_name;
  if (root) {
    mailbox_name = c.get<imap::MailboxArgs>().mailbox;
    std::optional<Target> t = Resolve(mailbox_name);
    if (!t) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such mailbox");
    mailbox = t->mailbox;
    root_name = mailbox == 0 ? "" : ExternalName(mailbox, "");
    if (!root_name.empty()) root_name.pop_back();
  } else {
    root_name = c.get<imap::QuotaRootArgs>().root;
    bool found = root_name.empty();
    for (size_t i = 1; i < principal_->mailboxes.size() && !found; ++i) {
      std::string n = ExternalName(i, "");
      n.pop_back();
      if (n == root_name) {
        mailbox = i;
        found = true;
      }
    }
    if (!found) return Finish(tag, Condition::kNo, "NONEXISTENT", "No such quota root");
  }
  ms::GetQuotaRequest req;
  req.set_mailbox_id(principal_->mailboxes[mailbox].mailbox_id());
  Begin();
  backend_->GetQuota(
      TargetOf(mailbox), req,
      Guard<ms::Quota>(
          alive_, [this, tag, root, root_name, mailbox_name](absl::StatusOr<ms::Quota> q) {
            if (!q.ok()) {
              FinishError(tag, q.status());
              return Done();
            }
            if (root) {
              Untagged(imap::ResponseWriter::Untagged()
                           .Atom("QUOTAROOT")
                           .Mailbox(mailbox_name)
                           .AString(root_name)
                           .Finish());
            }
            std::string res;
            const auto& lim = q->limit();
            if (lim.has_bytes() && !lim.bytes().unlimited()) {
              absl::StrAppend(&res, "STORAGE ", q->usage_bytes() / 1024, " ",
                              lim.bytes().value() / 1024);
            }
            if (lim.has_messages() && !lim.messages().unlimited()) {
              absl::StrAppend(&res, res.empty() ? "" : " ", "MESSAGE ", q->usage_messages(), " ",
                              lim.messages().value());
            }
            Untagged(imap::ResponseWriter::Untagged()
                         .Atom("QUOTA")
                         .String(root_name)
                         .Raw("(" + res + ")")
                         .Finish());
            Finish(tag, Condition::kOk, "", root ? "GETQUOTAROOT completed" : "GETQUOTA completed");
            Done();
          }));
}

void ImapSession::CmdClose(const imap::Command& c, bool expunge) {
  std::string tag = c.tag;
  std::string verb = expunge ? "CLOSE" : "UNSELECT";
  if (!expunge || selected_->read_only) {
    selected_.reset();
    state_ = imap::SessionState::kAuthenticated;
    return Finish(tag, Condition::kOk, "", verb + " completed");
  }
  // CLOSE expunges silently (RFC 3501 §6.4.2: no untagged EXPUNGE).
  ms::ExpungeRequest req;
  req.set_mailbox_id(principal_->mailboxes[selected_->mailbox].mailbox_id());
  req.mutable_folder()->set_folder_id(selected_->folder_id);
  size_t mailbox = selected_->mailbox;
  selected_.reset();
  state_ = imap::SessionState::kAuthenticated;
  Begin();
  backend_->Expunge(
      TargetOf(mailbox), req,
      Guard<ms::ExpungeResponse>(alive_, [this, tag, verb](absl::StatusOr<ms::ExpungeResponse> r) {
        if (r.ok()) {
          Finish(tag, Condition::kOk, "", verb + " completed");
        } else {
          FinishError(tag, r.status());
        }
        Done();
      }));
}

}  // namespace mailgrid::access
