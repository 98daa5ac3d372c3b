#include "cm/sig_codec.h"

#include <cstring>

#include "miniport/byte_order.h"

namespace cm {

using miniport::fail;
using miniport::load_be16;
using miniport::load_be32;
using miniport::load_be64;
using miniport::store_be16;
using miniport::store_be32;
using miniport::store_be64;

namespace {

namespace sig_field {  // byte offsets in the SIG header
constexpr size_t kVer = 0, kKind = 1, kHdrLen = 2, kBodyLen = 4, kRsvd = 6, kInc = 8, kPeerInc = 12, kSeq = 16,
                 kAck = 20;
}  // namespace sig_field

constexpr size_t kMsgHeaderLen = 8;
constexpr size_t kIeHeaderLen = 4;
constexpr size_t kTrafficLen = 64;
constexpr size_t kMaxUserData = 256;

bool valid_call_state(uint8_t s) {
  switch (s) {
    case 0: case 1: case 3: case 6: case 8: case 9: case 10: case 11: case 12: return true;
    default: return false;
  }
}

FlowSpec read_flow(const uint8_t* p) {
  FlowSpec f;
  f.token_rate = load_be32(p);
  f.bucket = load_be32(p + 4);
  f.peak = load_be32(p + 8);
  f.latency = load_be32(p + 12);
  f.delay_variation = load_be32(p + 16);
  f.service_type = load_be32(p + 20);
  f.max_sdu = load_be32(p + 24);
  f.min_policed = load_be32(p + 28);
  return f;
}

void write_flow(uint8_t* p, const FlowSpec& f) {
  store_be32(p, f.token_rate);
  store_be32(p + 4, f.bucket);
  store_be32(p + 8, f.peak);
  store_be32(p + 12, f.latency);
  store_be32(p + 16, f.delay_variation);
  store_be32(p + 20, f.service_type);
  store_be32(p + 24, f.max_sdu);
  store_be32(p + 28, f.min_policed);
}

// Mandatory IEs of each message type (4.2), as a bit per IE code.
uint32_t mandatory(MsgType t) {
  auto bit = [](IeType ie) { return 1u << static_cast<uint8_t>(ie); };
  switch (t) {
    case MsgType::kSetup: return bit(IeType::kCalledParty) | bit(IeType::kSap) | bit(IeType::kVci);
    case MsgType::kAddParty:
      return bit(IeType::kCalledParty) | bit(IeType::kSap) | bit(IeType::kVci) | bit(IeType::kEndpointRef);
    case MsgType::kConnect: return bit(IeType::kVci);
    case MsgType::kAddPartyAck: return bit(IeType::kVci) | bit(IeType::kEndpointRef);
    case MsgType::kModifyRequest: return bit(IeType::kTraffic);
    case MsgType::kDropParty:
    case MsgType::kDropPartyAck:
    case MsgType::kAddPartyReject: return bit(IeType::kEndpointRef);
    case MsgType::kCallProceeding:
    case MsgType::kConnectAck:
    case MsgType::kRelease:
    case MsgType::kReleaseComplete:
    case MsgType::kModifyAck:
    case MsgType::kModifyReject:
    case MsgType::kStatusEnquiry:
    case MsgType::kStatus:
    case MsgType::kRestart:
    case MsgType::kRestartAck: return 0;
  }
  return 0;
}

// Reads one known IE's value into m. False = cause 100 (wrong length or a
// value outside what the protocol allows).
bool read_ie(IeType ie, std::span<const uint8_t> v, Message& m) {
  switch (ie) {
    case IeType::kCalledParty:
      if (!valid_node_address(v)) return false;
      m.called_party = v;
      return true;
    case IeType::kCallingParty:
      if (!valid_node_address(v)) return false;
      m.calling_party = v;
      return true;
    case IeType::kSap: {
      if (v.size() < 2) return false;
      SapValue s{load_be16(v.data()), v.subspan(2)};
      if (!valid_sap(s)) return false;
      m.sap = s;
      return true;
    }
    case IeType::kTraffic:
      if (v.size() != kTrafficLen) return false;
      m.traffic = Traffic{read_flow(v.data()), read_flow(v.data() + 32)};
      return true;
    case IeType::kVci:
      if (v.size() != 4 || load_be32(v.data()) == 0) return false;
      m.vci = load_be32(v.data());
      return true;
    case IeType::kCause:
      if (v.size() != 2 || !is_known_cause(v[0]) || v[1] > 2) return false;
      m.cause = CauseIe{v[0], v[1]};
      return true;
    case IeType::kEndpointRef:
      if (v.size() != 2) return false;
      m.endpoint_ref = load_be16(v.data());
      return true;
    case IeType::kBearer:
      if (v.size() != 1 || (v[0] != 1 && v[0] != 2)) return false;
      m.bearer = v[0];
      return true;
    case IeType::kCallState:
      if (v.size() != 1 || !valid_call_state(v[0])) return false;
      m.call_state = v[0];
      return true;
    case IeType::kUserData:
      if (v.size() > kMaxUserData) return false;
      m.user_data = v;
      return true;
    case IeType::kNodeAddress:
    case IeType::kMtu:
    case IeType::kLinkSpeed:
      // HELLO IEs have no place in a message: known, so not "unknown", but
      // never valid here.
      return false;
  }
  return false;
}

bool known_ie(uint8_t code) {
  return (code >= 0x01 && code <= 0x0A) || (code >= 0x10 && code <= 0x12);
}

// A cursor that writes IEs and fails once the buffer is full.
class Writer {
 public:
  explicit Writer(std::span<uint8_t> out) : out_(out) {}
  bool ie(IeType t, std::span<const uint8_t> v) {
    if (v.size() > 0xFFFF || pos_ + kIeHeaderLen + v.size() > out_.size()) return ok_ = false;
    out_[pos_] = static_cast<uint8_t>(t);
    out_[pos_ + 1] = 0;
    store_be16(&out_[pos_ + 2], static_cast<uint16_t>(v.size()));
    if (!v.empty()) std::memcpy(&out_[pos_ + kIeHeaderLen], v.data(), v.size());
    pos_ += kIeHeaderLen + v.size();
    return true;
  }
  // An IE whose value is a u16 followed by bytes (the SAP IE).
  bool ie(IeType t, uint16_t prefix, std::span<const uint8_t> v) {
    const size_t len = 2 + v.size();
    if (len > 0xFFFF || pos_ + kIeHeaderLen + len > out_.size()) return ok_ = false;
    out_[pos_] = static_cast<uint8_t>(t);
    out_[pos_ + 1] = 0;
    store_be16(&out_[pos_ + 2], static_cast<uint16_t>(len));
    store_be16(&out_[pos_ + 4], prefix);
    if (!v.empty()) std::memcpy(&out_[pos_ + 6], v.data(), v.size());
    pos_ += kIeHeaderLen + len;
    return true;
  }
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }

 private:
  std::span<uint8_t> out_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

bool is_known(uint8_t t) noexcept {
  switch (static_cast<MsgType>(t)) {
    case MsgType::kSetup: case MsgType::kCallProceeding: case MsgType::kConnect: case MsgType::kConnectAck:
    case MsgType::kRelease: case MsgType::kReleaseComplete: case MsgType::kAddParty: case MsgType::kAddPartyAck:
    case MsgType::kAddPartyReject: case MsgType::kDropParty: case MsgType::kDropPartyAck:
    case MsgType::kModifyRequest: case MsgType::kModifyAck: case MsgType::kModifyReject:
    case MsgType::kStatusEnquiry: case MsgType::kStatus: case MsgType::kRestart: case MsgType::kRestartAck:
      return true;
  }
  return false;
}

const char* to_string(MsgType t) noexcept {
  switch (t) {
    case MsgType::kSetup: return "SETUP";
    case MsgType::kCallProceeding: return "CALL_PROCEEDING";
    case MsgType::kConnect: return "CONNECT";
    case MsgType::kConnectAck: return "CONNECT_ACK";
    case MsgType::kRelease: return "RELEASE";
    case MsgType::kReleaseComplete: return "RELEASE_COMPLETE";
    case MsgType::kAddParty: return "ADD_PARTY";
    case MsgType::kAddPartyAck: return "ADD_PARTY_ACK";
    case MsgType::kAddPartyReject: return "ADD_PARTY_REJECT";
    case MsgType::kDropParty: return "DROP_PARTY";
    case MsgType::kDropPartyAck: return "DROP_PARTY_ACK";
    case MsgType::kModifyRequest: return "MODIFY_REQUEST";
    case MsgType::kModifyAck: return "MODIFY_ACK";
    case MsgType::kModifyReject: return "MODIFY_REJECT";
    case MsgType::kStatusEnquiry: return "STATUS_ENQUIRY";
    case MsgType::kStatus: return "STATUS";
    case MsgType::kRestart: return "RESTART";
    case MsgType::kRestartAck: return "RESTART_ACK";
  }
  return "UNKNOWN";
}

const char* cause_name(uint8_t c) noexcept {
  switch (c) {
    case 1: return "unallocated number";
    case 3: return "no route to destination";
    case 16: return "normal clearing";
    case 17: return "user busy";
    case 18: return "no user responding";
    case 21: return "call rejected";
    case 27: return "destination out of order";
    case 30: return "response to STATUS ENQUIRY";
    case 31: return "normal, unspecified";
    case 41: return "temporary failure";
    case 47: return "resource unavailable";
    case 49: return "quality of service unavailable";
    case 81: return "invalid call reference";
    case 88: return "incompatible destination";
    case 96: return "mandatory information element missing";
    case 97: return "message type non-existent";
    case 99: return "information element non-existent";
    case 100: return "invalid information element contents";
    case 101: return "message not compatible with call state";
    case 102: return "recovery on timer expiry";
    case 111: return "protocol error";
    default: return nullptr;
  }
}

bool is_known_cause(uint8_t c) noexcept { return cause_name(c) != nullptr; }

bool valid_node_address(std::span<const uint8_t> a) noexcept {
  if (a.empty() || a.size() > 32) return false;
  for (uint8_t c : a) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_utf8(std::span<const uint8_t> s) noexcept {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;  // the continuation bytes run past the end
    for (size_t k = 1; k <= n; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

bool valid_sap(const SapValue& s) noexcept {
  switch (static_cast<SapType>(s.type)) {
    case SapType::kSelector: return s.value.size() == 2 && load_be16(s.value.data()) != 0;
    case SapType::kService: return !s.value.empty() && s.value.size() <= 64 && valid_utf8(s.value);
    case SapType::kWildcard: return s.value.empty();
  }
  return true;  // an unknown sap_type is well formed (it may meet a wildcard)
}

Result<SigFrame> decode_sig(std::span<const uint8_t> in) noexcept {
  if (in.size() < kSigHeaderLen) return fail(Status::kInvalidLength);
  const uint8_t* p = in.data();
  if (p[sig_field::kVer] != kSigVersion) return fail(Status::kInvalidData);
  const uint8_t kind = p[sig_field::kKind];
  if (kind < 1 || kind > 4) return fail(Status::kInvalidData);
  const size_t hdr_len = load_be16(p + sig_field::kHdrLen);
  const size_t body_len = load_be16(p + sig_field::kBodyLen);
  if (hdr_len < kSigHeaderLen || hdr_len + body_len > in.size()) return fail(Status::kInvalidLength);
  SigFrame f;
  f.hdr.kind = static_cast<SigKind>(kind);
  f.hdr.incarnation = load_be32(p + sig_field::kInc);
  f.hdr.peer_incarnation = load_be32(p + sig_field::kPeerInc);
  f.hdr.seq = load_be32(p + sig_field::kSeq);
  f.hdr.ack = load_be32(p + sig_field::kAck);
  // A later version may grow the header: the body starts at hdr_len.
  f.body = in.subspan(hdr_len, body_len);
  return f;
}

Result<size_t> encode_sig(const SigHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out) noexcept {
  if (body.size() > 0xFFFF) return fail(Status::kInvalidLength);
  if (out.size() < kSigHeaderLen + body.size()) return fail(Status::kBufferTooShort);
  uint8_t* p = out.data();
  p[sig_field::kVer] = kSigVersion;
  p[sig_field::kKind] = static_cast<uint8_t>(h.kind);
  store_be16(p + sig_field::kHdrLen, kSigHeaderLen);
  store_be16(p + sig_field::kBodyLen, static_cast<uint16_t>(body.size()));
  store_be16(p + sig_field::kRsvd, 0);
  store_be32(p + sig_field::kInc, h.incarnation);
  store_be32(p + sig_field::kPeerInc, h.peer_incarnation);
  store_be32(p + sig_field::kSeq, h.seq);
  store_be32(p + sig_field::kAck, h.ack);
  if (!body.empty()) std::memcpy(p + kSigHeaderLen, body.data(), body.size());
  return kSigHeaderLen + body.size();
}

Decoded decode_message(std::span<const uint8_t> body) noexcept {
  Decoded d;
  // Step 1: the header and its length must agree with the body.
  if (body.size() < kMsgHeaderLen || size_t{load_be16(body.data() + 2)} + kMsgHeaderLen != body.size()) {
    d.verdict = Verdict::kMalformed;
    return d;
  }
  d.raw_type = body[0];
  d.msg.call_ref = load_be32(body.data() + 4);
  // Step 2: unknown type.
  if (!is_known(d.raw_type)) {
    d.verdict = Verdict::kUnknownType;
    d.cause = cause::kMessageTypeNonExistent;
    return d;
  }
  d.msg.type = static_cast<MsgType>(d.raw_type);
  // Step 4: the IEs, in wire order; the first error is the one reported.
  std::span<const uint8_t> ies = body.subspan(kMsgHeaderLen);
  uint32_t seen = 0;
  while (!ies.empty()) {
    if (ies.size() < kIeHeaderLen) {
      d.verdict = Verdict::kBadIe;
      d.cause = cause::kInvalidIeContents;  // an IE header that runs past the message
      return d;
    }
    const uint8_t code = ies[0];
    const uint8_t flags = ies[1];
    const size_t len = load_be16(ies.data() + 2);
    if (kIeHeaderLen + len > ies.size()) {
      d.verdict = Verdict::kBadIe;
      d.cause = cause::kInvalidIeContents;
      return d;
    }
    std::span<const uint8_t> value = ies.subspan(kIeHeaderLen, len);
    ies = ies.subspan(kIeHeaderLen + len);
    if (!known_ie(code)) {
      if (flags & kIeComprehensionRequired) {
        d.verdict = Verdict::kBadIe;
        d.cause = cause::kIeNonExistent;
        return d;
      }
      continue;  // unknown and optional: skipped
    }
    const uint32_t bit = 1u << code;
    if (code < 32 && (seen & bit)) continue;  // a repeated IE: the first counts
    if (code < 32) seen |= bit;
    if (!read_ie(static_cast<IeType>(code), value, d.msg)) {
      d.verdict = Verdict::kBadIe;
      d.cause = cause::kInvalidIeContents;
      return d;
    }
  }
  if ((mandatory(d.msg.type) & ~seen) != 0) {
    d.verdict = Verdict::kBadIe;
    d.cause = cause::kMandatoryIeMissing;
    return d;
  }
  d.verdict = Verdict::kOk;
  return d;
}

Result<size_t> encode_message(const Message& m, std::span<uint8_t> out) noexcept {
  if (!is_known(static_cast<uint8_t>(m.type))) return fail(Status::kInvalidData);
  if (out.size() < kMsgHeaderLen) return fail(Status::kBufferTooShort);
  // Refuse to write anything a decoder must refuse.
  if (m.called_party && !valid_node_address(*m.called_party)) return fail(Status::kInvalidData);
  if (m.calling_party && !valid_node_address(*m.calling_party)) return fail(Status::kInvalidData);
  if (m.sap && !valid_sap(*m.sap)) return fail(Status::kInvalidData);
  if (m.vci && *m.vci == 0) return fail(Status::kInvalidData);
  if (m.cause && (!is_known_cause(m.cause->cause) || m.cause->location > 2)) return fail(Status::kInvalidData);
  if (m.bearer && *m.bearer != 1 && *m.bearer != 2) return fail(Status::kInvalidData);
  if (m.call_state && !valid_call_state(*m.call_state)) return fail(Status::kInvalidData);
  if (m.user_data && m.user_data->size() > kMaxUserData) return fail(Status::kInvalidData);

  Writer w(out.subspan(kMsgHeaderLen));
  uint8_t tmp[kTrafficLen];
  if (m.called_party) w.ie(IeType::kCalledParty, *m.called_party);
  if (m.calling_party) w.ie(IeType::kCallingParty, *m.calling_party);
  if (m.sap) w.ie(IeType::kSap, m.sap->type, m.sap->value);
  if (m.traffic) {
    write_flow(tmp, m.traffic->transmit);
    write_flow(tmp + 32, m.traffic->receive);
    w.ie(IeType::kTraffic, {tmp, kTrafficLen});
  }
  if (m.vci) {
    store_be32(tmp, *m.vci);
    w.ie(IeType::kVci, {tmp, 4});
  }
  if (m.cause) {
    tmp[0] = m.cause->cause;
    tmp[1] = m.cause->location;
    w.ie(IeType::kCause, {tmp, 2});
  }
  if (m.endpoint_ref) {
    store_be16(tmp, *m.endpoint_ref);
    w.ie(IeType::kEndpointRef, {tmp, 2});
  }
  if (m.bearer) {
    tmp[0] = *m.bearer;
    w.ie(IeType::kBearer, {tmp, 1});
  }
  if (m.call_state) {
    tmp[0] = *m.call_state;
    w.ie(IeType::kCallState, {tmp, 1});
  }
  if (m.user_data) w.ie(IeType::kUserData, *m.user_data);
  if (!w.ok()) return fail(Status::kBufferTooShort);
  if (w.pos() > 0xFFFF) return fail(Status::kInvalidLength);
  out[0] = static_cast<uint8_t>(m.type);
  out[1] = 0;
  store_be16(out.data() + 2, static_cast<uint16_t>(w.pos()));
  store_be32(out.data() + 4, m.call_ref);
  return kMsgHeaderLen + w.pos();
}

Result<Hello> decode_hello(std::span<const uint8_t> body) noexcept {
  Hello h;
  bool have_address = false, have_mtu = false, have_speed = false;
  while (!body.empty()) {
    if (body.size() < kIeHeaderLen) return fail(Status::kInvalidData);
    const uint8_t code = body[0], flags = body[1];
    const size_t len = load_be16(body.data() + 2);
    if (kIeHeaderLen + len > body.size()) return fail(Status::kInvalidData);
    std::span<const uint8_t> v = body.subspan(kIeHeaderLen, len);
    body = body.subspan(kIeHeaderLen + len);
    switch (static_cast<IeType>(code)) {
      case IeType::kNodeAddress:
        if (!valid_node_address(v)) return fail(Status::kInvalidData);
        if (!have_address) h.node_address = v, have_address = true;
        break;
      case IeType::kMtu:
        if (v.size() != 2) return fail(Status::kInvalidData);
        if (!have_mtu) h.mtu = load_be16(v.data()), have_mtu = true;
        break;
      case IeType::kLinkSpeed:
        if (v.size() != 8) return fail(Status::kInvalidData);
        if (!have_speed) h.link_speed = load_be64(v.data()), have_speed = true;
        break;
      default:
        // Message IEs mean nothing in a HELLO; unknown ones may be skipped
        // unless comprehension is required.
        if (flags & kIeComprehensionRequired) return fail(Status::kInvalidData);
        break;
    }
  }
  if (!have_address) return fail(Status::kInvalidData);
  return h;
}

Result<size_t> encode_hello(const Hello& h, std::span<uint8_t> out) noexcept {
  if (!valid_node_address(h.node_address)) return fail(Status::kInvalidData);
  Writer w(out);
  uint8_t tmp[8];
  w.ie(IeType::kNodeAddress, h.node_address);
  if (h.mtu) {
    store_be16(tmp, *h.mtu);
    w.ie(IeType::kMtu, {tmp, 2});
  }
  if (h.link_speed) {
    store_be64(tmp, *h.link_speed);
    w.ie(IeType::kLinkSpeed, {tmp, 8});
  }
  if (!w.ok()) return fail(Status::kBufferTooShort);
  return w.pos();
}

}  // namespace cm
