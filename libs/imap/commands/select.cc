#include "libs/imap/commands/select.h"

#include "libs/base/status.h"
#include "libs/imap/types.h"

namespace mailgrid::imap {
namespace {

// known-uids and seq-match-data are sequence sets without "*" or "$".
absl::StatusOr<SequenceSet> KnownSet(Token& t, const CommandContext& ctx, std::string_view what) {
  if (t.type != Token::Type::kAtom) return BadArgument(std::string("Expected ").append(what));
  ASSIGN_OR_RETURN(SequenceSet set, SequenceSet::Parse(t.value, ctx.limits.max_sequence_ranges,
                                                       /*allow_saved=*/false));
  if (set.has_star()) return BadArgument(std::string(what).append(" must not contain \"*\""));
  return set;
}

absl::StatusOr<QresyncParams> ParseQresync(std::vector<Token>& items, const CommandContext& ctx) {
  ArgCursor in(&items, ctx);
  QresyncParams q;
  ASSIGN_OR_RETURN(q.uidvalidity, in.NzNumber("UIDVALIDITY"));
  ASSIGN_OR_RETURN(q.modseq, in.ModSeq("mod-sequence"));
  if (Token* t = in.Peek(); t != nullptr && t->type == Token::Type::kAtom) {
    ASSIGN_OR_RETURN(Token * known, in.Next("known UIDs"));
    ASSIGN_OR_RETURN(q.known_uids, KnownSet(*known, ctx, "known UIDs"));
  }
  if (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::vector<Token> * match, in.List("sequence match data"));
    if (match->size() != 2) return BadArgument("Expected (known-sequence-set known-uid-set)");
    ASSIGN_OR_RETURN(q.known_sequence_set, KnownSet((*match)[0], ctx, "known sequence set"));
    ASSIGN_OR_RETURN(q.known_uid_set, KnownSet((*match)[1], ctx, "known UID set"));
    // The two sets pair up element by element.
    if (q.known_sequence_set->Count(UINT32_MAX) != q.known_uid_set->Count(UINT32_MAX)) {
      return BadArgument("Known sequence set and known UID set differ in size");
    }
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return q;
}

}  // namespace

absl::StatusOr<SelectArgs> ParseSelect(ArgCursor& in, bool uid) {
  SelectArgs a;
  ASSIGN_OR_RETURN(a.mailbox, in.Mailbox("mailbox name"));
  if (!in.AtEnd()) {
    ASSIGN_OR_RETURN(std::vector<Token> * params, in.List("select parameters"));
    ArgCursor p(params, in.ctx());
    while (!p.AtEnd()) {
      ASSIGN_OR_RETURN(std::string name, p.Keyword("select parameter"));
      if (name == "CONDSTORE") {
        a.condstore = true;
      } else if (name == "QRESYNC") {
        // RFC 7162 §3.2.3: QRESYNC parameters need ENABLE QRESYNC first.
        if (!in.ctx().qresync_enabled) return BadArgument("QRESYNC is not enabled");
        if (a.qresync) return BadArgument("QRESYNC given twice");
        ASSIGN_OR_RETURN(std::vector<Token> * q, p.List("QRESYNC parameters"));
        ASSIGN_OR_RETURN(a.qresync, ParseQresync(*q, in.ctx()));
      } else {
        return BadArgument("Unknown select parameter " + name);
      }
    }
  }
  RETURN_IF_ERROR(in.ExpectEnd());
  return a;
}

void AppendDebug(const SelectArgs& a, std::string* out) {
  *out += " mailbox=";
  AppendQuoted(a.mailbox, out);
  if (a.condstore) *out += " condstore";
  if (a.qresync) {
    const QresyncParams& q = *a.qresync;
    *out += " qresync=(uidvalidity=" + std::to_string(q.uidvalidity) +
            " modseq=" + std::to_string(q.modseq);
    if (q.known_uids) *out += " known-uids=" + q.known_uids->ToString();
    if (q.known_sequence_set) {
      *out += " seq-match=(" + q.known_sequence_set->ToString() + " " +
              q.known_uid_set->ToString() + ")";
    }
    *out += ")";
  }
}

}  // namespace mailgrid::imap
