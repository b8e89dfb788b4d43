// Atomic file replacement (temp file + fsync + rename + directory fsync) and checked reads.
#include "heed/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "heed/tensor/error.h"

namespace heed::io {
namespace {

std::string os_error(int err) { return std::strerror(err); }

std::string quoted(const std::filesystem::path& p) {
  std::string out = p.string();
  out.insert(out.begin(), '\'');
  out.push_back('\'');
  return out;
}

void fsync_directory(const std::filesystem::path& path, const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fail("write_file_atomically: ", quoted(path), " was replaced but its directory ", quoted(dir),
         " could not be opened to sync it: ", os_error(errno));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a directory; that is not a failure of this write.
  if (rc != 0 && err != EINVAL && err != ENOTSUP) {
    fail("write_file_atomically: ", quoted(path), " was replaced but syncing its directory ",
         quoted(dir), " failed: ", os_error(err));
  }
}

}  // namespace

void FileSink::write(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write to ", quoted(path_), " failed after ", bytes_written_, " bytes: ", os_error(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
    bytes_written_ += static_cast<uint64_t>(n);
  }
}

std::filesystem::path atomic_temp_path(const std::filesystem::path& path) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  return tmp;
}

void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(FileSink&)>& write) {
  HEED_CHECK(!path.empty(), "write_file_atomically: empty path");
  HEED_CHECK(path.has_filename(), "write_file_atomically: ", quoted(path), " names no file");
  const std::filesystem::path tmp = atomic_temp_path(path);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";

  struct stat old_stat {};
  const bool keep_mode = ::stat(path.c_str(), &old_stat) == 0 && S_ISREG(old_stat.st_mode);

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    fail("write_file_atomically: cannot create ", quoted(tmp), " to write ", quoted(path), ": ",
         os_error(errno));
  }
  auto abandon = [&] {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(tmp.c_str());
  };
  auto step_failed = [&](const char* step) {
    const int err = errno;
    abandon();
    fail("write_file_atomically: ", step, " ", quoted(tmp), " for ", quoted(path),
         " failed (target left unchanged): ", os_error(err));
  };

  try {
    FileSink sink(fd, tmp);
    write(sink);
  } catch (const std::exception& e) {
    abandon();
    fail("write_file_atomically: writing ", quoted(path), " failed (target left unchanged): ",
         e.what());
  } catch (...) {
    abandon();
    throw;
  }
  if (keep_mode && ::fchmod(fd, old_stat.st_mode & 07777) != 0) step_failed("chmod of");
  if (::fsync(fd) != 0) step_failed("fsync of");
  const int rc = ::close(fd);
  fd = -1;
  if (rc != 0) step_failed("close of");
  if (::rename(tmp.c_str(), path.c_str()) != 0) step_failed("rename of");
  fsync_directory(path, dir);
}

FileReader::FileReader(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("cannot open ", quoted(path), " for reading: ", os_error(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fail("cannot stat ", quoted(path), ": ", os_error(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail("cannot read ", quoted(path), ": not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

void FileReader::read_at(uint64_t offset, void* dst, size_t size) const {
  if (offset > size_ || size > size_ - offset) {
    fail("read of ", quoted(path_), ": bytes [", offset, ", ", offset + size,
         ") lie beyond the end of the file (", size_, " bytes)");
  }
  auto* p = static_cast<char*>(dst);
  while (size > 0) {
    const ssize_t n = ::pread(fd_, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("read of ", quoted(path_), " at byte ", offset, " failed: ", os_error(errno));
    }
    if (n == 0) fail("read of ", quoted(path_), ": file ended early at byte ", offset);
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

}  // namespace heed::io
