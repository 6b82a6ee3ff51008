// Names the calling thread, so `top -H`, `perf report --sort comm` and debuggers show which
// pool a thread belongs to (e.g. "db-w:payments", "http-io"). Linux keeps 15 characters; longer
// names are cut, never rejected. Best effort: a failure changes nothing but the name.
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace emporium {

inline void SetCurrentThreadName(std::string_view name) {
  constexpr size_t kLinuxThreadNameMax = 15;  // 16 bytes with the terminating NUL
  std::string cut(name.substr(0, kLinuxThreadNameMax));
  (void)pthread_setname_np(pthread_self(), cut.c_str());
}

}  // namespace emporium
