// client/cli/args.h
//
// A small command-line parser for snapconfctl's "global flags, command,
// command flags and positionals" shape. Flags may appear anywhere after the
// program name, as `--name value`, `--name=value` or `-x value`; `--` ends
// flag parsing (for values that start with '-'); a lone `-` is a positional.
// Pure functions; thread-safe.
//
//   std::vector<FlagSpec> specs = {{"--revision", "", true}, {"--keys-only", "", false}};
//   ASSIGN_OR_RETURN(ParsedArgs args, ParseArgs({"list", "ns", "--keys-only"}, specs));
//   args.positionals   // {"list", "ns"}
//   args.Has("--keys-only")  // true
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace snapconf::cli {

struct FlagSpec {
  std::string name;        // "--revision"
  std::string short_name;  // "-o", or empty
  bool takes_value = false;
};

struct ParsedArgs {
  std::vector<std::string> positionals;
  // Long flag name -> last value given ("" for flags without a value).
  std::map<std::string, std::string> flags;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
};

// INVALID_ARGUMENT for unknown flags and flags missing their value.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);

// "--revision" value as a number; INVALID_ARGUMENT naming the flag otherwise.
absl::StatusOr<std::int64_t> ParseInt64Flag(std::string_view flag, std::string_view text);

// "5s", "250ms", "1m30s"; must be positive.
absl::StatusOr<absl::Duration> ParseDurationFlag(std::string_view flag, std::string_view text);

}  // namespace snapconf::cli
