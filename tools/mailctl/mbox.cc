// mailctl mbox: an operator's look into mailstored (issue 7).
//
//   mailctl mbox create MAILBOX --tenant T [--owner O]   (CreateMailbox)
//   mailctl mbox folders MAILBOX                         (ListFolders with counters)
//   mailctl mbox status MAILBOX [FOLDER]                 (FolderStatus; default INBOX)
//   mailctl mbox quota MAILBOX                           (GetQuota)
//   mailctl mbox export MAILBOX FOLDER                   (ExportMbox to stdout, mboxrd)
//   mailctl mbox archive MAILBOX [--older-than 30d|--all] [--by-year] [--wait]   (StartArchive)
//
// Finding the shard: --mailstored "h:p,h:p" (or MAILGRID_MAILSTORED, or the
// cluster.json "mailstored" list); with several shards
// ("0=h:p,...;1=h:p,...") --shard N picks one (default 0). Followers answer
// with the leader's address, which is followed.
// Credentials: --token TOKEN (or MAILGRID_TOKEN), else --token-key FILE (or
// MAILGRID_TOKEN_SIGNING_KEY): a service token for "mailctl" is minted.
#include <cstdlib>
#include <iostream>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libs/auth/service_token.h"
#include "libs/base/status.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "libs/rpc/client.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"
#include "tools/mailctl/command.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace v1 = ::mailgrid::mailstore::v1;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// The replica addresses of the chosen shard.
absl::StatusOr<std::vector<std::string>> ShardAddresses(const Invocation& inv, const Args& args) {
  std::string spec = args.Get("mailstored", Env("MAILGRID_MAILSTORED"));
  if (spec.empty() && inv.cluster != nullptr) {
    auto addrs = inv.cluster->Addresses("mailstored");
    if (addrs.ok()) return *addrs;
  }
  if (spec.empty()) return absl::InvalidArgumentError("--mailstored ADDR[,ADDR] (or MAILGRID_MAILSTORED)");
  uint32_t shard = 0;
  if (args.Has("shard") && !absl::SimpleAtoi(args.Get("shard"), &shard))
    return absl::InvalidArgumentError("--shard: a number");
  ASSIGN_OR_RETURN(mailstore_client::ShardMap map, mailstore_client::ShardMap::Parse(spec));
  auto it = map.shards.find(shard);
  if (it == map.shards.end()) return absl::InvalidArgumentError(absl::StrCat("no address for shard ", shard));
  return it->second;
}

absl::StatusOr<std::string> Authorization(const Args& args) {
  std::string token = args.Get("token", Env("MAILGRID_TOKEN"));
  if (!token.empty()) return "Bearer " + token;
  std::string key = args.Get("token-key", Env("MAILGRID_TOKEN_SIGNING_KEY"));
  if (key.empty()) return absl::InvalidArgumentError("--token TOKEN or --token-key FILE");
  auto source = auth::ServiceTokenSource::FromPemFile(key, "mailctl");
  if (!source.ok()) return source.status();
  return (*source)->AuthorizationHeader();
}

// Runs `call` on the shard's leader (following the hint of followers).
absl::Status OnLeader(const std::vector<std::string>& addresses, const std::string& authorization,
                      const std::function<grpc::Status(v1::MailboxService::Stub*, grpc::ClientContext*)>& call) {
  std::vector<std::string> queue = addresses;
  grpc::Status last(grpc::StatusCode::UNAVAILABLE, "no replica reachable");
  for (size_t i = 0; i < queue.size() && i < 10; ++i) {
    rpc::ClientOptions o;
    o.target = queue[i];
    auto channel = rpc::MakeChannel(o);
    if (!channel.ok()) return channel.status();
    auto stub = v1::MailboxService::NewStub(*channel);
    auto ctx = rpc::ContextWithDeadline(absl::Seconds(30));
    ctx->AddMetadata("authorization", authorization);
    last = call(stub.get(), ctx.get());
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    auto md = ctx->GetServerTrailingMetadata();
    if (auto it = md.find("mailgrid-leader"); it != md.end())
      queue.insert(queue.begin() + i + 1, std::string(it->second.data(), it->second.size()));
  }
  if (last.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(last.error_code()), last.error_message());
}

void PrintFolder(std::ostream& out, const v1::Folder& f) {
  out << f.name() << "\tid=" << f.folder_id() << " messages=" << f.messages() << " unseen=" << f.unseen()
      << " recent=" << f.recent() << " uidnext=" << f.uidnext() << " uidvalidity=" << f.uidvalidity()
      << " highestmodseq=" << f.highest_modseq() << " bytes=" << f.size_bytes()
      << (f.noselect() ? " \\Noselect" : "") << "\n";
}

// "30d", "12h", "90m" (absl durations plus days).
absl::StatusOr<absl::Duration> ParseAge(const std::string& text) {
  absl::Duration d;
  if (absl::EndsWith(text, "d")) {
    int64_t days = 0;
    if (absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) && days >= 0) return absl::Hours(24 * days);
  } else if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration()) {
    return d;
  }
  return absl::InvalidArgumentError("--older-than: a duration such as 30d, 12h or 0s");
}

std::string JobLine(const v1::ArchiveJob& j) {
  return absl::StrCat("job ", j.job_id(), " ", v1::JobState_Name(j.state()), " moved ", j.moved(), "/",
                      j.total(), j.error().empty() ? "" : absl::StrCat(" error: ", j.error()), "\n");
}

// One-click archive: StartArchive, and with --wait the job followed to its end.
absl::Status Archive(const Args& args, const std::vector<std::string>& addrs, const std::string& authz,
                     const std::string& mailbox, std::ostream& out) {
  v1::StartArchiveRequest r;
  r.set_mailbox_id(mailbox);
  r.set_by_year(args.Has("by-year"));
  if (args.Has("all")) {
    r.set_all(true);
  } else {
    auto age = ParseAge(args.Get("older-than", "30d"));
    if (!age.ok()) return age.status();
    absl::Time cutoff = absl::Now() - *age;
    r.mutable_older_than()->set_seconds(absl::ToUnixSeconds(cutoff));
  }
  v1::ArchiveJob job;
  auto s = OnLeader(addrs, authz, [&](auto* stub, auto* ctx) { return stub->StartArchive(ctx, r, &job); });
  if (!s.ok()) return s;
  while (args.Has("wait") && (job.state() == v1::JOB_STATE_QUEUED || job.state() == v1::JOB_STATE_RUNNING)) {
    absl::SleepFor(absl::Milliseconds(200));
    v1::GetArchiveJobRequest g;
    g.set_job_id(job.job_id());
    s = OnLeader(addrs, authz, [&](auto* stub, auto* ctx) { return stub->GetArchiveJob(ctx, g, &job); });
    if (!s.ok()) return s;
  }
  out << JobLine(job);
  if (job.state() == v1::JOB_STATE_FAILED) return absl::InternalError(job.error());
  return absl::OkStatus();
}

absl::Status RunMbox(const Invocation& inv) {
  auto args = ParseArgs(inv.args, {"all", "by-year", "wait"});
  if (!args.ok()) return args.status();
  auto verb = args->Positional(0, "sub-command (create|folders|status|quota|export|archive)");
  if (!verb.ok()) return verb.status();
  auto mailbox = args->Positional(1, "MAILBOX");
  if (!mailbox.ok()) return mailbox.status();
  auto addrs = ShardAddresses(inv, *args);
  if (!addrs.ok()) return addrs.status();
  auto authz = Authorization(*args);
  if (!authz.ok()) return authz.status();
  std::ostream& out = *inv.out;
  if (*verb == "create") {
    v1::CreateMailboxRequest r;
    r.set_mailbox_id(*mailbox);
    auto tenant = args->Required("tenant");
    if (!tenant.ok()) return tenant.status();
    r.set_tenant_id(*tenant);
    r.set_owner_id(args->Get("owner", *mailbox));
    r.set_kind(common::v1::MAILBOX_KIND_USER);
    v1::MailboxInfo info;
    auto s = OnLeader(*addrs, *authz, [&](auto* stub, auto* ctx) { return stub->CreateMailbox(ctx, r, &info); });
    if (s.ok()) out << "mailbox " << info.mailbox_id() << " tenant " << info.tenant_id() << " shard " << info.shard() << "\n";
    return s;
  }
  if (*verb == "folders") {
    v1::ListFoldersRequest r;
    r.set_mailbox_id(*mailbox);
    r.set_with_status(true);
    v1::ListFoldersResponse resp;
    auto s = OnLeader(*addrs, *authz, [&](auto* stub, auto* ctx) { return stub->ListFolders(ctx, r, &resp); });
    if (s.ok())
      for (const auto& f : resp.folders()) PrintFolder(out, f);
    return s;
  }
  if (*verb == "status") {
    v1::FolderStatusRequest r;
    r.set_mailbox_id(*mailbox);
    r.mutable_folder()->set_name(args->positional.size() > 2 ? args->positional[2] : "INBOX");
    v1::FolderStatusResponse resp;
    auto s = OnLeader(*addrs, *authz, [&](auto* stub, auto* ctx) { return stub->FolderStatus(ctx, r, &resp); });
    if (s.ok()) {
      PrintFolder(out, resp.folder());
      out << "first_unseen_uid=" << resp.first_unseen_uid() << "\n";
    }
    return s;
  }
  if (*verb == "quota") {
    v1::GetQuotaRequest r;
    r.set_mailbox_id(*mailbox);
    v1::Quota q;
    auto s = OnLeader(*addrs, *authz, [&](auto* stub, auto* ctx) { return stub->GetQuota(ctx, r, &q); });
    if (s.ok()) {
      auto limit = [](const common::v1::Limit& l) {
        return l.unlimited() || l.value() == 0 ? std::string("unlimited") : absl::StrCat(l.value());
      };
      out << "usage_bytes=" << q.usage_bytes() << " limit_bytes=" << limit(q.limit().bytes())
          << " usage_messages=" << q.usage_messages() << " limit_messages=" << limit(q.limit().messages()) << "\n";
    }
    return s;
  }
  if (*verb == "export") {
    auto folder = args->Positional(2, "FOLDER");
    if (!folder.ok()) return folder.status();
    v1::ExportMboxRequest r;
    r.set_mailbox_id(*mailbox);
    r.mutable_folder()->set_name(*folder);
    uint64_t messages = 0;
    auto s = OnLeader(*addrs, *authz, [&](auto* stub, auto* ctx) {
      auto reader = stub->ExportMbox(ctx, r);
      v1::ExportMboxResponse chunk;
      while (reader->Read(&chunk)) {
        out << chunk.chunk();
        messages = chunk.messages();
      }
      return reader->Finish();
    });
    if (s.ok()) std::cerr << messages << " messages exported\n";
    return s;
  }
  if (*verb == "archive") return Archive(*args, *addrs, *authz, *mailbox, out);
  return UnknownSubcommand(*verb);
}

const bool kRegistered = RegisterCommand(
    {"mbox", "look into mailstored: mailboxes, folders, quota, mbox export",
     "mbox create MAILBOX --tenant T [--owner O] | folders MAILBOX | status MAILBOX [FOLDER] |\n"
     "  quota MAILBOX | export MAILBOX FOLDER |\n"
     "  archive MAILBOX [--older-than 30d | --all] [--by-year] [--wait]   [--mailstored ADDRS] [--shard N]\n"
     "  [--token TOKEN | --token-key PEM]",
     RunMbox});

}  // namespace
}  // namespace mailgrid::mailctl
