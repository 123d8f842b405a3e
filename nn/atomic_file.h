// File helpers shared by Tide's readers and writers (safetensors, .npy, CSV,
// checkpoints).
//
// Writing: AtomicFileWriter never leaves a half-written file behind. It writes
// to a uniquely named temporary file in the target's directory, flushes it to
// disk (fsync), renames it over the target (rename is atomic on POSIX file
// systems) and fsyncs the directory so the rename itself survives a crash.
// Readers therefore see either the old file or the complete new one. If
// anything fails, or the writer is destroyed without commit(), the temporary
// file is removed and the target is untouched.
//
// Reading: InputFile is a bounded reader. Every read is checked against the
// file's size before any memory is allocated, so a hostile header that claims
// a terabyte of data cannot make a reader allocate or read past the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace tide::io {

class AtomicFileWriter {
 public:
  // Creates the temporary file next to `target`. `op` names the caller in
  // error messages ("save_npy").
  AtomicFileWriter(std::filesystem::path target, std::string op);
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends bytes to the temporary file.
  void write(const void* data, size_t nbytes);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // Bytes written so far.
  uint64_t size() const { return written_; }

  // fsync, close, rename over the target, fsync the directory. After a
  // successful commit the writer is finished; further writes throw.
  void commit();

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail_errno(const std::string& what, int err);
  void discard() noexcept;

  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::string op_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Writes a file atomically: `fill` writes the content through the writer, then
// the file is committed. If `fill` throws, the temporary file is removed and
// the exception propagates; the target keeps its old content.
void write_file_atomically(const std::filesystem::path& target, const std::string& op,
                           const std::function<void(AtomicFileWriter&)>& fill);

// Removes the temporary files an AtomicFileWriter for `target` left behind
// when its process died before committing (SIGKILL, a crash, power loss):
// ".<name>.tmp-<pid>-..." next to the target whose process no longer runs.
// Files of running processes (and of this one) are kept. Returns how many
// were removed. Long jobs that are killed and resumed call it at start-up
// (the trainer does, for its checkpoint), so killed checkpoint writes do not
// pile up on disk.
size_t remove_stale_temp_files(const std::filesystem::path& target);

// Bytes to parse, with a known size: a file (InputFile) or a buffer in memory
// (MemorySource, for tests and fuzzers). Parsers read through read_at, which
// checks every range against size() first.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // The file path (or a label for memory), for error messages.
  const std::string& name() const { return name_; }
  // The reading operation ("read_safetensors"), for error messages.
  const std::string& op() const { return op_; }

  // Reads exactly `nbytes` starting at byte `offset`. Throws tide::Error naming
  // the op, the source and the byte range if the range is not inside the
  // source; `what` says what was being read ("header", "tensor 'w'").
  void read_at(uint64_t offset, void* dst, size_t nbytes, std::string_view what) const;
  // The same, into a new string; the bound is checked before allocating.
  std::string read_string(uint64_t offset, uint64_t nbytes, std::string_view what) const;

 protected:
  ByteSource(std::string name, std::string op) : name_(std::move(name)), op_(std::move(op)) {}
  // Reads a range already known to be in bounds.
  virtual void read_raw(uint64_t offset, void* dst, size_t nbytes) const = 0;

 private:
  std::string name_;
  std::string op_;
};

// A regular file opened for reading, with its size measured up front.
class InputFile : public ByteSource {
 public:
  // Throws tide::Error naming `op` and the path if the file cannot be opened
  // or is not a regular file (a FIFO or /dev/zero has no trustworthy size).
  InputFile(const std::filesystem::path& path, std::string op);
  ~InputFile() override;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const override { return size_; }

 protected:
  void read_raw(uint64_t offset, void* dst, size_t nbytes) const override;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Bytes already in memory (not copied: `bytes` must outlive the source).
class MemorySource : public ByteSource {
 public:
  MemorySource(std::string_view bytes, std::string name, std::string op)
      : ByteSource(std::move(name), std::move(op)), bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }

 protected:
  void read_raw(uint64_t offset, void* dst, size_t nbytes) const override;

 private:
  std::string_view bytes_;
};

}  // namespace tide::io
