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
// for malformed command lines. The command line itself is built in
// tools/app.cpp.
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "tools/app.h"
#include "tools/common.h"

int main(int argc, char** argv) {
  const std::unique_ptr<CLI::App> owned = tide::cli::make_app();
  CLI::App& app = *owned;
  using tide::cli::command_name;
  using tide::cli::one_line;

  try {
    tide::cli::check_command_word(app, std::vector<std::string>(argv + 1, argv + argc));
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
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
