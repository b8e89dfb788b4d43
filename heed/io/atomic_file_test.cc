// Tests for atomic file replacement: success, every failure path leaves the old file
// intact and no temporary behind, and a writer killed mid-write never tears the target.
#include "heed/io/atomic_file.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "heed/tensor/error.h"
#include "tests/io/io_test_support.h"

namespace heed::io {
namespace {

namespace fs = std::filesystem;
using test_support::read_bytes;
using test_support::TempDir;

void write_text(const fs::path& p, const std::string& text) {
  write_file_atomically(p, [&](FileSink& sink) { sink.write(text); });
}

// Only the target itself remains in the directory: no temporary files.
size_t entries_in(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(AtomicFile, WritesAndReplacesKeepingPermissions) {
  TempDir dir;
  const fs::path p = dir / "f.txt";
  write_text(p, "old content");
  EXPECT_EQ(read_bytes(p), "old content");
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  write_file_atomically(p, [](FileSink& sink) {
    sink.write("new ", 4);
    sink.write(std::string("content"));
    EXPECT_EQ(sink.bytes_written(), 11u);
    EXPECT_EQ(sink.temp_path().filename().string(), "f.txt.tmp." + std::to_string(::getpid()));
  });
  EXPECT_EQ(read_bytes(p), "new content");
  EXPECT_EQ(fs::status(p).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(entries_in(dir.path()), 1u);
}

TEST(AtomicFile, FailingWriterLeavesOldFileAndNoTemporary) {
  TempDir dir;
  const fs::path p = dir / "f.txt";
  write_text(p, "old content");
  const std::string m = error_of([&] {
    write_file_atomically(p, [](FileSink& sink) {
      sink.write(std::string("half of the new"));
      throw std::runtime_error("serialiser exploded");
    });
  });
  EXPECT_NE(m.find(p.string()), std::string::npos) << m;
  EXPECT_NE(m.find("serialiser exploded"), std::string::npos) << m;
  EXPECT_NE(m.find("target left unchanged"), std::string::npos) << m;
  EXPECT_EQ(read_bytes(p), "old content");
  EXPECT_FALSE(fs::exists(atomic_temp_path(p)));
  EXPECT_EQ(entries_in(dir.path()), 1u);
}

TEST(AtomicFile, MissingDirectoryNamesPathAndOsError) {
  TempDir dir;
  const fs::path p = dir / "no_such_dir" / "f.txt";
  const std::string m = error_of([&] { write_text(p, "x"); });
  EXPECT_NE(m.find(p.string()), std::string::npos) << m;
  EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
}

TEST(AtomicFile, RenameFailureRemovesTemporary) {
  TempDir dir;
  const fs::path p = dir / "target_is_a_dir";
  fs::create_directory(p);
  write_text(p / "inside", "kept");
  const std::string m = error_of([&] { write_text(p, "x"); });
  EXPECT_NE(m.find("rename"), std::string::npos) << m;
  EXPECT_NE(m.find(p.string()), std::string::npos) << m;
  EXPECT_TRUE(fs::is_directory(p));
  EXPECT_EQ(read_bytes(p / "inside"), "kept");
  EXPECT_FALSE(fs::exists(atomic_temp_path(p)));
}

// As root, directory permissions do not apply: the check runs in a child process that
// has dropped to user "nobody" (uid 65534) and writes into a directory it does not own.
TEST(AtomicFile, UnwritableDirectory) {
  TempDir dir;
  const fs::path sub = dir / "ro";
  fs::create_directory(sub);
  write_text(sub / "f.txt", "old");
  const bool root = ::geteuid() == 0;
  if (!root) fs::permissions(sub, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
  fs::permissions(sub, fs::perms::group_write | fs::perms::others_write, fs::perm_options::remove);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (root && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(4);
    const std::string m = error_of([&] { write_text(sub / "f.txt", "new"); });
    const bool ok = m.find("Permission denied") != std::string::npos &&
                    m.find((sub / "f.txt").string()) != std::string::npos;
    ::_exit(ok ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  fs::permissions(sub, fs::perms::owner_all, fs::perm_options::add);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: message lacks 'Permission denied' or the path, 4: setuid failed";
  EXPECT_EQ(read_bytes(sub / "f.txt"), "old");
  EXPECT_EQ(entries_in(sub), 1u);
}

// A real OS write error: a file-size limit makes write(2) fail with EFBIG. Run in a child
// process so the limit and the signal disposition do not leak into other tests.
TEST(AtomicFile, OsWriteErrorLeavesOldFile) {
  TempDir dir;
  const fs::path p = dir / "f.bin";
  write_text(p, "old content");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{};
    ::getrlimit(RLIMIT_FSIZE, &limit);
    limit.rlim_cur = 1000;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    int code = 1;
    try {
      write_file_atomically(p, [](FileSink& sink) {
        const std::string block(4096, 'x');
        sink.write(block);
      });
      code = 2;  // the write should have failed
    } catch (const Error& e) {
      const std::string m = e.what();
      const bool names_error = m.find("File too large") != std::string::npos;
      const bool names_path = m.find(p.string()) != std::string::npos;
      code = names_error && names_path ? 0 : 3;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: no error raised, 3: message lacks path or strerror";
  EXPECT_EQ(read_bytes(p), "old content");
  fs::path tmp = p;
  tmp += ".tmp." + std::to_string(child);
  EXPECT_FALSE(fs::exists(tmp));
}

// A writer killed mid-write leaves its temporary behind but never a torn target.
TEST(AtomicFile, KilledWriterNeverTearsTarget) {
  TempDir dir;
  const fs::path p = dir / "f.bin";
  write_text(p, "old content");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    write_file_atomically(p, [](FileSink& sink) {
      sink.write(std::string(1 << 16, 'n'));
      ::raise(SIGKILL);
    });
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(read_bytes(p), "old content");
  fs::path tmp = p;
  tmp += ".tmp." + std::to_string(child);
  EXPECT_EQ(fs::file_size(tmp), 1u << 16);  // the half-written temporary, not the target
}

TEST(FileReader, ReadsExactRangesAndNamesShortReads) {
  TempDir dir;
  const fs::path p = dir / "r.bin";
  write_text(p, "0123456789");
  FileReader r(p);
  EXPECT_EQ(r.size(), 10u);
  char buf[4] = {};
  r.read_at(3, buf, 4);
  EXPECT_EQ(std::string(buf, 4), "3456");
  const std::string m = error_of([&] { r.read_at(8, buf, 4); });
  EXPECT_NE(m.find("bytes [8, 12) lie beyond the end of the file (10 bytes)"), std::string::npos) << m;
  EXPECT_NE(m.find(p.string()), std::string::npos) << m;
  const std::string d = error_of([&] { FileReader dir_reader(dir.path()); });
  EXPECT_NE(d.find("not a regular file"), std::string::npos) << d;
}

}  // namespace
}  // namespace heed::io
