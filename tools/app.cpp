#include "tools/app.h"

#include "backends/cpu/threads.h"
#include "tools/common.h"

namespace tide::cli {

// "Sequential(\n  (0): ..." -> "Sequential((0): ...": list lines are joined
// with "; ", indented (tree) lines with ", ", and none right after "(" or
// before ")".
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

std::string command_name(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) return "tide " + sub->get_name();
  return "tide";
}

std::unique_ptr<CLI::App> make_app() {
  auto owned = std::make_unique<CLI::App>(
      "tide: continuous normalizing flows trained by conditional flow matching.\n"
      "Train a velocity field on 2-D toy data or your own .npy/.csv table, sample it with an\n"
      "ODE solver, compute exact log-likelihoods, evaluate and plot. t = 0 is the source\n"
      "(Gaussian noise), t = 1 the data. Run 'tide COMMAND --help' for each command's flags.",
      "tide");
  CLI::App& app = *owned;
  app.require_subcommand(1);
  // Global options are accepted after the subcommand too: tide train --threads 1.
  app.fallthrough();
  app.add_option_function<int>(
         "--threads", [](int n) { tide::set_num_threads(n); },
         "CPU threads for the kernels (default: $TIDE_NUM_THREADS, else one per core)")
      ->check(integer_in(1, 4096));
  app.failure_message([&app](const CLI::App*, const CLI::Error& e) {
    const std::string name = command_name(app);
    return fmt::format("{}: error: {} (see '{} --help')\n", name, one_line(e.what()), name);
  });
  add_train_command(app);
  add_sample_command(app);
  add_loglik_command(app);
  add_eval_command(app);
  add_plot_command(app);
  return owned;
}

void check_command_word(const CLI::App& app, const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--threads") {
      ++i;  // skip its value
      continue;
    }
    if (arg.empty() || arg[0] == '-') continue;
    const auto known =
        app.get_subcommands([&arg](const CLI::App* sub) { return sub->check_name(arg); });
    if (known.empty()) {
      throw CLI::ExtrasError(
          fmt::format("unknown command '{}' (expected train, sample, loglik, eval or plot)", arg),
          CLI::ExitCodes::ExtrasError);
    }
    return;
  }
}

}  // namespace tide::cli
