// A child `emporium` process for tests that run the real binary as an operator would: its
// output goes to a log file in a test directory, it writes its port to a port file, and the
// test can signal it, kill it (-9) and wait for it. Header-only; tests only.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace emporium::testing {

inline std::string EmporiumPath() { return BinaryDir() + "/src/app/emporium"; }

class EmporiumProcess {
 public:
  // Runs `emporium <arguments>` with stdout and stderr appended to `dir`/`log_name`. The port
  // file is `dir`/port; pass `--port-file` with port_file() in `arguments` to use it.
  EmporiumProcess(const std::string& dir, std::vector<std::string> arguments,
                  const std::string& log_name = "emporium.log")
      : port_file_(dir + "/port"), log_file_(dir + "/" + log_name) {
    std::remove(port_file_.c_str());  // a restart must not read the previous run's port
    pid_ = fork();
    if (pid_ == 0) {
      FILE* log = std::fopen(log_file_.c_str(), "a");
      dup2(fileno(log), STDOUT_FILENO);
      dup2(fileno(log), STDERR_FILENO);
      std::vector<std::string> all = {EmporiumPath()};
      all.insert(all.end(), arguments.begin(), arguments.end());
      std::vector<char*> argv;
      for (std::string& argument : all) argv.push_back(argument.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~EmporiumProcess() {
    if (pid_ > 0 && !exited_) Kill();
  }
  EmporiumProcess(const EmporiumProcess&) = delete;
  EmporiumProcess& operator=(const EmporiumProcess&) = delete;

  const std::string& port_file() const { return port_file_; }
  uint16_t ReadPort() const {
    std::ifstream file(port_file_);
    int port = 0;
    file >> port;
    return static_cast<uint16_t>(port);
  }
  std::string Log() const {
    std::ifstream file(log_file_);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }
  // Waits (bounded) for the process to exit; returns its exit code, or -1 on timeout.
  int WaitExit(std::chrono::milliseconds timeout) {
    int status = 0;
    bool done = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
    if (!done) return -1;
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void Signal(int signal_number) { kill(pid_, signal_number); }
  // kill -9 and reap.
  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    exited_ = true;
  }

 private:
  std::string port_file_;
  std::string log_file_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

}  // namespace emporium::testing
