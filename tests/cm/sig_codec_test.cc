#include "cm/sig_codec.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <string>
#include <vector>

namespace cm {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

const std::string kAlpha = "alpha", kBeta = "beta";
const uint8_t kSel42[] = {0x00, 0x2a};

Message setup() {
  Message m;
  m.type = MsgType::kSetup;
  m.call_ref = 7;
  m.called_party = bytes(kBeta);
  m.calling_party = bytes(kAlpha);
  m.sap = SapValue{static_cast<uint16_t>(SapType::kSelector), kSel42};
  m.vci = 0x00100001;
  m.bearer = 1;
  return m;
}

// SETUP, call_ref 7: CALLED_PARTY "beta", CALLING_PARTY "alpha", SAP
// selector 42, VCI 0x00100001, BEARER 1, in ascending IE order.
const std::vector<uint8_t> kSetupGolden = {
    0x05, 0x00, 0x00, 0x26, 0x00, 0x00, 0x00, 0x07,              // type, rsvd, length 38, call_ref
    0x01, 0x00, 0x00, 0x04, 'b', 'e', 't', 'a',                  // CALLED_PARTY
    0x02, 0x00, 0x00, 0x05, 'a', 'l', 'p', 'h', 'a',             // CALLING_PARTY
    0x03, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00, 0x2a,              // SAP selector 42
    0x05, 0x00, 0x00, 0x04, 0x00, 0x10, 0x00, 0x01,              // VCI
    0x08, 0x00, 0x00, 0x01, 0x01,                                // BEARER point-to-point
};

TEST(SigCodec, SetupEncodesToGoldenBytes) {
  std::vector<uint8_t> out(256);
  auto n = encode_message(setup(), out);
  ASSERT_TRUE(n.has_value());
  out.resize(*n);
  EXPECT_EQ(out, kSetupGolden);
}

TEST(SigCodec, SetupDecodesFromGoldenBytes) {
  Decoded d = decode_message(kSetupGolden);
  ASSERT_EQ(d.verdict, Verdict::kOk);
  EXPECT_EQ(d.msg.type, MsgType::kSetup);
  EXPECT_EQ(d.msg.call_ref, 7u);
  ASSERT_TRUE(d.msg.called_party);
  EXPECT_EQ(std::string(d.msg.called_party->begin(), d.msg.called_party->end()), "beta");
  EXPECT_EQ(d.msg.called_party->data(), kSetupGolden.data() + 12) << "values are views into the input";
  ASSERT_TRUE(d.msg.sap);
  EXPECT_EQ(d.msg.sap->type, 1);
  EXPECT_EQ(*d.msg.vci, 0x00100001u);
  EXPECT_EQ(*d.msg.bearer, 1);
  EXPECT_FALSE(d.msg.traffic) << "absent TRAFFIC: best effort, decided by the CM";
}

TEST(SigCodec, EveryTruncatedPrefixIsMalformed) {
  for (size_t n = 0; n < kSetupGolden.size(); ++n) {
    std::vector<uint8_t> prefix(kSetupGolden.begin(), kSetupGolden.begin() + n);
    EXPECT_EQ(decode_message(prefix).verdict, Verdict::kMalformed) << n;
  }
  auto longer = kSetupGolden;
  longer.push_back(0);
  EXPECT_EQ(decode_message(longer).verdict, Verdict::kMalformed) << "length must equal body_len - 8";
}

TEST(SigCodec, EveryMessageTypeRoundTrips) {
  const std::string node = "lab1.r2";
  const uint8_t svc[] = {'e', 'c', 'h', 'o', 0xc3, 0xa9};  // UTF-8 "echoé"
  const uint8_t user[] = {1, 2, 3};
  for (uint8_t t = 0; t < 255; ++t) {
    if (!is_known(t)) continue;
    Message m;
    m.type = static_cast<MsgType>(t);
    m.call_ref = 0x80000000u | t;
    m.called_party = bytes(node);
    m.calling_party = bytes(node);
    m.sap = SapValue{static_cast<uint16_t>(SapType::kService), svc};
    m.traffic = Traffic{{1000, 2000, 3000, 4, 5, 3, 1500, 64}, {6, 7, 8, 9, 10, 2, 9000, 0}};
    m.vci = 99;
    m.cause = CauseIe{cause::kNormalClearing, 1};
    m.endpoint_ref = 3;
    m.bearer = 2;
    m.call_state = 10;
    m.user_data = std::span<const uint8_t>(user);
    std::vector<uint8_t> out(512);
    auto n = encode_message(m, out);
    ASSERT_TRUE(n.has_value()) << to_string(m.type);
    // The encoder writes every byte it reports, reserved ones included: the
    // call manager encodes into a buffer it does not clear.
    std::vector<uint8_t> dirty(512, 0xAA);
    ASSERT_EQ(encode_message(m, dirty), n);
    EXPECT_TRUE(std::equal(out.begin(), out.begin() + static_cast<long>(*n), dirty.begin())) << to_string(m.type);
    Decoded d = decode_message(std::span(out).first(*n));
    ASSERT_EQ(d.verdict, Verdict::kOk) << to_string(m.type);
    EXPECT_EQ(d.msg.type, m.type);
    EXPECT_EQ(d.msg.call_ref, m.call_ref);
    EXPECT_EQ(*d.msg.traffic, *m.traffic);
    EXPECT_EQ(d.msg.cause->cause, 16);
    EXPECT_EQ(d.msg.cause->location, 1);
    EXPECT_EQ(*d.msg.endpoint_ref, 3);
    EXPECT_EQ(*d.msg.call_state, 10);
    EXPECT_EQ(d.msg.sap->value.size(), sizeof svc);
    EXPECT_EQ(d.msg.user_data->size(), 3u);
  }
}

// Builds a body: message header then raw IE bytes.
std::vector<uint8_t> body(uint8_t type, uint32_t call_ref, const std::vector<uint8_t>& ies) {
  std::vector<uint8_t> b(8 + ies.size());
  b[0] = type;
  b[2] = static_cast<uint8_t>(ies.size() >> 8);
  b[3] = static_cast<uint8_t>(ies.size());
  for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<uint8_t>(call_ref >> (24 - 8 * i));
  for (size_t i = 0; i < ies.size(); ++i) b[8 + i] = ies[i];
  return b;
}

const std::vector<uint8_t> kVci = {0x05, 0x00, 0x00, 0x04, 0, 0, 0, 9};

TEST(SigCodec, Step2UnknownTypeKeepsTheCallRef) {
  Decoded d = decode_message(body(0x99, 0x1234, {}));
  EXPECT_EQ(d.verdict, Verdict::kUnknownType);
  EXPECT_EQ(d.cause, cause::kMessageTypeNonExistent);
  EXPECT_EQ(d.msg.call_ref, 0x1234u);
  EXPECT_EQ(d.raw_type, 0x99);
}

TEST(SigCodec, Step4UnknownIeComprehensionRequiredOr) {
  // Unknown IE 0x40 without the bit: skipped.
  auto ok = body(0x07, 1, {0x40, 0x00, 0x00, 0x02, 9, 9, 0x05, 0x00, 0x00, 0x04, 0, 0, 0, 9});
  Decoded d = decode_message(ok);
  EXPECT_EQ(d.verdict, Verdict::kOk);
  EXPECT_EQ(*d.msg.vci, 9u);
  // With the bit: cause 99.
  auto cr = body(0x07, 1, {0x40, 0x01, 0x00, 0x02, 9, 9, 0x05, 0x00, 0x00, 0x04, 0, 0, 0, 9});
  d = decode_message(cr);
  EXPECT_EQ(d.verdict, Verdict::kBadIe);
  EXPECT_EQ(d.cause, cause::kIeNonExistent);
}

TEST(SigCodec, Step4BadValuesAreCause100) {
  struct Case {
    const char* what;
    std::vector<uint8_t> ie;
  } cases[] = {
      {"node address with !", {0x01, 0, 0, 3, 'a', '!', 'b'}},
      {"node address of 33 bytes", [] {
         std::vector<uint8_t> v = {0x01, 0, 0, 33};
         v.insert(v.end(), 33, 'a');
         return v;
       }()},
      {"empty node address", {0x01, 0, 0, 0}},
      {"service not UTF-8", {0x03, 0, 0, 4, 0, 2, 0xff, 0xfe}},
      {"overlong UTF-8", {0x03, 0, 0, 4, 0, 2, 0xc0, 0x80}},
      {"selector 0", {0x03, 0, 0, 4, 0, 1, 0, 0}},
      {"selector of 3 bytes", {0x03, 0, 0, 5, 0, 1, 0, 1, 2}},
      {"wildcard with a value", {0x03, 0, 0, 3, 0, 3, 1}},
      {"SAP without a type", {0x03, 0, 0, 1, 0}},
      {"VCI 0", {0x05, 0, 0, 4, 0, 0, 0, 0}},
      {"VCI of 3 bytes", {0x05, 0, 0, 3, 0, 0, 1}},
      {"TRAFFIC of 63 bytes", [] {
         std::vector<uint8_t> v = {0x04, 0, 0, 63};
         v.insert(v.end(), 63, 0);
         return v;
       }()},
      {"unknown cause value", {0x06, 0, 0, 2, 200, 1}},
      {"cause location 3", {0x06, 0, 0, 2, 16, 3}},
      {"bearer 3", {0x08, 0, 0, 1, 3}},
      {"call state 2", {0x09, 0, 0, 1, 2}},
      {"user data of 257 bytes", [] {
         std::vector<uint8_t> v = {0x0a, 0, 0x01, 0x01};
         v.insert(v.end(), 257, 0);
         return v;
       }()},
      {"a HELLO IE in a message", {0x11, 0, 0, 2, 5, 220}},
      {"IE past the end", {0x05, 0, 0, 9, 0, 0, 0, 1}},
      {"IE header past the end", {0x05, 0}},
  };
  for (const auto& c : cases) {
    // RELEASE has no mandatory IE, so only the bad one can fail it.
    Decoded d = decode_message(body(0x4D, 1, c.ie));
    EXPECT_EQ(d.verdict, Verdict::kBadIe) << c.what;
    EXPECT_EQ(d.cause, cause::kInvalidIeContents) << c.what;
  }
}

TEST(SigCodec, Step4MissingMandatoryIeIsCause96AndComesLast) {
  Decoded d = decode_message(body(0x07, 1, {}));  // CONNECT without VCI
  EXPECT_EQ(d.verdict, Verdict::kBadIe);
  EXPECT_EQ(d.cause, cause::kMandatoryIeMissing);
  // A bad IE earlier in wire order is what gets reported, not the missing one.
  d = decode_message(body(0x07, 1, {0x08, 0, 0, 1, 7}));
  EXPECT_EQ(d.cause, cause::kInvalidIeContents);
  // The first error in wire order wins: 99 before 100.
  d = decode_message(body(0x07, 1, {0x40, 0x01, 0, 0, 0x08, 0, 0, 1, 7}));
  EXPECT_EQ(d.cause, cause::kIeNonExistent);
  d = decode_message(body(0x07, 1, {0x08, 0, 0, 1, 7, 0x40, 0x01, 0, 0}));
  EXPECT_EQ(d.cause, cause::kInvalidIeContents);
  // SETUP needs CALLED_PARTY, SAP and VCI; RELEASE needs nothing.
  EXPECT_EQ(decode_message(body(0x05, 1, kVci)).cause, cause::kMandatoryIeMissing);
  EXPECT_EQ(decode_message(body(0x4D, 1, {})).verdict, Verdict::kOk);
}

TEST(SigCodec, RepeatedIeFirstCountsLaterSkippedUnread) {
  // A second VCI, even an invalid one, is skipped unread.
  Decoded d = decode_message(body(0x07, 1, {0x05, 0, 0, 4, 0, 0, 0, 9, 0x05, 0, 0, 4, 0, 0, 0, 0}));
  ASSERT_EQ(d.verdict, Verdict::kOk);
  EXPECT_EQ(*d.msg.vci, 9u);
}

TEST(SigCodec, UnknownSapTypeIsWellFormed) {
  Decoded d = decode_message(body(0x05, 1,
                                  {0x01, 0, 0, 1, 'b', 0x03, 0, 0, 5, 0x12, 0x34, 1, 2, 3, 0x05, 0, 0, 4, 0, 0, 0, 9}));
  ASSERT_EQ(d.verdict, Verdict::kOk);
  EXPECT_EQ(d.msg.sap->type, 0x1234);
}

TEST(SigCodec, EncoderRefusesWhatADecoderMustRefuse) {
  std::vector<uint8_t> out(256);
  Message m = setup();
  m.vci = 0;
  EXPECT_EQ(encode_message(m, out).error(), Status::kInvalidData);
  m = setup();
  m.bearer = 5;
  EXPECT_EQ(encode_message(m, out).error(), Status::kInvalidData);
  m = setup();
  const std::string bad = "a b";
  m.called_party = bytes(bad);
  EXPECT_EQ(encode_message(m, out).error(), Status::kInvalidData);
  std::vector<uint8_t> small(20);
  EXPECT_EQ(encode_message(setup(), small).error(), Status::kBufferTooShort);
}

TEST(SigCodec, SigHeaderGoldenRoundTripAndChecks) {
  const uint8_t body_bytes[] = {0xaa, 0xbb};
  SigHeader h{SigKind::kMsg, 0x11111111, 0x22222222, 3, 2};
  std::vector<uint8_t> out(64, 0xee);
  auto n = encode_sig(h, body_bytes, out);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 26u);
  const std::vector<uint8_t> golden = {1, 2, 0, 24, 0, 2, 0, 0, 0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22,
                                       0x22, 0, 0, 0, 3, 0, 0, 0, 2, 0xaa, 0xbb};
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + 26), golden);
  // Ethernet padding after the body is ignored.
  auto f = decode_sig(std::span(out).first(46));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->hdr.kind, SigKind::kMsg);
  EXPECT_EQ(f->hdr.incarnation, 0x11111111u);
  EXPECT_EQ(f->hdr.seq, 3u);
  EXPECT_EQ(f->hdr.ack, 2u);
  EXPECT_EQ(f->body.size(), 2u);
  for (size_t k = 0; k < 26; ++k)
    EXPECT_FALSE(decode_sig(std::vector<uint8_t>(golden.begin(), golden.begin() + k)).has_value()) << k;
  auto v2 = golden;
  v2[0] = 2;
  EXPECT_EQ(decode_sig(v2).error(), Status::kInvalidData);
  auto kind5 = golden;
  kind5[1] = 5;
  EXPECT_EQ(decode_sig(kind5).error(), Status::kInvalidData);
  auto short_hdr = golden;
  short_hdr[3] = 20;
  EXPECT_EQ(decode_sig(short_hdr).error(), Status::kInvalidLength);
  // A later version's longer header: the body starts at hdr_len.
  std::vector<uint8_t> grown(golden.begin(), golden.begin() + 24);
  grown[3] = 28;
  for (uint8_t x : {9, 9, 9, 9, 0xaa, 0xbb}) grown.push_back(x);
  auto g = decode_sig(grown);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->body[0], 0xaa);
}

TEST(SigCodec, HelloRoundTripAndRefusals) {
  const std::string addr = "alpha";
  std::vector<uint8_t> out(64);
  auto n = encode_hello(Hello{bytes(addr), 1500, 10'000'000'000ull}, out);
  ASSERT_TRUE(n.has_value());
  auto h = decode_hello(std::span(out).first(*n));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(std::string(h->node_address.begin(), h->node_address.end()), "alpha");
  EXPECT_EQ(*h->mtu, 1500);
  EXPECT_EQ(*h->link_speed, 10'000'000'000ull);
  const std::vector<uint8_t> no_addr = {0x11, 0, 0, 2, 5, 220};
  EXPECT_FALSE(decode_hello(no_addr).has_value());
  const std::vector<uint8_t> cr_unknown = {0x10, 0, 0, 1, 'a', 0x7f, 0x01, 0, 0};
  EXPECT_FALSE(decode_hello(cr_unknown).has_value()) << "dropped whole";
  const std::vector<uint8_t> optional_unknown = {0x10, 0, 0, 1, 'a', 0x7f, 0x00, 0, 1, 9};
  EXPECT_TRUE(decode_hello(optional_unknown).has_value());
  const std::vector<uint8_t> bad_mtu = {0x10, 0, 0, 1, 'a', 0x11, 0, 0, 1, 5};
  EXPECT_FALSE(decode_hello(bad_mtu).has_value());
}

TEST(SigCodec, Utf8Validator) {
  auto u = [](std::vector<uint8_t> v) { return valid_utf8(v); };
  EXPECT_TRUE(u({'a', 'b'}));
  EXPECT_TRUE(u({0xe2, 0x82, 0xac}));        // €
  EXPECT_TRUE(u({0xf0, 0x9f, 0x98, 0x80}));  // emoji
  EXPECT_FALSE(u({0xe2, 0x82}));             // truncated
  EXPECT_FALSE(u({0xed, 0xa0, 0x80}));       // surrogate
  EXPECT_FALSE(u({0xf4, 0x90, 0x80, 0x80})); // past U+10FFFF
  EXPECT_FALSE(u({0x80}));
}

}  // namespace
}  // namespace cm
