// client/snapconfctl.cc
//
// snapconfctl: the admin command line of snapconf. This file holds argument
// handling, help texts and I/O; formatting and parsing live in client/cli/
// (tested without a server), RPCs and endpoint rotation in AdminClient.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/admin_client.h"
#include "client/cli/args.h"
#include "client/cli/document.h"
#include "client/cli/exit_codes.h"
#include "client/cli/export_doc.h"
#include "client/cli/format.h"
#include "client/cli/policy_doc.h"
#include "client/cli/txn_file.h"
#include "common/status_macros.h"
#include "service/security/tokens.h"

namespace snapconf::cli {
namespace {

using client::AdminClient;

constexpr char kDefaultEndpoint[] = "127.0.0.1:7070";

constexpr char kToolHelp[] = R"(snapconfctl - read and change snapconf configuration

Usage:
  snapconfctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]
  snapconfctl COMMAND --help

Commands:
  get NS KEY            read one key
  put NS KEY [VALUE]    create or replace a key (value from VALUE, --from-file or stdin)
  del NS KEY            delete a key
  list NS [PREFIX]      list the keys of a namespace
  namespaces            list the namespaces and their sizes
  txn -f FILE           apply compares and writes atomically, from a JSON or YAML file
  history NS [KEY]      show committed changes, newest first
  diff NS --from REV    show what changed in a namespace between two revisions
  rollback NS --to REV  restore a namespace as of an older revision (as a new revision)
  export NS [PREFIX]    print a namespace's entries as one document (YAML unless -o json)
  import FILE           make a namespace equal to an exported document, as one revision
  watch NS...           follow changes, one line per change (see watch --help)
  status                describe the server
  audit                 show the audit log: writes, refusals, policy changes (newest first)
  policy get|set FILE   show or replace the access policy
  token new ID IDENTITY make a bearer token: the secret goes to a file, the hash to the server

Global flags (anywhere on the line):
  --endpoints H:P,...   servers to talk to; default $SNAPCONF_ENDPOINTS, else 127.0.0.1:7070.
                        Reads move on to the next server when one is unavailable; writes
                        only when the request provably never reached a server.
  -o, --output FORMAT   table (default), json or yaml
  --timeout DURATION    deadline of each request, e.g. 5s (default), 500ms, 1m
  --tls                 use TLS (system roots unless --ca-file)
  --ca-file FILE        PEM roots to trust; implies --tls
  --cert-file FILE      PEM client certificate chain (with --key-file); implies --tls
  --key-file FILE       PEM client private key; implies --tls
  --token-file FILE     bearer token, read from FILE (default $SNAPCONF_TOKEN_FILE);
                        requires TLS. Credentials are never accepted on the command line.
  -h, --help            show help

Output:
  table  aligned columns for people. Printable UTF-8 is shown as is; other bytes are
         escaped (\n, \t, \\, \xNN). Long values are cut in listings, never by get.
  json   one JSON document. Bytes are strings when valid UTF-8, otherwise base64 with a
         sibling "<field>_encoding": "base64" (e.g. "value_encoding").
  yaml   the same document as json, in YAML.
  export prints YAML for table (the default) too: an export is meant for a file.

Exit codes:
  0  success
  1  other error (including a declined rollback confirmation)
  2  usage or invalid input (local checks, INVALID_ARGUMENT, OUT_OF_RANGE revisions)
  3  not found
  4  compare failed (ABORTED, FAILED_PRECONDITION): nothing was changed
  5  server unavailable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED): nothing was written
  6  not authenticated or not allowed
  7  outcome unknown: a write was sent but the answer was lost; it may have been
     committed. Check (get/history) before retrying.

Examples:
  snapconfctl put payments/prod db.pool.max 20
  snapconfctl get payments/prod db.pool.max -o json
  snapconfctl --endpoints 10.0.0.1:7070,10.0.0.2:7070 list payments/prod db.
)";

struct Command;
struct Context;
using RunFn = absl::Status (*)(Context&, const ParsedArgs&);

struct Command {
  const char* name;
  std::size_t min_args;
  std::size_t max_args;
  std::vector<FlagSpec> flags;
  const char* help;
  RunFn run;
};

struct Context {
  client::AdminClientOptions options;
  OutputFormat format = OutputFormat::kTable;
  // What a NOT_FOUND refers to, for the error line ("payments/prod db.pool.max").
  std::string subject;

  absl::StatusOr<AdminClient> Client() const { return AdminClient::Create(options); }
};

void Print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }
void PrintErr(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stderr); }

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path == "-") {
    std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    return data;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::int64_t> IntFlag(const ParsedArgs& args, const std::string& name,
                                     std::int64_t fallback) {
  std::optional<std::string> text = args.Get(name);
  if (!text) return fallback;
  return ParseInt64Flag(name, *text);
}

// ---- commands ----

absl::Status RunGet(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  const std::string& key = args.positionals[1];
  client::ReadOptions read;
  ASSIGN_OR_RETURN(read.revision, IntFlag(args, "--revision", 0));
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = absl::StrCat(ns, " ", key);
  ASSIGN_OR_RETURN(client::GetResult r, client.Get(ns, key, read));
  Print(FormatGet(r, ctx.format));
  return absl::OkStatus();
}

absl::Status RunPut(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  const std::string& key = args.positionals[1];
  const std::optional<std::string> file = args.Get("--from-file");
  if (args.positionals.size() == 3 && file) {
    return absl::InvalidArgumentError("give the value either as VALUE or with --from-file");
  }
  std::string value;
  if (args.positionals.size() == 3) {
    value = args.positionals[2];
  } else {
    if (!file && isatty(STDIN_FILENO)) PrintErr("reading the value from stdin (end with Ctrl-D)\n");
    ASSIGN_OR_RETURN(value, ReadInput(file.value_or("-")));
  }
  client::PutOptions put;
  put.content_type = args.Get("--content-type").value_or("");
  put.message = args.Get("--message").value_or("");
  if (args.Has("--expect-revision")) {
    ASSIGN_OR_RETURN(put.expected_mod_revision, IntFlag(args, "--expect-revision", 0));
  }
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = absl::StrCat(ns, " ", key);
  ASSIGN_OR_RETURN(client::PutResult r, client.Put(ns, key, value, put));
  Print(FormatPut(r, ctx.format));
  return absl::OkStatus();
}

absl::Status RunDel(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  const std::string& key = args.positionals[1];
  client::DeleteOptions del;
  del.message = args.Get("--message").value_or("");
  if (args.Has("--expect-revision")) {
    ASSIGN_OR_RETURN(del.expected_mod_revision, IntFlag(args, "--expect-revision", 0));
  }
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = absl::StrCat(ns, " ", key);
  ASSIGN_OR_RETURN(client::DeleteResult r, client.Delete(ns, key, del));
  Print(FormatDelete(r, ctx.format));
  return absl::OkStatus();
}

absl::Status RunList(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  client::ListOptions list;
  if (args.positionals.size() == 2) list.prefix = args.positionals[1];
  ASSIGN_OR_RETURN(list.revision, IntFlag(args, "--revision", 0));
  list.keys_only = args.Has("--keys-only");
  ASSIGN_OR_RETURN(std::int64_t limit, IntFlag(args, "--limit", 0));
  if (limit < 0) return absl::InvalidArgumentError("--limit must not be negative");
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = ns;
  ASSIGN_OR_RETURN(client::ListPage page,
                   client.ListAll(ns, list, static_cast<std::size_t>(limit)));
  Print(FormatList(page, list.keys_only, ctx.format));
  return absl::OkStatus();
}

absl::Status RunNamespaces(Context& ctx, const ParsedArgs& args) {
  ASSIGN_OR_RETURN(std::int64_t revision, IntFlag(args, "--revision", 0));
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ASSIGN_OR_RETURN(client::NamespaceList list, client.ListNamespaces(revision));
  Print(FormatNamespaces(list, ctx.format));
  return absl::OkStatus();
}

absl::Status RunTxn(Context& ctx, const ParsedArgs& args) {
  const std::optional<std::string> file = args.Get("--file");
  if (!file) return absl::InvalidArgumentError("txn needs -f FILE (or -f - for stdin)");
  ASSIGN_OR_RETURN(std::string text, ReadInput(*file));
  ASSIGN_OR_RETURN(client::TxnSpec spec, ParseTxnFile(text, *file == "-" ? "stdin" : *file));
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ASSIGN_OR_RETURN(client::ChangeList r, client.Txn(spec));
  Print(FormatChanges(r, absl::StrCat("committed revision ", r.revision), ctx.format));
  return absl::OkStatus();
}

absl::Status RunHistory(Context& ctx, const ParsedArgs& args) {
  client::HistoryOptions history;
  history.ns = args.positionals[0];
  if (args.positionals.size() == 2) history.key = args.positionals[1];
  ASSIGN_OR_RETURN(std::int64_t limit, IntFlag(args, "--limit", 100));
  if (limit <= 0) return absl::InvalidArgumentError("--limit must be positive");
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = history.key.empty() ? history.ns : absl::StrCat(history.ns, " ", history.key);
  client::HistoryPage all;
  bool first = true;
  while (true) {
    history.page_size = static_cast<std::int32_t>(
        std::min<std::int64_t>(1000, limit - static_cast<std::int64_t>(all.records.size())));
    ASSIGN_OR_RETURN(client::HistoryPage page, client.History(history));
    if (first) all.revision = page.revision;
    first = false;
    for (auto& r : page.records) {
      if (static_cast<std::int64_t>(all.records.size()) == limit) break;
      all.records.push_back(std::move(r));
    }
    all.next_page_token = page.next_page_token;
    if (page.next_page_token.empty() || static_cast<std::int64_t>(all.records.size()) >= limit) {
      break;
    }
    history.page_token = page.next_page_token;
  }
  Print(FormatHistory(all, ctx.format));
  return absl::OkStatus();
}

absl::Status RunDiff(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  if (!args.Has("--from")) return absl::InvalidArgumentError("diff needs --from REV");
  ASSIGN_OR_RETURN(std::int64_t from, IntFlag(args, "--from", 0));
  client::DiffOptions diff;
  ASSIGN_OR_RETURN(diff.to_revision, IntFlag(args, "--to", 0));
  diff.prefix = args.Get("--prefix").value_or("");
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = ns;
  ASSIGN_OR_RETURN(client::ChangeList r, client.Diff(ns, from, diff));
  Print(FormatChanges(r,
                      absl::StrCat("diff of ", DisplayBytes(ns), " from revision ", from,
                                   " to revision ", r.revision),
                      ctx.format));
  return absl::OkStatus();
}

absl::Status RunRollback(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  if (!args.Has("--to")) return absl::InvalidArgumentError("rollback needs --to REV");
  ASSIGN_OR_RETURN(std::int64_t to, IntFlag(args, "--to", 0));
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = ns;

  // Preview: Diff(to -> current) says what differs; the rollback writes the
  // reverse, so before/after are swapped to show what will be written.
  // Revisions and versions can never be restored, so keys whose value and
  // content type already match the target are not part of the rollback.
  ASSIGN_OR_RETURN(client::ChangeList diff, client.Diff(ns, to));
  client::ChangeList preview;
  preview.revision = diff.revision;
  for (client::Change& c : diff.changes) {
    if (c.before && c.after && c.before->value == c.after->value &&
        c.before->content_type == c.after->content_type) {
      continue;
    }
    std::swap(c.before, c.after);
    preview.changes.push_back(std::move(c));
  }
  if (preview.changes.empty()) {
    Print(FormatChanges(
        preview,
        absl::StrCat(DisplayBytes(ns), " already equals revision ", to, "; nothing to roll back"),
        ctx.format));
    return absl::OkStatus();
  }

  // Guard: commit only if the namespace is still what the preview showed.
  client::RollbackOptions rollback;
  rollback.message = args.Get("--message").value_or("");
  client::HistoryOptions latest;
  latest.ns = ns;
  latest.to_revision = diff.revision;
  latest.page_size = 1;
  ASSIGN_OR_RETURN(client::HistoryPage head, client.History(latest));
  if (!head.records.empty()) rollback.expected_namespace_revision = head.records[0].revision;

  if (!args.Has("--yes")) {
    PrintErr(FormatChanges(
        preview,
        absl::StrCat("rolling back ", DisplayBytes(ns), " to revision ", to, " will write:"),
        OutputFormat::kTable));
    PrintErr("apply these changes? [y/N] ");
    std::string answer;
    if (!std::getline(std::cin, answer)) {
      PrintErr("\n");
      return absl::InvalidArgumentError(
          "refusing to roll back without confirmation: answer on stdin or pass --yes");
    }
    answer = absl::AsciiStrToLower(absl::StripAsciiWhitespace(answer));
    if (answer != "y" && answer != "yes") {
      return absl::CancelledError("rollback not confirmed; nothing changed");
    }
  }
  ASSIGN_OR_RETURN(client::ChangeList r, client.Rollback(ns, to, rollback));
  Print(FormatChanges(r,
                      absl::StrCat("rolled back ", DisplayBytes(ns), " to revision ", to,
                                   " as revision ", r.revision),
                      ctx.format));
  return absl::OkStatus();
}

absl::Status RunExport(Context& ctx, const ParsedArgs& args) {
  const std::string& ns = args.positionals[0];
  client::ListOptions list;
  if (args.positionals.size() == 2) list.prefix = args.positionals[1];
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = ns;
  ASSIGN_OR_RETURN(client::ListPage page, client.ListAll(ns, list));
  Print(FormatExportDocument(MakeExportDocument(ns, list.prefix, page), ctx.format));
  return absl::OkStatus();
}

absl::Status RunImport(Context& ctx, const ParsedArgs& args) {
  const std::string& file = args.positionals[0];
  ASSIGN_OR_RETURN(std::string text, ReadInput(file));
  ASSIGN_OR_RETURN(ExportDocument doc, ParseExportDocument(text, file == "-" ? "stdin" : file));
  const bool prune = args.Has("--prune");
  const bool dry_run = args.Has("--dry-run");
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ctx.subject = doc.ns;

  client::ListOptions list;
  list.prefix = doc.prefix;
  ASSIGN_OR_RETURN(client::ListPage current, client.ListAll(doc.ns, list));
  ImportPlan plan = PlanImport(doc, current.entries, prune);
  const std::string where = doc.prefix.empty() ? DisplayBytes(doc.ns)
                                               : absl::StrCat(DisplayBytes(doc.ns), " (prefix ",
                                                              DisplayBytes(doc.prefix), ")");
  if (plan.changes.empty()) {
    Print("nothing to import\n");
    return absl::OkStatus();
  }
  if (plan.changes.size() > kMaxImportOperations) {
    return absl::InvalidArgumentError(absl::StrCat(
        "import of ", where, " needs ", plan.changes.size(), " operations, over the Txn limit of ",
        kMaxImportOperations,
        "; an import is one atomic Txn and is never split: import a smaller prefix at a time"));
  }
  client::ChangeList preview;
  preview.revision = current.revision;
  preview.changes = plan.changes;
  const std::string summary = absl::StrCat(
      "importing into ", where, " will write (", plan.changes.size(),
      plan.changes.size() == 1 ? " change, " : " changes, ", plan.unchanged, " unchanged):");
  if (dry_run) {
    Print(FormatChanges(preview, absl::StrCat("dry run: ", summary), ctx.format));
    return absl::OkStatus();
  }

  // Guard: commit only if the namespace is still what the plan was made from.
  // Without retained history the server falls back to the newest key's
  // mod_revision, and so does this.
  client::HistoryOptions latest;
  latest.ns = doc.ns;
  latest.to_revision = current.revision;
  latest.page_size = 1;
  ASSIGN_OR_RETURN(client::HistoryPage head, client.History(latest));
  std::int64_t namespace_revision = 0;
  if (!head.records.empty()) {
    namespace_revision = head.records[0].revision;
  } else {
    for (const client::Entry& e : current.entries) {
      namespace_revision = std::max(namespace_revision, e.mod_revision);
    }
  }

  if (!args.Has("--yes")) {
    PrintErr(FormatChanges(preview, summary, OutputFormat::kTable));
    PrintErr("apply these changes? [y/N] ");
    std::string answer;
    if (!std::getline(std::cin, answer)) {
      PrintErr("\n");
      return absl::InvalidArgumentError(
          "refusing to import without confirmation: answer on stdin or pass --yes");
    }
    answer = absl::AsciiStrToLower(absl::StripAsciiWhitespace(answer));
    if (answer != "y" && answer != "yes") {
      return absl::CancelledError("import not confirmed; nothing changed");
    }
  }
  ASSIGN_OR_RETURN(client::ChangeList r, client.Txn(ImportTxn(doc.ns, plan, namespace_revision,
                                                              args.Get("--message").value_or(""))));
  Print(FormatChanges(r, absl::StrCat("imported into ", where, " as revision ", r.revision),
                      ctx.format));
  return absl::OkStatus();
}

absl::Status RunWatch(Context& ctx, const ParsedArgs& args) {
  client::WatchSpec spec;
  std::vector<std::string> prefixes;
  if (std::optional<std::string> prefix = args.Get("--prefix")) prefixes.push_back(*prefix);
  for (const std::string& ns : args.positionals) spec.filters.push_back({ns, prefixes});
  ASSIGN_OR_RETURN(spec.start_revision, IntFlag(args, "--from", 0));
  ASSIGN_OR_RETURN(const std::int64_t max_events, IntFlag(args, "--max-events", 0));
  spec.latest_state = args.Has("--latest");
  absl::Duration duration = absl::InfiniteDuration();
  if (std::optional<std::string> d = args.Get("--duration")) {
    if (!absl::ParseDuration(*d, &duration) || duration <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("--duration: bad duration \"", *d, "\""));
    }
  }
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  std::int64_t printed = 0;
  return client.Watch(spec, duration, [&](const client::WatchEvent& event) {
    const std::string text = FormatWatchEvent(event, ctx.format);
    Print(text);
    std::fflush(stdout);
    if (event.kind != client::WatchEvent::Kind::kProgress) {
      printed += std::count(text.begin(), text.end(), '\n');
    }
    return max_events <= 0 || printed < max_events;
  });
}

absl::Status RunTokenNew(Context& ctx, const ParsedArgs& args) {
  if (args.positionals[0] != "new") {
    return absl::InvalidArgumentError("token: the only subcommand is \"new\"");
  }
  const std::string& id = args.positionals[1];
  const std::string& identity = args.positionals[2];
  const std::optional<std::string> secret_file = args.Get("--secret-file");
  if (!secret_file) {
    return absl::InvalidArgumentError(
        "token new: --secret-file is required (the secret is never printed)");
  }
  if (!ValidTokenId(id)) {
    return absl::InvalidArgumentError("token new: TOKEN_ID must be [A-Za-z0-9_-]{1,64}");
  }
  if (!ValidIdentity(identity)) {
    return absl::InvalidArgumentError("token new: IDENTITY must be [A-Za-z0-9_.@:/-]{1,128}");
  }
  std::string line = absl::StrCat(id, " ", identity, " ");
  ASSIGN_OR_RETURN(NewToken token, MakeToken());
  absl::StrAppend(&line, token.hash);
  if (auto expires = args.Get("--expires")) {
    absl::Time t;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, *expires, &t, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--expires must be an RFC 3339 time such as 2027-01-31T00:00:00Z: ", error));
    }
    absl::StrAppend(&line,
                    " expires=", absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone()));
  }
  // The same checks the server applies, so a line that is printed is a line it accepts.
  RETURN_IF_ERROR(TokenVerifier::Parse(line).status());
  // O_EXCL: never overwrite an existing credential by accident.
  const int fd = ::open(secret_file->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create ", *secret_file, ": ", std::strerror(errno), " (it must not exist yet)"));
  }
  const std::string presented = absl::StrCat(id, ".", token.secret, "\n");
  const bool written =
      ::write(fd, presented.data(), presented.size()) == static_cast<ssize_t>(presented.size()) &&
      ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(secret_file->c_str());
    return absl::InternalError(absl::StrCat("cannot write ", *secret_file));
  }
  if (ctx.format == OutputFormat::kTable) {
    Print(absl::StrCat(line, "\n"));
  } else {
    Json doc = {{"token_id", id},
                {"identity", identity},
                {"secret_file", *secret_file},
                {"tokens_file_line", line}};
    Print(ctx.format == OutputFormat::kJson ? doc.dump(2) + "\n"
                                            : ToYaml(doc, YamlStrings::kQuoteWhenNeeded));
  }
  return absl::OkStatus();
}

absl::Status RunAudit(Context& ctx, const ParsedArgs& args) {
  ASSIGN_OR_RETURN(const std::int64_t limit, IntFlag(args, "--limit", 20));
  if (limit <= 0) return absl::InvalidArgumentError("--limit must be at least 1");
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  client::AuditOptions options;
  options.identity = args.Get("--identity").value_or("");
  options.ns = args.Get("--namespace").value_or("");
  client::AuditPage all;
  // Pages of at most 1000 until the limit; bounded by the limit itself.
  while (static_cast<std::int64_t>(all.events.size()) < limit) {
    options.page_size = static_cast<std::int32_t>(
        std::min<std::int64_t>(1000, limit - static_cast<std::int64_t>(all.events.size())));
    ASSIGN_OR_RETURN(client::AuditPage page, client.ListAuditEvents(options));
    for (client::AuditEvent& e : page.events) all.events.push_back(std::move(e));
    all.next_page_token = page.next_page_token;
    if (page.next_page_token.empty() || page.events.empty()) break;
    options.page_token = page.next_page_token;
  }
  Print(FormatAudit(all, ctx.format));
  return absl::OkStatus();
}

absl::Status RunPolicy(Context& ctx, const ParsedArgs& args) {
  const std::string& sub = args.positionals[0];
  if (sub == "get") {
    if (args.positionals.size() != 1) {
      return absl::InvalidArgumentError("policy get takes no arguments");
    }
    ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
    ASSIGN_OR_RETURN(client::AccessPolicy policy, client.GetPolicy());
    Print(FormatPolicy(policy, ctx.format));
    return absl::OkStatus();
  }
  if (sub == "set") {
    if (args.positionals.size() != 2) {
      return absl::InvalidArgumentError("policy set needs one FILE (or - for stdin)");
    }
    const std::string& file = args.positionals[1];
    ASSIGN_OR_RETURN(const std::string text, ReadInput(file));
    ASSIGN_OR_RETURN(client::AccessPolicy policy,
                     ParsePolicyDocument(text, file == "-" ? "stdin" : file));
    ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
    ASSIGN_OR_RETURN(client::AccessPolicy now, client.UpdatePolicy(policy, args.Has("--force")));
    if (ctx.format == OutputFormat::kTable) {
      Print(absl::StrCat("policy version ", now.version, " in force (", now.roles.size(),
                         " roles, ", now.bindings.size(), " bindings)\n"));
    } else {
      Print(FormatPolicy(now, ctx.format));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("policy: the subcommands are \"get\" and \"set FILE\"");
}

absl::Status RunStatus(Context& ctx, const ParsedArgs& args) {
  ASSIGN_OR_RETURN(AdminClient client, ctx.Client());
  ASSIGN_OR_RETURN(client::ServerStatus s, client.GetServerStatus());
  Print(FormatStatus(s, ctx.format));
  return absl::OkStatus();
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"get",
       2,
       2,
       {{"--revision", "", true}},
       R"(Usage: snapconfctl get NS KEY [--revision R]

Reads one key. Prints the value and its metadata (json/yaml: the entry and the
revision it was read at).

Flags:
  --revision R   read as of revision R (must still be retained); default: current

Examples:
  snapconfctl get payments/prod db.pool.max
  snapconfctl get payments/prod db.pool.max --revision 41 -o json
)",
       RunGet},
      {"put",
       2,
       3,
       {{"--from-file", "", true},
        {"--content-type", "", true},
        {"--expect-revision", "", true},
        {"--message", "-m", true}},
       R"(Usage: snapconfctl put NS KEY [VALUE] [--from-file F] [--content-type T]
                       [--expect-revision N] [-m MSG]

Creates or replaces one key. The value is VALUE, the contents of F, or (with
neither) everything read from stdin. Use `--` before a VALUE that starts with '-'.

Flags:
  --from-file F         read the value from file F ("-" for stdin)
  --content-type T      media type, e.g. application/json
  --expect-revision N   write only if the key's mod_revision is N (0: only if the key
                        does not exist); otherwise exit 4 and nothing changes
  -m, --message MSG     message recorded in history

Examples:
  snapconfctl put payments/prod db.pool.max 20 -m "more connections"
  snapconfctl put payments/prod limits.json --from-file limits.json --content-type application/json
  echo -n 40 | snapconfctl put payments/prod db.pool.max --expect-revision 57
)",
       RunPut},
      {"del",
       2,
       2,
       {{"--expect-revision", "", true}, {"--message", "-m", true}},
       R"(Usage: snapconfctl del NS KEY [--expect-revision N] [-m MSG]

Deletes one key. Exit 3 when it does not exist.

Flags:
  --expect-revision N   delete only if the key's mod_revision is N (else exit 4)
  -m, --message MSG     message recorded in history

Examples:
  snapconfctl del payments/prod feature.old
  snapconfctl del payments/prod feature.old --expect-revision 12
)",
       RunDel},
      {"list",
       1,
       2,
       {{"--revision", "", true}, {"--keys-only", "", false}, {"--limit", "", true}},
       R"(Usage: snapconfctl list NS [PREFIX] [--revision R] [--keys-only] [--limit N]

Lists the keys of a namespace in key order, following pages; every page comes
from the same revision.

Flags:
  --revision R   list as of revision R; default: current
  --keys-only    omit values
  --limit N      stop after N entries (0: no limit, the default)

Examples:
  snapconfctl list payments/prod
  snapconfctl list payments/prod db. --keys-only -o yaml
)",
       RunList},
      {"namespaces",
       0,
       0,
       {{"--revision", "", true}},
       R"(Usage: snapconfctl namespaces [--revision R]

Lists the namespaces that hold at least one key, with their key counts.

Examples:
  snapconfctl namespaces
  snapconfctl namespaces -o json
)",
       RunNamespaces},
      {"txn",
       0,
       0,
       {{"--file", "-f", true}},
       R"(Usage: snapconfctl txn -f FILE

Applies puts and deletes, possibly across namespaces, as one revision, if and
only if every compare holds (otherwise exit 4 and nothing changes). FILE is
JSON or YAML; "-f -" reads stdin.

  {"compares": [
     {"namespace": "payments/prod", "key": "db.pool.max",
      "target": "mod_revision", "op": "==", "number": 57}],
   "operations": [
     {"put": {"namespace": "payments/prod", "key": "db.pool.max", "value": "40",
              "content_type": "text/plain"}},
     {"delete": {"namespace": "payments/prod", "key": "db.pool.min"}}],
   "message": "resize the pool"}

  target: mod_revision | create_revision | version | exists | value | namespace_revision
  op:     == | != | < | >
  number: for every target but value (exists: 1 or 0); value: for target value.
  A value that is not UTF-8 is written in base64 with "value_encoding": "base64".

Examples:
  snapconfctl txn -f resize.yaml
  snapconfctl txn -f - < resize.json
)",
       RunTxn},
      {"history",
       1,
       2,
       {{"--limit", "", true}},
       R"(Usage: snapconfctl history NS [KEY] [--limit N]

Shows the committed change sets that touched the namespace (or the key), newest
first, one row per changed key.

Flags:
  --limit N   at most N change sets (default 100)

Examples:
  snapconfctl history payments/prod
  snapconfctl history payments/prod db.pool.max --limit 5 -o json
)",
       RunHistory},
      {"diff",
       1,
       1,
       {{"--from", "", true}, {"--to", "", true}, {"--prefix", "", true}},
       R"(Usage: snapconfctl diff NS --from A [--to B] [--prefix P]

Shows the net changes of a namespace between revisions A and B (default: the
current one). BEFORE is the value at A, AFTER the value at B.

Examples:
  snapconfctl diff payments/prod --from 40
  snapconfctl diff payments/prod --from 40 --to 45 --prefix db.
)",
       RunDiff},
      {"rollback",
       1,
       1,
       {{"--to", "", true}, {"--yes", "-y", false}, {"--message", "-m", true}},
       R"(Usage: snapconfctl rollback NS --to REV [--yes] [-m MSG]

Restores a namespace to its state at revision REV by writing one new revision
(history is never rewritten). First shows what will be written and asks for
confirmation on stdin; without --yes and without an answer it refuses (exit 2),
and any answer other than y/yes cancels (exit 1). The rollback only commits if
the namespace did not change after the preview (otherwise exit 4).

Flags:
  --to REV            the revision to restore (must still be retained)
  -y, --yes           do not ask
  -m, --message MSG   message recorded in history

Examples:
  snapconfctl rollback payments/prod --to 40
  snapconfctl rollback payments/prod --to 40 --yes -m "undo the pool change"
)",
       RunRollback},
      {"export",
       1,
       2,
       {},
       R"(Usage: snapconfctl export NS [PREFIX] [-o json|yaml]

Prints every entry of a namespace (only keys under PREFIX when given), all as
of one revision, as one document that `snapconfctl import` reads back:

  {"namespace": "payments/prod", "prefix": "db.", "revision": 42,
   "entries": [{"key": "db.pool.max", "value": "20", "content_type": "text/plain"}]}

The output is YAML unless -o json: the default (table) prints YAML too, since an
export is meant for a file. Values that are not UTF-8 are base64 with
"value_encoding": "base64".

Examples:
  snapconfctl export payments/prod > prod.yaml
  snapconfctl export payments/prod db. -o json > prod-db.json
)",
       RunExport},
      {"import",
       1,
       1,
       {{"--dry-run", "", false},
        {"--yes", "-y", false},
        {"--prune", "", false},
        {"--message", "-m", true}},
       R"(Usage: snapconfctl import FILE [--dry-run] [--yes] [--prune] [-m MSG]

Makes a namespace (under the document's prefix, when it has one) equal to a
document written by `snapconfctl export`; FILE is JSON or YAML, "-" reads stdin.
Compares the document with the namespace's current entries and shows the plan:
create, update and, with --prune, delete (keys on the server that the document
lacks). Values and content types are compared; revisions are not. Then asks for
confirmation on stdin; without --yes and without an answer it refuses (exit 2),
and any answer other than y/yes cancels (exit 1).

The plan is applied as one transaction (one revision, all or nothing) that only
commits if the namespace did not change after the plan was made (otherwise
exit 4). A plan of more than 128 operations, the transaction limit, is refused
(exit 2) rather than split. When nothing differs it prints "nothing to import"
and writes nothing.

Flags:
  --dry-run           print the plan and write nothing
  -y, --yes           do not ask
  --prune             also delete keys absent from the document
  -m, --message MSG   message recorded in history

Examples:
  snapconfctl import prod.yaml --dry-run
  snapconfctl import prod.yaml --prune --yes -m "restore from backup"
  snapconfctl export payments/prod | snapconfctl --endpoints 10.0.0.9:7070 import - --yes
)",
       RunImport},
      {"watch",
       1,
       64,
       {{"--prefix", "", true},
        {"--from", "", true},
        {"--latest", "", false},
        {"--max-events", "", true},
        {"--duration", "", true}},
       R"(Usage: snapconfctl watch NAMESPACE... [--prefix P] [--from REV] [--latest]
                        [--max-events N] [--duration D]

Follows changes of one or more namespaces (only keys under P when given) and
prints one line per change. Without --from it starts with the current state
(kind "reset", one line per key), then every change; with --from REV it
replays every change from REV on (a reset when REV is older than history).
--latest asks for the latest state only: a watcher that falls behind gets one
net difference instead of every revision. With -o json each line is one JSON
object with "kind" (change, reset or progress), "revision", "namespace",
"key", "op" and "value". Runs until interrupted, until N changes were
printed, or for D (e.g. 30s).

Examples:
  snapconfctl watch payments/prod
  snapconfctl watch payments/prod shared/feature-flags --prefix db. --from 120 -o json
)",
       RunWatch},
      {"status",
       0,
       0,
       {},
       R"(Usage: snapconfctl status

Describes the server that answers: node, version, store, revisions, sizes and
whether it accepts writes.

Examples:
  snapconfctl status
  snapconfctl --endpoints 10.0.0.2:7070 status -o json
)",
       RunStatus},
      {"audit",
       0,
       0,
       {{"--limit", "", true}, {"--identity", "", true}, {"--namespace", "", true}},
       R"(Usage: snapconfctl audit [--limit N] [--identity ID] [--namespace NS]

Prints the audit log of the server that answers, newest first: every write
(put, del, txn, rollback, import) and policy change, with who, when, the keys,
the revisions before and after, and the outcome - refused attempts included
(PERMISSION_DENIED, INVALID_ARGUMENT, ABORTED, UNAUTHENTICATED, ...). Each
node keeps its own log: ask each node of a cluster. Needs admin on "*".

Flags:
  --limit N        at most N events (default 20)
  --identity ID    only the events of this identity
  --namespace NS   only the events that involve this namespace

Examples:
  snapconfctl audit
  snapconfctl audit --identity ci/deployer --limit 200 -o json
)",
       RunAudit},
      {"policy",
       1,
       2,
       {{"--force", "", false}},
       R"(Usage: snapconfctl policy get
       snapconfctl policy set FILE [--force]

get prints the access policy in force, in the shape of the server's policy
file (YAML; JSON with -o json), with its version. set replaces the policy with
FILE (YAML or JSON; - for stdin): the server checks it as it checks its policy
file, refuses it with ABORTED when the version in FILE is no longer the version
in force (someone changed the policy since you read it: get it again), writes
its policy file and applies it at once. A policy that would take admin on "*"
away from you is refused unless --force. Needs admin on "*".

Examples:
  snapconfctl policy get > policy.yaml
  $EDITOR policy.yaml && snapconfctl policy set policy.yaml
)",
       RunPolicy},
      {"token",
       3,
       3,
       {{"--secret-file", "", true}, {"--expires", "", true}},
       R"(Usage: snapconfctl token new TOKEN_ID IDENTITY --secret-file FILE [--expires TIME]

Makes a bearer token for IDENTITY. The token (TOKEN_ID.SECRET) is written to
FILE, created with mode 0600 (it must not exist yet), for use with
--token-file. The line printed goes into the server's --tokens-file: it holds
only the SHA-256 of the secret, so the tokens file is not a secret store.
TOKEN_ID is public (logs and audit records show it). --expires takes an RFC
3339 time after which the server refuses the token. Needs no server.

Examples:
  snapconfctl token new deploy-bot ci/deployer --secret-file deploy-bot.token >> tokens
  snapconfctl token new alice alice@example.com --secret-file alice.token \\
      --expires 2027-01-31T00:00:00Z
)",
       RunTokenNew},
  };
  return kCommands;
}

const std::vector<FlagSpec>& GlobalFlags() {
  static const std::vector<FlagSpec> kFlags = {
      {"--endpoints", "", true}, {"--output", "-o", true},   {"--timeout", "", true},
      {"--tls", "", false},      {"--ca-file", "", true},    {"--cert-file", "", true},
      {"--key-file", "", true},  {"--token-file", "", true}, {"--help", "-h", false}};
  return kFlags;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& c : Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

// Index of the command word: the first argument that is neither a global
// flag nor a global flag's value.
std::size_t FindCommandIndex(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') return i;
    for (const FlagSpec& f : GlobalFlags()) {
      if (f.takes_value && (a == f.name || a == f.short_name)) ++i;
    }
  }
  return args.size();
}

absl::Status Configure(const ParsedArgs& args, Context& ctx) {
  std::string endpoints = kDefaultEndpoint;
  if (const char* env = std::getenv("SNAPCONF_ENDPOINTS"); env != nullptr && *env != '\0') {
    endpoints = env;
  }
  if (auto e = args.Get("--endpoints")) endpoints = *e;
  ASSIGN_OR_RETURN(ctx.options.endpoints, client::ParseEndpoints(endpoints));
  if (auto o = args.Get("--output")) {
    ASSIGN_OR_RETURN(ctx.format, ParseOutputFormat(*o));
  }
  if (auto t = args.Get("--timeout")) {
    ASSIGN_OR_RETURN(ctx.options.call_timeout, ParseDurationFlag("--timeout", *t));
  }
  client::ChannelSecurity& sec = ctx.options.security;
  if (args.Has("--tls") || args.Has("--ca-file") || args.Has("--cert-file") ||
      args.Has("--key-file")) {
    sec.mode = client::ChannelSecurity::Mode::kTls;
  }
  if (auto f = args.Get("--ca-file")) {
    ASSIGN_OR_RETURN(sec.root_certs_pem, ReadInput(*f));
  }
  if (auto f = args.Get("--cert-file")) {
    ASSIGN_OR_RETURN(sec.client_cert_chain_pem, ReadInput(*f));
  }
  if (auto f = args.Get("--key-file")) {
    ASSIGN_OR_RETURN(sec.client_private_key_pem, ReadInput(*f));
  }
  std::string token_file;
  if (const char* env = std::getenv("SNAPCONF_TOKEN_FILE"); env != nullptr) token_file = env;
  if (auto f = args.Get("--token-file")) token_file = *f;
  if (!token_file.empty()) {
    ASSIGN_OR_RETURN(std::string token, ReadInput(token_file));
    sec.bearer_token = std::string(absl::StripAsciiWhitespace(token));
    if (sec.mode == client::ChannelSecurity::Mode::kInsecure) {
      return absl::InvalidArgumentError("a token file requires TLS (--tls or --ca-file)");
    }
  }
  return absl::OkStatus();
}

int Fail(const absl::Status& status, std::string_view subject = {}) {
  PrintErr(ErrorLine(status, subject) + "\n");
  return ExitCodeFor(status);
}

int Main(const std::vector<std::string>& argv) {
  const std::size_t index = FindCommandIndex(argv);
  if (index == argv.size()) {
    // Only global flags: help on request, a usage error otherwise.
    absl::StatusOr<ParsedArgs> globals = ParseArgs(argv, GlobalFlags());
    if (globals.ok() && globals->Has("--help")) {
      Print(kToolHelp);
      return kExitOk;
    }
    PrintErr(kToolHelp);
    return Fail(globals.ok() ? absl::InvalidArgumentError("no command given") : globals.status());
  }
  std::string name = argv[index];
  std::vector<std::string> rest(argv.begin(), argv.begin() + static_cast<std::ptrdiff_t>(index));
  rest.insert(rest.end(), argv.begin() + static_cast<std::ptrdiff_t>(index) + 1, argv.end());

  if (name == "help") {
    if (rest.empty() || rest[0] == "--help" || rest[0] == "-h") {
      Print(kToolHelp);
      return kExitOk;
    }
    const Command* c = FindCommand(rest[0]);
    if (c == nullptr) return Fail(absl::InvalidArgumentError("unknown command " + rest[0]));
    Print(c->help);
    return kExitOk;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", name, "\"; see 'snapconfctl --help'")));
  }
  std::vector<FlagSpec> specs = GlobalFlags();
  specs.insert(specs.end(), command->flags.begin(), command->flags.end());
  absl::StatusOr<ParsedArgs> args = ParseArgs(rest, specs);
  if (args.ok() && args->Has("--help")) {
    Print(command->help);
    return kExitOk;
  }
  const auto usage = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", what, "; see 'snapconfctl ", name, " --help'"));
  };
  if (!args.ok()) return Fail(usage(std::string(args.status().message())));
  const std::size_t n = args->positionals.size();
  if (n < command->min_args || n > command->max_args) {
    return Fail(usage(n < command->min_args ? "missing arguments" : "too many arguments"));
  }
  Context ctx;
  if (absl::Status s = Configure(*args, ctx); !s.ok()) return Fail(s);
  const absl::Status status = command->run(ctx, *args);
  if (!status.ok()) return Fail(status, ctx.subject);
  return kExitOk;
}

}  // namespace
}  // namespace snapconf::cli

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const int code = snapconf::cli::Main(args);
  std::fflush(stdout);
  return code;
}
