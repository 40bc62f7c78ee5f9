// client/cli/args.cc
#include "client/cli/args.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace snapconf::cli {

std::optional<std::string> ParsedArgs::Get(const std::string& name) const {
  auto it = flags.find(name);
  if (it == flags.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs) {
  auto find = [&](std::string_view name) -> const FlagSpec* {
    for (const FlagSpec& s : specs) {
      if (s.name == name || (!s.short_name.empty() && s.short_name == name)) return &s;
    }
    return nullptr;
  };
  ParsedArgs out;
  bool flags_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      out.positionals.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (const std::size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const FlagSpec* spec = find(name);
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag ", name));
    if (!spec->takes_value) {
      if (inline_value) {
        return absl::InvalidArgumentError(absl::StrCat(spec->name, " takes no value"));
      }
      out.flags[spec->name] = "";
      continue;
    }
    if (inline_value) {
      out.flags[spec->name] = *inline_value;
    } else if (i + 1 < args.size()) {
      out.flags[spec->name] = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(spec->name, " needs a value"));
    }
  }
  return out;
}

absl::StatusOr<std::int64_t> ParseInt64Flag(std::string_view flag, std::string_view text) {
  std::int64_t v = 0;
  if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(absl::string_view(flag.data(), flag.size()), ": want a number, got \"",
                     absl::string_view(text.data(), text.size()), "\""));
  }
  return v;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(std::string_view flag, std::string_view text) {
  absl::Duration d;
  const absl::string_view t(text.data(), text.size());
  if (!absl::ParseDuration(t, &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(absl::string_view(flag.data(), flag.size()),
                                                   ": want a positive duration such as 5s or "
                                                   "500ms, got \"",
                                                   t, "\""));
  }
  return d;
}

}  // namespace snapconf::cli
