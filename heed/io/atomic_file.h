// Files that are replaced atomically (readers see the old content or the new, never a torn
// file, even if the writer is killed) and a reader with checked positional reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

namespace heed::io {

// Where write_file_atomically's callback writes: a temporary file beside the target.
// write() either writes every byte or throws heed::Error naming the path and the OS error.
class FileSink {
 public:
  FileSink(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void write(const void* data, size_t size);
  void write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }
  void write(const std::string& text) { write(text.data(), text.size()); }

  uint64_t bytes_written() const { return bytes_written_; }
  const std::filesystem::path& temp_path() const { return path_; }

 private:
  int fd_;
  std::filesystem::path path_;
  uint64_t bytes_written_ = 0;
};

// Replaces `path` with what `write` produces: writes `<path>.tmp.<pid>` in the same
// directory, fsyncs it, renames it over `path` and fsyncs the directory. If the callback
// throws or any step fails, the temporary file is removed, `path` keeps its old content,
// and heed::Error is thrown naming the path (and strerror for OS failures). An existing
// target's permission bits are kept. Concurrent writes of one path from one process are
// not supported (they share the temporary name).
void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(FileSink&)>& write);

// The temporary name write_file_atomically uses for `path` in this process.
std::filesystem::path atomic_temp_path(const std::filesystem::path& path);

// A file opened for reading; read_at() reads exactly the bytes asked for or throws
// heed::Error naming the path, the range and the file size.
class FileReader {
 public:
  explicit FileReader(const std::filesystem::path& path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }
  void read_at(uint64_t offset, void* dst, size_t size) const;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::filesystem::path path_;
};

}  // namespace heed::io
