// Reads typed values off a fuzzer's input, front to back; once the bytes run
// out every read returns 0 (so a harness loop ends on empty()). Our own
// rather than libFuzzer's FuzzedDataProvider so the g++ replay build has it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : rest_(data, size) {}

  [[nodiscard]] bool empty() const noexcept { return rest_.empty(); }
  uint8_t u8() noexcept {
    if (rest_.empty()) return 0;
    const uint8_t v = rest_[0];
    rest_ = rest_.subspan(1);
    return v;
  }
  uint16_t u16() noexcept { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() noexcept { return u16() | (static_cast<uint32_t>(u16()) << 16); }
  // Up to n bytes (fewer at the end of the input), as a view of it.
  std::span<const uint8_t> bytes(size_t n) noexcept {
    const size_t k = n < rest_.size() ? n : rest_.size();
    auto v = rest_.first(k);
    rest_ = rest_.subspan(k);
    return v;
  }

 private:
  std::span<const uint8_t> rest_;
};

}  // namespace fuzz
