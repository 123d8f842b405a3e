// Atomic file writing and bounded reading (nn/atomic_file.h), and the whole
// bad-file corpus through both the file and the in-memory readers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/atomic_file.h"
#include "nn/csv.h"
#include "nn/npy.h"
#include "nn/safetensors.h"
#include "test_io_util.h"
#include "tide.h"

using tide::io::AtomicFileWriter;
using tide::io::write_file_atomically;
using tide::test::TempDir;

TEST_CASE("atomic file: the target appears only on commit", "[io][atomic]") {
  TempDir dir;
  auto target = dir / "out.bin";
  {
    AtomicFileWriter writer(target, "test");
    writer.write("hello ");
    writer.write(std::string("world"));
    REQUIRE(writer.size() == 11);
    // Before commit only the temporary exists, hidden, in the same directory.
    REQUIRE_FALSE(std::filesystem::exists(target));
    REQUIRE(std::filesystem::exists(writer.temp_path()));
    REQUIRE(writer.temp_path().parent_path() == dir.path());
    REQUIRE(writer.temp_path().filename().string().rfind(".out.bin.tmp-", 0) == 0);
    writer.commit();
    REQUIRE_THROWS_WITH(writer.write("x"), Catch::Contains("already committed"));
  }
  REQUIRE(tide::test::read_bytes(target) == "hello world");
  REQUIRE(dir.entries() == std::vector<std::string>{"out.bin"});
}

TEST_CASE("atomic file: a failed write keeps the old file and removes the temporary",
          "[io][atomic]") {
  TempDir dir;
  auto target = dir / "model.bin";
  tide::test::write_bytes(target, "old content");

  SECTION("the writer is destroyed without commit") {
    {
      AtomicFileWriter writer(target, "test");
      writer.write("partial new cont");
    }
    REQUIRE(tide::test::read_bytes(target) == "old content");
    REQUIRE(dir.entries() == std::vector<std::string>{"model.bin"});
  }
  SECTION("the fill function throws") {
    REQUIRE_THROWS_WITH(write_file_atomically(target, "test",
                                              [](AtomicFileWriter& w) {
                                                w.write("partial");
                                                throw std::runtime_error("disk on fire");
                                              }),
                        "disk on fire");
    REQUIRE(tide::test::read_bytes(target) == "old content");
    REQUIRE(dir.entries() == std::vector<std::string>{"model.bin"});
  }
  SECTION("a successful write replaces the file") {
    write_file_atomically(target, "test", [](AtomicFileWriter& w) { w.write("new"); });
    REQUIRE(tide::test::read_bytes(target) == "new");
    REQUIRE(dir.entries() == std::vector<std::string>{"model.bin"});
  }
  SECTION("rename onto a directory fails and cleans up") {
    std::filesystem::create_directory(dir / "sub");
    tide::test::write_bytes(dir / "sub" / "keep", "x");  // a non-empty dir cannot be replaced
    REQUIRE_THROWS_WITH(
        write_file_atomically(dir / "sub", "save_test", [](AtomicFileWriter& w) { w.write("a"); }),
        Catch::Contains("save_test: cannot write") && Catch::Contains("rename failed") &&
            Catch::Contains("removed"));
    std::vector<std::string> entries = dir.entries();
    std::sort(entries.begin(), entries.end());
    REQUIRE(entries == std::vector<std::string>{"model.bin", "sub"});
  }
}

TEST_CASE("atomic file: unwritable targets throw tide::Error", "[io][atomic]") {
  TempDir dir;
  REQUIRE_THROWS_AS(AtomicFileWriter(dir / "missing_dir" / "f", "test"), tide::Error);
  REQUIRE_THROWS_WITH(AtomicFileWriter(dir / "missing_dir" / "f", "test"),
                      Catch::Contains("test: cannot write") && Catch::Contains("missing_dir") &&
                          Catch::Contains("No such file or directory"));
  REQUIRE_THROWS_WITH(AtomicFileWriter("", "test"), Catch::Contains("empty file path"));
  // Relative paths without a directory write into the current directory.
  struct RestoreCwd {
    std::filesystem::path saved = std::filesystem::current_path();
    ~RestoreCwd() { std::filesystem::current_path(saved); }
  } restore;
  std::filesystem::current_path(dir.path());
  write_file_atomically("plain.txt", "test", [](AtomicFileWriter& w) { w.write("ok"); });
  REQUIRE(tide::test::read_bytes(dir / "plain.txt") == "ok");
}

TEST_CASE("input file: reads are bounded by the file size", "[io][atomic]") {
  TempDir dir;
  tide::test::write_bytes(dir / "f", "0123456789");
  tide::io::InputFile file(dir / "f", "reader");
  REQUIRE(file.size() == 10);
  REQUIRE(file.read_string(2, 3, "part") == "234");
  REQUIRE(file.read_string(10, 0, "nothing").empty());
  char buffer[4];
  REQUIRE_THROWS_WITH(file.read_at(8, buffer, 4, "the tail"),
                      Catch::Contains("reader") && Catch::Contains("the tail needs 4 bytes from "
                                                                   "byte 8 but the file has only "
                                                                   "10 bytes"));
  // A huge request is refused before any allocation is attempted.
  REQUIRE_THROWS_WITH(file.read_string(0, uint64_t{1} << 62, "everything"),
                      Catch::Contains("needs 4611686018427387904 bytes"));
  REQUIRE_THROWS_WITH(file.read_string(UINT64_MAX, 2, "wrapped"),
                      Catch::Contains("needs 2 bytes from byte 18446744073709551615"));
}

TEST_CASE("corpus: every bad file gives tide::Error from the file and memory readers",
          "[io][corpus]") {
  // The fuzzing seed corpus: whatever is in these folders must be refused
  // cleanly, both from disk and from memory.
  auto root = tide::test::data_dir() / "corpus";
  int count = 0;
  for (const char* format : {"safetensors", "npy", "csv"}) {
    for (const auto& entry : std::filesystem::directory_iterator(root / format)) {
      const auto path = entry.path();
      INFO(path.string());
      std::string bytes = tide::test::read_bytes(path);
      if (std::string(format) == "safetensors") {
        REQUIRE_THROWS_AS(tide::io::read_safetensors(path), tide::Error);
        REQUIRE_THROWS_AS(tide::io::parse_safetensors(bytes), tide::Error);
      } else if (std::string(format) == "npy") {
        REQUIRE_THROWS_AS(tide::io::read_npy(path), tide::Error);
        REQUIRE_THROWS_AS(tide::io::parse_npy(bytes), tide::Error);
      } else {
        REQUIRE_THROWS_AS(tide::io::read_csv(path), tide::Error);
        REQUIRE_THROWS_AS(tide::io::parse_csv(bytes), tide::Error);
      }
      ++count;
    }
  }
  REQUIRE(count >= 90);
}

TEST_CASE("corpus: every truncation of a valid file is refused cleanly", "[io][corpus]") {
  // Each prefix of a good file is a truncated file: none may crash or load.
  tide::test::TempDir dir;
  tide::io::write_safetensors(
      dir / "a.safetensors",
      {{"w", tide::ones({2, 3})}, {"b", tide::from_vector(std::vector<bool>{true, false})}},
      {{"k", "v"}});
  tide::io::write_npy(dir / "a.npy", tide::ones({2, 3}));
  std::string st = tide::test::read_bytes(dir / "a.safetensors");
  std::string npy = tide::test::read_bytes(dir / "a.npy");
  for (size_t n = 0; n < st.size(); ++n) {
    INFO("safetensors prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(tide::io::parse_safetensors(st.substr(0, n)), tide::Error);
  }
  for (size_t n = 0; n < npy.size(); ++n) {
    INFO("npy prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(tide::io::parse_npy(npy.substr(0, n)), tide::Error);
  }
  REQUIRE(tide::io::parse_safetensors(st).tensors.size() == 2);
  REQUIRE(tide::io::parse_npy(npy).numel() == 6);
}

TEST_CASE("corpus: random byte changes never crash the readers", "[io][corpus]") {
  // A miniature fuzzer: corrupt a valid file in random places; every result
  // must either load or throw tide::Error (any other exception, or a crash,
  // fails). Fixed seed, so a failure reproduces.
  tide::test::TempDir dir;
  tide::io::write_safetensors(dir / "a.safetensors",
                              {{"w", tide::ones({2, 3})},
                               {"i", tide::from_vector(std::vector<int64_t>{1, 2})},
                               {"b", tide::from_vector(std::vector<bool>{true, false})}},
                              {{"k", "v"}});
  tide::io::write_npy(dir / "a.npy", tide::ones({2, 3}));
  const std::string files[] = {tide::test::read_bytes(dir / "a.safetensors"),
                               tide::test::read_bytes(dir / "a.npy"), "x,y\n1,2\n3.5,-4e2\n"};
  std::mt19937 rng(2024);
  int loaded = 0, refused = 0;
  for (int format = 0; format < 3; ++format) {
    for (int trial = 0; trial < 1500; ++trial) {
      std::string bytes = files[format];
      int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        size_t pos = rng() % bytes.size();
        // Mostly small, structure-relevant bytes: digits, quotes, brackets.
        const char interesting[] = "0123456789\"{}[],:-.e \xff\x00\x7f";
        bytes[pos] = rng() % 2 ? interesting[rng() % (sizeof(interesting) - 1)]
                               : static_cast<char>(rng() % 256);
      }
      INFO("format " << format << ", trial " << trial);
      try {
        if (format == 0) tide::io::parse_safetensors(bytes);
        if (format == 1) tide::io::parse_npy(bytes);
        if (format == 2) tide::io::parse_csv(bytes);
        ++loaded;
      } catch (const tide::Error&) {
        ++refused;
      }
    }
  }
  // Both outcomes happen: the corruptions are neither all fatal nor all harmless.
  REQUIRE(loaded > 0);
  REQUIRE(refused > 0);
}
