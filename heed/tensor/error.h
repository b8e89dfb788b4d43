// heed::Error, the one exception type for everything a user can cause, and the
// checks that raise it. Messages name the operation, the value and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace heed {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Throws heed::Error with the streamed arguments as its message.
template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace heed

// HEED_CHECK(cond, "op: ", value, " expected ...") throws heed::Error when cond is false.
#define HEED_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::heed::fail(__VA_ARGS__);   \
  } while (0)

// Debug-only internal invariant for hot loops; compiled out in release builds.
#ifdef NDEBUG
#define HEED_DCHECK(cond) ((void)0)
#else
#include <cassert>
#define HEED_DCHECK(cond) assert(cond)
#endif
