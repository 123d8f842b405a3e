// Helpers shared by the tests/test_io_*.cpp files.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backends/types.h"  // tide::Error

namespace tide::test {

// A fresh directory under the system temp dir, removed with its contents on
// scope exit. Unique per process and call, so parallel ctest runs don't meet.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("tide_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
             std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Names of the entries in the directory (to check no temporary is left).
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      names.push_back(e.path().filename().string());
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The test data directory (tests/data), set by tests/CMakeLists.txt.
inline std::filesystem::path data_dir() {
  return TIDE_TEST_DATA_DIR;
}

// One file of a bad-input corpus (tests/data/corpus/<format>/) and the parts
// its error message must contain.
struct CorpusCase {
  const char* file;                  // the file name without its extension
  std::vector<std::string> message;  // substrings the error must contain
};

// For every case, read(path) must throw tide::Error naming `op`, the file's
// path and each part of the case's message; and every file in the corpus
// folder must have a case, so new files come with their message.
template <typename Read>
void check_bad_corpus(const std::string& format, const std::string& extension,
                      const std::string& op, const std::vector<CorpusCase>& cases, Read read) {
  const std::filesystem::path dir = data_dir() / "corpus" / format;
  for (const CorpusCase& c : cases) {
    const std::filesystem::path path = dir / (std::string(c.file) + extension);
    DYNAMIC_SECTION(c.file) {
      REQUIRE(std::filesystem::exists(path));
      REQUIRE_THROWS_AS(read(path), tide::Error);
      REQUIRE_THROWS_WITH(read(path), Catch::Contains(op) && Catch::Contains(path.string()));
      for (const std::string& part : c.message)
        REQUIRE_THROWS_WITH(read(path), Catch::Contains(part));
    }
  }
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    const std::string stem = entry.path().stem().string();
    INFO(stem);
    REQUIRE(std::any_of(cases.begin(), cases.end(),
                        [&](const CorpusCase& c) { return stem == c.file; }));
  }
  REQUIRE(files == cases.size());
}

}  // namespace tide::test
