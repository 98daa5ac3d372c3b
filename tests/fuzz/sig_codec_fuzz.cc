// libFuzzer target for the signaling codec: SIG frames, message bodies and
// HELLO bodies. Every accepted message must re-encode and decode to the same
// message (a codec that accepts what it cannot write back is a bug).
// Built with clang -fsanitize=fuzzer by tools/fuzz.sh (COEMU_FUZZ=ON); with
// g++ the replay main runs the corpus in ctest, so a crash found once stays a
// regression test.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "cm/sig_codec.h"

namespace {

bool same(const std::optional<std::span<const uint8_t>>& a, const std::optional<std::span<const uint8_t>>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->size() == b->size() && (a->empty() || std::memcmp(a->data(), b->data(), a->size()) == 0));
}

bool same(const cm::Message& a, const cm::Message& b) {
  auto sap_eq = [](const std::optional<cm::SapValue>& x, const std::optional<cm::SapValue>& y) {
    if (x.has_value() != y.has_value()) return false;
    return !x || (x->type == y->type && same(x->value, y->value));
  };
  auto cause_eq = [](const std::optional<cm::CauseIe>& x, const std::optional<cm::CauseIe>& y) {
    if (x.has_value() != y.has_value()) return false;
    return !x || (x->cause == y->cause && x->location == y->location);
  };
  return a.type == b.type && a.call_ref == b.call_ref && same(a.called_party, b.called_party) &&
         same(a.calling_party, b.calling_party) && sap_eq(a.sap, b.sap) && a.traffic == b.traffic &&
         a.vci == b.vci && cause_eq(a.cause, b.cause) && a.endpoint_ref == b.endpoint_ref && a.bearer == b.bearer &&
         a.call_state == b.call_state && same(a.user_data, b.user_data);
}

void check_message(std::span<const uint8_t> body) {
  const cm::Decoded d = cm::decode_message(body);
  if (d.verdict != cm::Verdict::kOk) return;
  // The canonical form is never longer than the input (duplicates and
  // unknown IEs are dropped), so the input's size is enough room.
  std::vector<uint8_t> out(body.size());
  auto n = cm::encode_message(d.msg, out);
  if (!n) std::abort();
  const cm::Decoded again = cm::decode_message(std::span(out).first(*n));
  if (again.verdict != cm::Verdict::kOk || !same(d.msg, again.msg)) std::abort();
}

void check_hello(std::span<const uint8_t> body) {
  auto h = cm::decode_hello(body);
  if (!h) return;
  std::vector<uint8_t> out(body.size() + 16);
  auto n = cm::encode_hello(*h, out);
  if (!n) std::abort();
  auto again = cm::decode_hello(std::span(out).first(*n));
  if (!again || again->mtu != h->mtu || again->link_speed != h->link_speed ||
      !same(std::optional(again->node_address), std::optional(h->node_address)))
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  if (auto f = cm::decode_sig(in)) {
    if (f->hdr.kind == cm::SigKind::kMsg) check_message(f->body);
    if (f->hdr.kind == cm::SigKind::kHello) check_hello(f->body);
  }
  check_message(in);
  check_hello(in);
  return 0;
}
