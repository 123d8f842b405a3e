// The `tide` command line as a CLI11 app, apart from main(): main() makes it
// and parses argv, which runs the chosen command; the command-line fuzzer
// (fuzz/fuzz_cli.cpp) makes the same app with the commands' work switched
// off and parses arbitrary argument lists.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace tide::cli {

// The whole command line: the global flags (--threads), the five subcommands
// (whose callbacks do the work when parse() runs) and the one-line failure
// message. Held by pointer because the failure message refers to the app.
std::unique_ptr<CLI::App> make_app();

// The first word of args (argv without argv[0]) that is not a flag must name
// a command; otherwise CLI11 would report "a subcommand is required". Throws
// CLI::ExtrasError naming the unknown word.
void check_command_word(const CLI::App& app, const std::vector<std::string>& args);

// Joins a message that may span lines (a list of problems, or a model printed
// as a tree) into the one line the command prints.
std::string one_line(const std::string& message);

// "tide sample" for the subcommand that was given, else "tide".
std::string command_name(const CLI::App& app);

}  // namespace tide::cli
