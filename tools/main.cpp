// The `tide` command: train a continuous normalizing flow by conditional flow
// matching, sample it, compute exact log-likelihoods, evaluate and plot.
//
//   tide train  --out model.safetensors               (built-in 8gaussians data)
//   tide sample --model model.safetensors --n 2000 --out x1.npy --plot samples.png
//   tide loglik --model model.safetensors --data x.npy --out logp.npy
//   tide eval   --model model.safetensors --data 8gaussians
//   tide plot   --model model.safetensors --density --out density.png
//
// Exit status: 0 on success, 1 for an error in the inputs or while running
// (one line "tide <command>: error: ..." on stderr), and CLI11's codes (>= 100)
// for malformed command lines.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "backends/cpu/threads.h"
#include "tools/common.h"

namespace {

// Messages may span lines: a list of problems, or a model printed as a tree.
// The command prints one line: list lines are joined with "; ", indented
// (tree) lines with ", ", and none right after "(" or before ")".
std::string one_line(const std::string& message) {
  std::string out;
  size_t i = 0;
  while (i < message.size()) {
    if (message[i] != '\n') {
      out += message[i++];
      continue;
    }
    size_t next = i + 1;
    while (next < message.size() && message[next] == ' ') ++next;
    const bool indented = next > i + 1;
    if (next < message.size() && message[next] != '\n' && !out.empty()) {
      if (out.back() == '(' || message[next] == ')') {
        // "Sequential(\n  (0): ..." -> "Sequential((0): ..."
      } else {
        out += indented ? ", " : "; ";
      }
    }
    i = next;
  }
  return out;
}

// The name of the subcommand that was given ("tide sample"), for messages.
std::string command_name(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) return "tide " + sub->get_name();
  return "tide";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tide: continuous normalizing flows trained by conditional flow matching.\n"
      "Train a velocity field on 2-D toy data or your own .npy/.csv table, sample it with an\n"
      "ODE solver, compute exact log-likelihoods, evaluate and plot. t = 0 is the source\n"
      "(Gaussian noise), t = 1 the data. Run 'tide COMMAND --help' for each command's flags.",
      "tide"};
  app.require_subcommand(1);
  // Global options are accepted after the subcommand too: tide train --threads 1.
  app.fallthrough();
  app.add_option_function<int>(
         "--threads", [](int n) { tide::set_num_threads(n); },
         "CPU threads for the kernels (default: $TIDE_NUM_THREADS, else one per core)")
      ->check(tide::cli::integer_in(1, 4096));
  app.failure_message([&app](const CLI::App*, const CLI::Error& e) {
    const std::string name = command_name(app);
    return fmt::format("{}: error: {} (see '{} --help')\n", name, one_line(e.what()), name);
  });
  tide::cli::add_train_command(app);
  tide::cli::add_sample_command(app);
  tide::cli::add_loglik_command(app);
  tide::cli::add_eval_command(app);
  tide::cli::add_plot_command(app);

  // An unknown command word would otherwise be reported as "a subcommand is
  // required"; name it instead.
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads") {
      ++i;  // skip its value
      continue;
    }
    if (arg.empty() || arg[0] == '-') continue;
    const auto known = app.get_subcommands([&arg](CLI::App* sub) { return sub->check_name(arg); });
    if (known.empty()) {
      return app.exit(CLI::ExtrasError(
          fmt::format("unknown command '{}' (expected train, sample, loglik, eval or plot)", arg),
          CLI::ExitCodes::ExtrasError));
    }
    break;
  }

  // The subcommands do their work in callbacks run by parse(), so the
  // catch-all below covers the computations too: no input makes tide crash.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const tide::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "{}: error: {}\n", command_name(app), one_line(e.what()));
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    fmt::print(stderr, "{}: error: out of memory\n", command_name(app));
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "{}: error: {}\n", command_name(app), one_line(e.what()));
    return 1;
  }
  return 0;
}
