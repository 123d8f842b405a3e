#include "nn/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>

#include "backends/types.h"

namespace tide::io {

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

// The directory a path lives in ("." for a bare file name).
std::filesystem::path directory_of(const std::filesystem::path& path) {
  std::filesystem::path dir = path.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

// ".name.tmp-<pid>-<counter>-<random>": hidden, unique per process and call,
// and in the same directory as the target so rename() never crosses devices.
std::filesystem::path temp_name_for(const std::filesystem::path& target) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string name = fmt::format(".{}.tmp-{}-{}-{:016x}", target.filename().string(),
                                 static_cast<long>(::getpid()), counter++, rng());
  return directory_of(target) / name;
}

// fsync a directory so that a rename inside it is durable.
int fsync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  if (::fsync(fd) != 0) err = errno;
  ::close(fd);
  // Some file systems cannot fsync directories; that is not a write failure.
  if (err == EINVAL || err == EROFS) err = 0;
  return err;
}

}  // namespace

// ---------------------------------------------------------------------------
// AtomicFileWriter
// ---------------------------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(std::filesystem::path target, std::string op)
    : target_(std::move(target)), op_(std::move(op)) {
  TIDE_CHECK(!target_.empty(), "{}: empty file path", op_);
  TIDE_CHECK(!target_.filename().empty(), "{}: '{}' names a directory, not a file", op_,
             target_.string());
  // O_EXCL makes a name collision an error instead of a shared file; retry
  // with a fresh name in that (very unlikely) case.
  for (int attempt = 0; attempt < 16; ++attempt) {
    temp_ = temp_name_for(target_);
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (errno != EEXIST) break;
  }
  int err = errno;
  temp_.clear();
  fail("{}: cannot write '{}': creating a temporary file in '{}' failed: {}", op_, target_.string(),
       directory_of(target_).string(), errno_text(err));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_.empty()) {
    ::unlink(temp_.c_str());
    temp_.clear();
  }
}

void AtomicFileWriter::fail_errno(const std::string& what, int err) {
  std::string temp = temp_.string();
  discard();
  fail("{}: cannot write '{}': {} failed: {} (temporary file '{}' removed)", op_, target_.string(),
       what, errno_text(err), temp);
}

void AtomicFileWriter::write(const void* data, size_t nbytes) {
  TIDE_CHECK(fd_ >= 0, "{}: cannot write '{}': the writer is already committed or failed", op_,
             target_.string());
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(fmt::format("writing {} bytes at offset {}", nbytes, written_), errno);
    }
    p += n;
    nbytes -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFileWriter::commit() {
  TIDE_CHECK(fd_ >= 0, "{}: cannot write '{}': the writer is already committed or failed", op_,
             target_.string());
  // 1. The data must be on disk before the rename makes it visible, or a
  //    crash could leave a complete-looking but empty file.
  if (::fsync(fd_) != 0) fail_errno("fsync", errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_errno("close", errno);
  // 2. The atomic step: readers see the old file or the new one, never a mix.
  if (::rename(temp_.c_str(), target_.c_str()) != 0) fail_errno("rename", errno);
  temp_.clear();
  committed_ = true;
  // 3. Make the rename itself durable.
  int err = fsync_directory(directory_of(target_));
  TIDE_CHECK(err == 0, "{}: wrote '{}' but fsync of its directory failed: {}", op_,
             target_.string(), errno_text(err));
}

void write_file_atomically(const std::filesystem::path& target, const std::string& op,
                           const std::function<void(AtomicFileWriter&)>& fill) {
  AtomicFileWriter writer(target, op);
  fill(writer);  // if this throws, ~AtomicFileWriter removes the temporary file
  writer.commit();
}

size_t remove_stale_temp_files(const std::filesystem::path& target) {
  const std::string prefix = "." + target.filename().string() + ".tmp-";
  std::error_code ec;
  std::filesystem::directory_iterator it(directory_of(target), ec);
  if (ec) return 0;  // no directory yet: nothing to clean
  size_t removed = 0;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    // The writer's pid follows the prefix (see temp_name_for).
    long pid = 0;
    size_t i = prefix.size();
    for (; i < name.size() && i < prefix.size() + 9 && name[i] >= '0' && name[i] <= '9'; ++i)
      pid = pid * 10 + (name[i] - '0');
    if (i == prefix.size() || i == name.size() || name[i] != '-' || pid <= 0) continue;
    if (pid == static_cast<long>(::getpid())) continue;
    // kill(pid, 0) sends nothing; ESRCH means no such process.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    if (std::filesystem::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

// ---------------------------------------------------------------------------
// InputFile
// ---------------------------------------------------------------------------

void ByteSource::read_at(uint64_t offset, void* dst, size_t nbytes, std::string_view what) const {
  // Written so that offset + nbytes cannot overflow.
  TIDE_CHECK(offset <= size() && nbytes <= size() - offset,
             "{}: '{}': {} needs {} bytes from byte {} but the file has only {} bytes", op_, name_,
             what, nbytes, offset, size());
  if (nbytes > 0) read_raw(offset, dst, nbytes);
}

std::string ByteSource::read_string(uint64_t offset, uint64_t nbytes, std::string_view what) const {
  TIDE_CHECK(offset <= size() && nbytes <= size() - offset,
             "{}: '{}': {} needs {} bytes from byte {} but the file has only {} bytes", op_, name_,
             what, nbytes, offset, size());
  std::string out(static_cast<size_t>(nbytes), '\0');
  read_at(offset, out.data(), out.size(), what);
  return out;
}

InputFile::InputFile(const std::filesystem::path& path, std::string op)
    : ByteSource(path.string(), std::move(op)) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("{}: cannot open '{}': {}", this->op(), name(), errno_text(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    int err = errno;
    ::close(fd_);
    fail("{}: cannot stat '{}': {}", this->op(), name(), errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail("{}: '{}' is not a regular file", this->op(), name());
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_raw(uint64_t offset, void* dst, size_t nbytes) const {
  char* p = static_cast<char*>(dst);
  uint64_t pos = offset;
  while (nbytes > 0) {
    ssize_t n = ::pread(fd_, p, nbytes, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: '{}': reading at byte {} failed: {}", op(), name(), pos, errno_text(errno));
    }
    // The file shrank since we measured it (another process truncated it).
    TIDE_CHECK(n > 0,
               "{}: '{}': unexpected end of file at byte {} (the file changed while being "
               "read)",
               op(), name(), pos);
    p += n;
    pos += static_cast<uint64_t>(n);
    nbytes -= static_cast<size_t>(n);
  }
}

void MemorySource::read_raw(uint64_t offset, void* dst, size_t nbytes) const {
  std::memcpy(dst, bytes_.data() + offset, nbytes);
}

}  // namespace tide::io
