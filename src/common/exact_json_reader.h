// Scanning primitives for readers of JSON text that this program wrote itself, in a known
// layout (members in a fixed order, no whitespace): each step either matches the exact bytes
// expected and moves on, or answers false and leaves the input to a general JSON (DOM) reader.
// A caller builds its fast path from them and falls back on the first false; they never accept
// text the DOM reader would read differently, so the fallback decides every unusual input.
//
// Thread-safety: an ExactJsonReader is used by one thread; it only reads the text it views
// (which must outlive it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace emporium {

class ExactJsonReader {
 public:
  explicit ExactJsonReader(std::string_view text) : in_(text) {}

  // These exact bytes next.
  bool Literal(std::string_view text) {
    if (in_.substr(at_, text.size()) != text) return false;
    at_ += text.size();
    return true;
  }

  bool Bool(bool& out) {
    if (Literal("true")) {
      out = true;
      return true;
    }
    if (Literal("false")) {
      out = false;
      return true;
    }
    return false;
  }

  // 0 or [1-9][0-9]{0,digits_max-1}, so with digits_max <= 18 always within int64_t; a sign,
  // a fraction, an exponent or more digits: false.
  bool Integer(int64_t& out, size_t digits_max) {
    size_t digits = 0;
    int64_t value = 0;
    while (at_ + digits < in_.size() && in_[at_ + digits] >= '0' && in_[at_ + digits] <= '9') {
      if (digits == digits_max) return false;
      value = value * 10 + (in_[at_ + digits] - '0');
      ++digits;
    }
    if (digits == 0 || (digits > 1 && in_[at_] == '0')) return false;
    at_ += digits;
    out = value;
    return true;
  }

  // A string of printable ASCII without escapes, viewed in place.
  bool PlainString(std::string_view& out) {
    if (at_ >= in_.size() || in_[at_] != '"') return false;
    const size_t start = at_ + 1;
    for (size_t i = start; i < in_.size(); ++i) {
      const auto c = static_cast<unsigned char>(in_[i]);
      if (c == '"') {
        out = in_.substr(start, i - start);
        at_ = i + 1;
        return true;
      }
      if (c < 0x20 || c >= 0x80 || c == '\\') return false;
    }
    return false;
  }

  // A string of ASCII whose only escapes are the two-character ones (\" \\ \/ \b \f \n \r \t),
  // unescaped into `out`. Control bytes (invalid JSON), non-ASCII (needs UTF-8 validation) and
  // \uXXXX: false.
  bool String(std::string& out) {
    if (at_ >= in_.size() || in_[at_] != '"') return false;
    ++at_;
    out.clear();
    size_t run_start = at_;
    while (at_ < in_.size()) {
      const auto c = static_cast<unsigned char>(in_[at_]);
      if (c == '"') {
        out.append(in_.data() + run_start, at_ - run_start);
        ++at_;
        return true;
      }
      if (c < 0x20 || c >= 0x80) return false;
      if (c != '\\') {
        ++at_;
        continue;
      }
      out.append(in_.data() + run_start, at_ - run_start);
      if (at_ + 1 >= in_.size()) return false;
      char unescaped = 0;
      switch (in_[at_ + 1]) {
        case '"':
          unescaped = '"';
          break;
        case '\\':
          unescaped = '\\';
          break;
        case '/':
          unescaped = '/';
          break;
        case 'b':
          unescaped = '\b';
          break;
        case 'f':
          unescaped = '\f';
          break;
        case 'n':
          unescaped = '\n';
          break;
        case 'r':
          unescaped = '\r';
          break;
        case 't':
          unescaped = '\t';
          break;
        default:
          return false;
      }
      out += unescaped;
      at_ += 2;
      run_start = at_;
    }
    return false;
  }

  // Nothing left.
  bool AtEnd() const { return at_ == in_.size(); }

 private:
  std::string_view in_;
  size_t at_ = 0;
};

}  // namespace emporium
