// libFuzzer target: the `tide` command line (tools/app.h), parsed from
// arbitrary argument lists without running any command.
//
// The input is the argument list, one argument per line ("sample\n--n\n10").
// It goes through exactly what main() does before a command runs: the
// unknown-command check, CLI11's parse with every flag's validator, and for a
// rejected command line (or --help) the message main() would print, into a
// discarded stream. Parsing stops right before the chosen command would run. A bad command line
// must give CLI11's ParseError (or a tide::Error from a flag check) and nothing else.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "backends/types.h"
#include "tools/app.h"

namespace {

// Thrown where the chosen command would start running.
struct ParsedOnly {};

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> args;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    args.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> args =
      split_lines(std::string_view(reinterpret_cast<const char*>(data), size));

  const std::unique_ptr<CLI::App> app = tide::cli::make_app();
  // Parse only: never train, sample, read or write files. The main app's
  // parse-complete callback runs after every flag has been parsed and checked,
  // just before the chosen subcommand's callback would do the work. (Replacing
  // the subcommands' callbacks instead would free the flag structs they own.)
  app->parse_complete_callback([] { throw ParsedOnly{}; });

  std::ostringstream discard;
  try {
    tide::cli::check_command_word(*app, args);
    // CLI11 takes the arguments in reverse order (argv[argc - 1] first).
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app->parse(reversed);
  } catch (const CLI::ParseError& e) {
    app->exit(e, discard, discard);  // the usage/help text main() would print
    (void)tide::cli::one_line(e.what());
  } catch (const ParsedOnly&) {
    // A valid command line.
  } catch (const tide::Error&) {
    // Expected for bad input.
  }
  return 0;
}
