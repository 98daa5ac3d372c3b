#include "cm/call_manager.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace cm {

namespace {
std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
// What a FLOWSPEC holds of the link: guaranteed and controlled-load rates.
uint64_t reserved_rate(const FlowSpec& f) { return f.service_type == 2 || f.service_type == 3 ? f.token_rate : 0; }
// TRAFFIC is sent as its sender sees it: the other end's transmit is our receive.
Traffic swapped(const Traffic& t) { return Traffic{t.receive, t.transmit}; }
// Point-to-multipoint data flows root to leaves only: the other direction
// carries nothing ("no traffic"), and holds nothing of the link.
Traffic one_way(Traffic t, bool root) {
  FlowSpec none;
  none.service_type = 0;
  (root ? t.receive : t.transmit) = none;
  return t;
}
}  // namespace

bool CallManager::fits(const Traffic& t, const Call* c) const {
  const uint64_t tx = reserved_tx_ - (c ? c->reserved_tx : 0) + reserved_rate(t.transmit);
  const uint64_t rx = reserved_rx_ - (c ? c->reserved_rx : 0) + reserved_rate(t.receive);
  return tx <= cfg_.link_bytes_per_s && rx <= cfg_.link_bytes_per_s;
}

void CallManager::unreserve(Call& c) {
  reserved_tx_ -= c.reserved_tx;
  reserved_rx_ -= c.reserved_rx;
  c.reserved_tx = c.reserved_rx = 0;
}

void CallManager::reserve(Call& c, uint64_t tx, uint64_t rx) {
  unreserve(c);
  c.reserved_tx = tx;
  c.reserved_rx = rx;
  reserved_tx_ += tx;
  reserved_rx_ += rx;
}

void CallManager::reserve(Call& c, const Traffic& t) { reserve(c, reserved_rate(t.transmit), reserved_rate(t.receive)); }

miniport::VcParams CallManager::vc_params(const Call& c, uint32_t peer_vci) {
  miniport::VcParams p{.peer = c.peer, .tx_vci = peer_vci};
  if (reserved_rate(c.traffic.transmit) != 0) {  // shaped to its token bucket
    p.shape_rate = c.traffic.transmit.token_rate;
    p.shape_bucket = c.traffic.transmit.bucket;
  }
  return p;
}

std::array<uint8_t, kCoPvcLen> encode_co_pvc(const PvcSpec& pvc, uint64_t af_handle) {
  std::array<uint8_t, kCoPvcLen> b{};
  const uint32_t head[4] = {kCoemuPvcParameters, 16, pvc.rx_vci, pvc.tx_vci};
  std::memcpy(b.data(), &af_handle, 8);
  std::memcpy(b.data() + 8, head, sizeof head);
  std::memcpy(b.data() + 24, pvc.peer.bytes.data(), 6);
  return b;
}

Result<PvcSpec> decode_co_pvc(std::span<const uint8_t> buf) {
  if (buf.size() < kCoPvcLen) return miniport::fail(Status::kInvalidLength);
  uint32_t head[4];
  std::memcpy(head, buf.data() + 8, sizeof head);
  if (head[0] != kCoemuPvcParameters || head[1] != 16) return miniport::fail(Status::kInvalidData);
  PvcSpec p;
  p.rx_vci = head[2];
  p.tx_vci = head[3];
  std::memcpy(p.peer.bytes.data(), buf.data() + 24, 6);
  return p;
}

CallManager::CallManager(const CmConfig& cfg, miniport::VcTable& vcs)
    : cfg_(cfg),
      vcs_(vcs),
      transport_(cfg.incarnation, cfg.transport),
      neighbors_(cfg.node_address, cfg.mac, cfg.incarnation, cfg.neighbors),
      afs_(AfOptions{.open_pends = cfg.open_af_pends.has_value(), .refuse_busy_close = cfg.af.refuse_busy_close}) {
  (void)afs_.register_af(kCoemuAf);
}

Result<Issued<AfOpenId>> CallManager::open_af(ClientId c, uint32_t af, Time now) {
  auto r = COEMU_TRY(afs_.open(c, af));
  if (r.pending) completions_.push_back(Completion{now + *cfg_.open_af_pends, r.id, std::nullopt});
  else deferred_.push_back(oid_request(r.id, co_oid::kAddressChange));  // R13
  return Issued<AfOpenId>{r.id, r.pending};
}

ClientEvent CallManager::oid_request(AfOpenId af, uint32_t oid) {
  ClientEvent e{ClientEvent::Kind::kOidRequest};
  e.client = afs_.client(af);
  e.af = af;
  e.address_family = kCoemuAf;
  e.oid = oid;
  e.request = next_request_++;
  client_oids_[e.request] = af;
  ++c_.client_oids_sent;
  return e;
}

Status CallManager::oid_request_complete(uint64_t request, Status status) {
  (void)status;  // none of the CM's sets needs the client's answer beyond its arrival
  auto it = client_oids_.find(request);
  if (it == client_oids_.end()) return Status::kFailure;
  client_oids_.erase(it);
  ++c_.client_oids_completed;
  return Status::kSuccess;
}

Status CallManager::close_af(AfOpenId af) {
  auto r = afs_.close(af);
  if (!r) return r.error();
  if (r->pending) return Status::kPending;
  forget_oids(af);
  return Status::kSuccess;
}

void CallManager::forget_oids(AfOpenId af) {
  std::erase_if(client_oids_, [&](const auto& kv) { return kv.second == af; });
}

void CallManager::notify_close_afs(CmOutput& out) {
  for (AfOpenId id : afs_.begin_cm_close()) {
    if (cfg_.legacy_af_close) {  // R18: the same request, as an OID set
      out.events.push_back(oid_request(id, co_oid::kAfClose));
      continue;
    }
    ClientEvent e{ClientEvent::Kind::kNotifyCloseAf};
    e.client = afs_.client(id);
    e.af = id;
    e.address_family = kCoemuAf;
    out.events.push_back(e);
  }
}

void CallManager::settle_closes(CmOutput& out) {
  afs_.poll_closes([&](AfOpenId id, uint64_t client) {
    forget_oids(id);
    ClientEvent e{ClientEvent::Kind::kCloseAfComplete};
    e.client = client;
    e.af = id;
    out.events.push_back(e);
  });
}

void CallManager::run_completions(Time now, CmOutput& out) {
  std::vector<Completion> due;
  std::erase_if(completions_, [&](const Completion& c) {
    if (c.at > now) return false;
    due.push_back(c);
    return true;
  });
  for (const Completion& c : due) {
    if (c.af) {
      if (!afs_.complete_open(*c.af, Status::kSuccess)) continue;
      ClientEvent e{ClientEvent::Kind::kOpenAfComplete};
      e.client = afs_.client(*c.af);
      e.af = *c.af;
      out.events.push_back(e);
      out.events.push_back(oid_request(*c.af, co_oid::kAddressChange));  // R13
    } else if (c.sap) {
      if (!saps_.complete(*c.sap)) continue;  // deregistered meanwhile
      ClientEvent e{ClientEvent::Kind::kRegisterSapComplete};
      e.client = saps_.client(*c.sap);
      e.sap = *c.sap;
      out.events.push_back(e);
    }
  }
}

void CallManager::start(Time now, CmOutput& out) {
  std::vector<uint8_t> body(128);
  auto n = encode_hello(neighbors_.hello(), body);
  if (!n) return;
  std::vector<uint8_t> frame(kSigHeaderLen + *n);
  SigHeader h{SigKind::kHello, cfg_.incarnation, 0, 0, 0};  // HELLO: peer_incarnation and ack are 0
  if (auto k = encode_sig(h, std::span(body).first(*n), frame); k) {
    out.frames.push_back(SigOut{MacAddress::broadcast(), std::move(frame)});
    neighbors_.hello_sent(now);
  }
}

Result<Issued<SapId>> CallManager::register_sap(AfOpenId af, const SapSpec& spec, Time now) {
  if (!afs_.usable(af)) return miniport::fail(Status::kFailure);
  if (const uint32_t most = cfg_.limits.saps_per_client; most != 0) {
    uint32_t held = 0;
    saps_.for_each([&](SapId, uint64_t client, const SapSpec&, SapState) { held += client == afs_.client(af); });
    if (held >= most) return miniport::fail(Status::kResources);
  }
  SapId id = COEMU_TRY(saps_.add(afs_.client(af), spec));
  sap_af_[id.slot] = af;
  afs_.add(af, Held::kSap);
  if (cfg_.register_sap_pends) {
    completions_.push_back(Completion{now + *cfg_.register_sap_pends, std::nullopt, id});
    return Issued<SapId>{id, true};
  }
  (void)saps_.complete(id);
  return Issued<SapId>{id, false};
}

Status CallManager::deregister_sap(SapId sap, CmOutput& out) {
  const uint64_t client = saps_.client(sap);
  if (saps_.state(sap) != SapState::kRegistered) return Status::kFailure;  // R22: not the client's handle yet
  if (!saps_.begin_remove(sap)) return Status::kFailure;  // R24: redundant or dead
  (void)saps_.finish_remove(sap);
  if (auto it = sap_af_.find(sap.slot); it != sap_af_.end()) {
    afs_.remove(it->second, Held::kSap);
    sap_af_.erase(it);
  }
  ClientEvent e{ClientEvent::Kind::kDeregisterSapComplete};
  e.client = client;
  e.sap = sap;
  out.events.push_back(e);
  return Status::kPending;  // R24: always pending, then the completion
}

Result<VcId> CallManager::create_vc(AfOpenId af) {
  if (!afs_.usable(af)) return miniport::fail(Status::kFailure);
  VcId vc = COEMU_TRY(vcs_.create(afs_.client(af)));
  vcs_info_.put(vc.slot, VcInfo{af, afs_.client(af), std::nullopt}).gen = vc.gen;
  afs_.add(af, Held::kVc);
  return vc;
}

Status CallManager::delete_vc(VcId vc) {
  VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || vcs_.rx_vci(vc) == 0) return Status::kFailure;
  if (it->call || it->pvc || it->root) return Status::kNotAccepted;  // R30: a call is on it
  if (auto r = vcs_.remove(vc); !r) return r.error();
  afs_.remove(it->af, Held::kVc);
  forget_vc(vc.slot);
  return Status::kSuccess;
}

miniport::OidResult CallManager::query_oid(AfOpenId af, uint32_t oid, std::span<uint8_t> out) const {
  if (!afs_.usable(af)) return {Status::kFailure, 0, 0};
  if (oid != co_oid::kGetAddresses) return {Status::kInvalidOid, 0, 0};
  // CO_ADDRESS_LIST {ULONG NumberOfAddressesAvailable; ULONG NumberOfAddresses;
  // CO_ADDRESS AddressList[]}, CO_ADDRESS {ULONG AddressSize; UCHAR Address[]}.
  const std::string& a = cfg_.node_address;
  const auto need = static_cast<uint32_t>(12 + a.size());
  if (out.size() < need) return {Status::kInvalidLength, 0, need};
  const uint32_t head[3] = {1, 1, static_cast<uint32_t>(a.size())};
  std::memcpy(out.data(), head, sizeof head);
  std::memcpy(out.data() + sizeof head, a.data(), a.size());
  return {Status::kSuccess, need, 0};
}

miniport::OidResult CallManager::set_oid(AfOpenId af, uint32_t oid, std::span<const uint8_t> in, CmOutput& out) {
  if (!afs_.usable(af)) return {Status::kFailure, 0, 0};
  if (oid != co_oid::kAddPvc && oid != co_oid::kDeletePvc) return {Status::kInvalidOid, 0, 0};
  auto pvc = decode_co_pvc(in);
  if (!pvc) {
    if (pvc.error() == Status::kInvalidLength) return {Status::kInvalidLength, 0, static_cast<uint32_t>(kCoPvcLen)};
    return {pvc.error(), 0, 0};
  }
  const PvcSpec& p = *pvc;
  if (oid == co_oid::kAddPvc) {
    if (p.rx_vci == 0 || p.rx_vci >= miniport::kPvcVciLimit || p.tx_vci == 0 || p.peer.is_multicast() ||
        pvcs_.contains(p.rx_vci))
      return {Status::kInvalidData, 0, 0};
    pvcs_.emplace(p.rx_vci, Pvc{p, std::nullopt});
    return {Status::kSuccess, 0, 0, static_cast<uint32_t>(kCoPvcLen)};
  }
  auto it = pvcs_.find(p.rx_vci);
  if (it == pvcs_.end()) return {Status::kInvalidData, 0, 0};
  if (auto user = it->second.user) {
    // The operator took the PVC away under a call: no data from now on, and
    // the client hears it as a close it must answer (R67: and delete its VC).
    VcInfo* vi = vcs_info_.find(user->slot);
    (void)vcs_.deactivate(*user);
    if (vi) {
      vi->pvc_gone = true;
      ClientEvent e{ClientEvent::Kind::kIncomingClose};
      e.client = vi->client;
      e.vc = *user;
      e.cause = cause::kDestinationOutOfOrder;
      e.status = status_for_cause(e.cause);
      out.events.push_back(e);
    }
  }
  pvcs_.erase(it);
  return {Status::kSuccess, 0, 0, static_cast<uint32_t>(kCoPvcLen)};
}

Status CallManager::make_pvc_call(VcId vc, uint32_t pvc_rx_vci, CmOutput& out) {
  VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || vcs_.rx_vci(vc) == 0 || !afs_.usable(it->af)) return Status::kFailure;
  if (it->call || it->pvc || it->root) return Status::kCallActive;
  auto p = pvcs_.find(pvc_rx_vci);
  if (p == pvcs_.end()) return Status::kInvalidData;
  if (p->second.user) return Status::kNotAccepted;
  const PvcSpec& s = p->second.spec;
  if (auto r = vcs_.activate(vc, miniport::VcParams{.peer = s.peer, .tx_vci = s.tx_vci, .pvc_rx_vci = s.rx_vci}); !r)
    return r.error();
  p->second.user = vc;
  it->pvc = pvc_rx_vci;
  afs_.add(it->af, Held::kCall);
  ClientEvent e{ClientEvent::Kind::kMakeCallComplete};  // the VC is active before the client hears
  e.client = it->client;
  e.vc = vc;
  out.events.push_back(e);
  return Status::kPending;
}

Status CallManager::close_pvc_call(VcId vc, VcInfo& info, CmOutput& out) {
  if (!info.pvc_gone) (void)vcs_.deactivate(vc);
  if (auto p = pvcs_.find(*info.pvc); p != pvcs_.end() && p->second.user == vc) p->second.user.reset();
  info.pvc.reset();
  info.pvc_gone = false;
  afs_.remove(info.af, Held::kCall);
  ClientEvent e{ClientEvent::Kind::kCloseCallComplete};
  e.client = info.client;
  e.vc = vc;
  out.events.push_back(e);
  settle_closes(out);
  return Status::kPending;
}

Result<std::string> CallManager::assign_instance_name(VcId vc, std::string_view base) {
  VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || vcs_.rx_vci(vc) == 0) return miniport::fail(Status::kFailure);
  if (auto n = vc_names_.find(vc.slot); n != vc_names_.end()) return n->second;  // R36: the original name again
  if (base.empty() || base.size() > 64) return miniport::fail(Status::kInvalidData);
  return vc_names_[vc.slot] = std::string(base) + "-" + std::to_string(next_instance_++);
}

Status CallManager::make_call(VcId vc, std::string_view called, const SapSpec& sap, Time now, CmOutput& out,
                              const Traffic& traffic) {
  return start_call(vc, called, sap, false, now, out, traffic);
}

Result<uint32_t> CallManager::make_multipoint_call(VcId vc, std::string_view called, const SapSpec& sap, Time now,
                                                   CmOutput& out, const Traffic& traffic) {
  const Status s = start_call(vc, called, sap, true, now, out, one_way(traffic, true));
  if (s != Status::kPending) return miniport::fail(s);
  VcInfo* it = vcs_info_.find(vc.slot);
  // The first party may have failed already (nothing can, without a wire,
  // but keep the handle honest): 0 then.
  return !it->root || it->root->parties.empty() ? 0u : it->root->parties.front();
}

Status CallManager::start_call(VcId vc, std::string_view called, const SapSpec& sap, bool multipoint, Time now,
                               CmOutput& out, const Traffic& traffic) {
  VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || vcs_.rx_vci(vc) == 0 || !afs_.usable(it->af)) return Status::kFailure;
  if (it->call || it->pvc || it->root) return Status::kCallActive;
  const std::string addr(called);
  auto mac = resolve_called(addr, sap);
  if (!mac) return mac.error();
  if (at_call_limit(*mac)) return Status::kResources;
  if (!fits(traffic)) {
    // Admission: the link cannot carry it next to what calls hold (cause 49).
    ClientEvent e{ClientEvent::Kind::kMakeCallComplete};
    e.client = it->client;
    e.vc = vc;
    e.cause = cause::kQosUnavailable;
    e.status = status_for_cause(e.cause);
    e.peer_address = addr;
    e.traffic = traffic;
    out.events.push_back(e);
    return Status::kPending;
  }
  const uint32_t ref = next_ref_;
  next_ref_ = next_ref_ % 0x7FFFFFFF + 1;
  const Key k{*mac, ref, true, 0};
  CallActions acts;
  Call c{.fsm = CallFsm::outgoing(ref, now, cfg_.timers, acts), .peer = *mac, .ref = ref,
         .peer_name = names_.acquire(addr), .vc = vc, .client = it->client, .af = it->af, .originated = true};
  if (multipoint) {
    c.p2mp = true;
    c.party = next_party_++;
    it->root = std::make_unique<Root>(Root{ref, 1, {c.party}, traffic});
    parties_[c.party] = k;
  } else {
    it->call = k;
  }
  c.traffic = traffic;
  Call& placed = place(k, std::move(c));
  reserve(placed, traffic);
  afs_.add(it->af, Held::kCall);
  setup_sap_ = &sap;  // the SETUP leaves in this run
  run(k, acts, now, out);
  setup_sap_ = nullptr;
  return Status::kPending;
}

Result<MacAddress> CallManager::resolve_called(const std::string& addr, const SapSpec& sap) const {
  if (!valid_node_address(bytes(addr))) return miniport::fail(Status::kInvalidAddress);
  if (!valid_sap(SapValue{sap.type, sap.value})) return miniport::fail(Status::kInvalidData);
  auto mac = neighbors_.lookup(addr);
  if (!mac) return miniport::fail(Status::kInvalidAddress);  // no HELLO from such a node
  return *mac;
}

Result<uint32_t> CallManager::add_party(VcId vc, std::string_view called, const SapSpec& sap, Time now,
                                        CmOutput& out, const std::optional<Traffic>& traffic) {
  VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || vcs_.rx_vci(vc) == 0 || !it->root) return miniport::fail(Status::kFailure);
  VcInfo& info = *it;
  Root& v = *info.root;
  bool up = false;
  uint64_t used = 0;  // leaf indexes in use
  for (uint32_t p : v.parties) {
    const Call* c = find(parties_.at(p));
    if (!c) continue;
    up |= c->fsm.state() == CallState::kActive;
    used |= uint64_t{1} << c->leaf;
  }
  if (!up) return miniport::fail(Status::kFailure);  // R56: on a call that is up
  if (v.parties.size() >= miniport::kMaxLeaves) return miniport::fail(Status::kResources);
  const std::string addr(called);
  const MacAddress mac = COEMU_TRY(resolve_called(addr, sap));
  if (at_call_limit(mac)) return miniport::fail(Status::kResources);
  // R57: every party gets the VC's FLOWSPECs, since data goes on the VC, at
  // one rate, to every leaf. A party asked for with others has them reset
  // to the VC's, and its completion says so (CALL_PARAMETERS_CHANGED).
  const bool changed = traffic && !(one_way(*traffic, true) == v.traffic);
  if (!fits(v.traffic)) {
    // Each leaf's copy is a stream of its own on our link (cause 49).
    ClientEvent ev{ClientEvent::Kind::kAddPartyComplete};
    ev.client = info.client;
    ev.vc = vc;
    ev.party = next_party_++;
    ev.cause = cause::kQosUnavailable;
    ev.status = status_for_cause(ev.cause);
    ev.peer_address = addr;
    ev.multipoint = true;
    ev.traffic = v.traffic;
    ev.params_changed = changed;
    out.events.push_back(ev);
    return ev.party;
  }
  uint16_t e = v.next_endpoint;
  while (calls_.find(Key{mac, v.ref, true, e})) ++e;  // endpoint numbers wrap after 65535 parties
  v.next_endpoint = static_cast<uint16_t>(e + 1);
  const Key k{mac, v.ref, true, e};
  CallActions acts;
  Call c{.fsm = CallFsm::outgoing(v.ref, now, cfg_.timers, acts), .peer = mac, .endpoint = e, .ref = v.ref,
         .peer_name = names_.acquire(addr), .vc = vc, .client = info.client, .af = info.af, .originated = true,
         .p2mp = true, .via_add_party = true};
  c.party = next_party_++;
  c.leaf = static_cast<uint8_t>(std::countr_one(used));
  c.traffic = v.traffic;
  c.params_changed = changed;
  v.parties.push_back(c.party);
  parties_[c.party] = k;
  const uint32_t id = c.party;
  reserve(place(k, std::move(c)), v.traffic);
  afs_.add(info.af, Held::kCall);
  setup_sap_ = &sap;  // the ADD_PARTY leaves in this run
  run(k, acts, now, out);
  setup_sap_ = nullptr;
  return id;
}

size_t CallManager::parties(VcId vc) const {
  const VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || !it->root) return 0;
  size_t n = 0;
  for (uint32_t p : it->root->parties) {
    const Call* c = find(parties_.at(p));
    if (c && !c->client_drop) ++n;
  }
  return n;
}

size_t CallManager::other_live_parties(const VcInfo& v, uint32_t except) const {
  if (!v.root) return 0;
  size_t n = 0;
  for (uint32_t p : v.root->parties) {
    if (p == except) continue;
    const Call* c = find(parties_.at(p));
    if (!c || c->client_drop) continue;
    if (c->fsm.state() == CallState::kReleaseIndication || c->fsm.state() == CallState::kNull) continue;
    ++n;
  }
  return n;
}

Status CallManager::drop_party(uint32_t party, Time now, CmOutput& out) {
  auto pk = parties_.find(party);
  if (pk == parties_.end()) return Status::kFailure;
  const Key k = pk->second;
  Call* c = find(k);
  if (!c || c->client_drop) return Status::kFailure;  // dead, or its drop is under way
  if (parties(c->vc) <= 1) return Status::kFailure;   // R59: the last party goes with close_call
  c->client_drop = true;
  c->drop_mode = true;
  CallActions acts;
  if (!c->fsm.close(now, acts)) {
    c->client_drop = false;
    return Status::kFailure;
  }
  run(k, acts, now, out);
  return Status::kPending;
}

std::vector<CallManager::Key> CallManager::keys_of_call(const MacAddress& peer, uint32_t ref, bool originated) {
  std::vector<Key> keys;
  calls_.for_each_party(Key{peer, ref, originated, 0}, [&](const Key& k, const Call&) { keys.push_back(k); });
  return keys;
}

std::optional<MsgType> CallManager::party_wire_type(const Call& c, MsgType t) {
  switch (t) {
    case MsgType::kSetup: return c.via_add_party ? MsgType::kAddParty : MsgType::kSetup;
    case MsgType::kConnect: return c.via_add_party ? MsgType::kAddPartyAck : MsgType::kConnect;
    case MsgType::kConnectAck: return c.via_add_party ? std::nullopt : std::optional(MsgType::kConnectAck);
    case MsgType::kRelease: return c.drop_mode ? MsgType::kDropParty : MsgType::kRelease;
    case MsgType::kReleaseComplete:
      if (c.answer_drop) return MsgType::kDropPartyAck;
      if (c.rejecting) return MsgType::kAddPartyReject;
      return MsgType::kReleaseComplete;
    default: return t;
  }
}

ClientEvent::Kind CallManager::root_party_event(const Call& c, CallIndication i) const {
  switch (i) {
    case CallIndication::kMakeCallComplete:
      return c.via_add_party ? ClientEvent::Kind::kAddPartyComplete : ClientEvent::Kind::kMakeCallComplete;
    case CallIndication::kIncomingClose: {
      // R60: a party that is not the last leaves as an incoming drop.
      const VcInfo* v = vcs_info_.find(c.vc.slot);
      const bool others = v && other_live_parties(*v, c.party) > 0;
      return others ? ClientEvent::Kind::kIncomingDropParty : ClientEvent::Kind::kIncomingClose;
    }
    case CallIndication::kCloseComplete:
      return c.client_drop ? ClientEvent::Kind::kDropPartyComplete : ClientEvent::Kind::kCloseCallComplete;
    case CallIndication::kIncomingCall: return ClientEvent::Kind::kIncomingCall;
    case CallIndication::kCallConnected: return ClientEvent::Kind::kCallConnected;
  }
  return ClientEvent::Kind::kCloseCallComplete;
}

std::optional<CallManager::Key> CallManager::call_on(VcId vc) {
  VcInfo* it = vcs_info_.find(vc.slot);
  if (!it || !it->call || vcs_.rx_vci(vc) == 0 || !find(*it->call))
    return std::nullopt;
  return it->call;
}

Status CallManager::incoming_call_complete(VcId vc, Status answer, Time now, CmOutput& out,
                                           const std::optional<Traffic>& granted) {
  const auto k = call_on(vc);
  if (!k) return Status::kFailure;
  Call* c = find(*k);
  if (granted && answer == Status::kSuccess) {
    if (c->fsm.state() != CallState::kCallPresent && c->fsm.state() != CallState::kIncomingProceeding)
      return Status::kFailure;
    // R57: a leaf takes the root's stream as it comes (one rate for every
    // leaf) or refuses the party.
    if (c->p2mp && !(one_way(*granted, false) == c->traffic)) return Status::kInvalidData;
    // The callee may lower what was asked, never raise it (R42).
    if (granted->transmit.token_rate > c->traffic.transmit.token_rate ||
        granted->receive.token_rate > c->traffic.receive.token_rate)
      return Status::kInvalidData;
    c->traffic = *granted;
    reserve(*c, *granted);
    // R33: the VC takes the new parameters before CONNECT leaves.
    (void)vcs_.activate(c->vc, vc_params(*c, c->peer_vci));
  }
  CallActions acts;
  if (answer == Status::kPending) {
    // R51: the client answers later; the caller hears CALL_PROCEEDING.
    if (c->via_add_party || !c->fsm.defer(now, acts)) return Status::kFailure;
    run(*k, acts, now, out);
    return Status::kSuccess;
  }
  if (c->via_add_party && answer != Status::kSuccess) c->rejecting = true;
  const bool ok = answer == Status::kSuccess ? c->fsm.accept(now, acts) : c->fsm.reject(refusal_cause(answer), acts);
  if (!ok) {
    c->rejecting = false;
    return Status::kFailure;
  }
  if (ok && c->via_add_party && answer == Status::kSuccess) {
    // ADD_PARTY_ACK is answered by nothing: the party is up once it leaves.
    Message up;
    up.type = MsgType::kConnectAck;
    c->fsm.on_message(up, now, acts);
  }
  run(*k, acts, now, out);
  return Status::kSuccess;
}

void CallManager::qos_event(const Call& c, ClientEvent::Kind kind, Status status, uint8_t cause_code, CmOutput& out) {
  ClientEvent e{kind};
  e.client = c.client;
  e.vc = c.vc;
  e.status = status;
  e.cause = cause_code;
  e.traffic = c.traffic;
  e.params_changed = c.params_changed;
  e.peer_address = peer_address(c);
  out.events.push_back(e);
}

Status CallManager::enquire_call(VcId vc, Time now, CmOutput& out) {
  const auto k = call_on(vc);
  if (!k) return Status::kFailure;
  CallActions acts;
  find(*k)->fsm.enquire(now, acts);
  run(*k, acts, now, out);
  return Status::kSuccess;
}

Status CallManager::modify_call_qos(VcId vc, const Traffic& wanted, Time now, CmOutput& out) {
  const auto k = call_on(vc);
  if (!k) return Status::kFailure;
  Call* c = find(*k);
  if (c->p2mp) return Status::kFailure;  // per-party FLOWSPECs are not offered (R57: the CM may fail)
  const CallState st = c->fsm.state();
  if (c->modify_old) return Status::kClosing;
  if (!c->originated && (st == CallState::kCallPresent || st == CallState::kIncomingProceeding)) {
    // R52: negotiating before the answer; CONNECT will carry it.
    if (!fits(wanted, c)) {
      qos_event(*c, ClientEvent::Kind::kModifyQosComplete, status_for_cause(cause::kQosUnavailable),
                cause::kQosUnavailable, out);
      return Status::kPending;
    }
    c->traffic = wanted;
    reserve(*c, wanted);
    (void)vcs_.activate(c->vc, vc_params(*c, c->peer_vci));
    qos_event(*c, ClientEvent::Kind::kModifyQosComplete, Status::kSuccess, 0, out);
    return Status::kPending;
  }
  if (st != CallState::kActive) return Status::kFailure;
  if (!fits(wanted, c)) {  // our own link cannot take it: nothing is sent (R62)
    qos_event(*c, ClientEvent::Kind::kModifyQosComplete, status_for_cause(cause::kQosUnavailable),
              cause::kQosUnavailable, out);
    return Status::kPending;
  }
  // Held while the peer decides, so no other call takes the room meanwhile.
  // (The larger of what each holds of the link, whatever its service type:
  // the old FLOWSPECs stay in force until the answer.)
  c->modify_old = std::make_unique<Traffic>(c->traffic);
  reserve(*c, std::max(reserved_rate(c->traffic.transmit), reserved_rate(wanted.transmit)),
          std::max(reserved_rate(c->traffic.receive), reserved_rate(wanted.receive)));
  c->traffic = wanted;  // what we asked for, until the answer
  Message m;
  m.type = MsgType::kModifyRequest;
  m.call_ref = wire_call_ref(c->ref, c->originated);
  m.traffic = wanted;
  send_message(c->peer, m, now, out);
  return Status::kPending;
}

void CallManager::on_modify(const MacAddress& src, Call& c, const Message& m, Time now, CmOutput& out) {
  const uint32_t reply_ref = m.call_ref ^ kCallRefToOriginator;
  switch (m.type) {
    case MsgType::kModifyRequest: {
      // R63: the VC takes the proposal first; only then is the client told.
      const Traffic proposed = swapped(*m.traffic);
      if (c.fsm.state() != CallState::kActive || !fits(proposed, &c)) {
        Message r;
        r.type = MsgType::kModifyReject;
        r.call_ref = reply_ref;
        r.cause = CauseIe{c.fsm.state() != CallState::kActive ? cause::kMessageNotCompatibleWithState
                                                               : cause::kQosUnavailable,
                          1};
        send_message(src, r, now, out);
        return;
      }
      c.traffic = proposed;
      reserve(c, proposed);
      (void)vcs_.activate(c.vc, vc_params(c, c.peer_vci));
      Message a;
      a.type = MsgType::kModifyAck;
      a.call_ref = reply_ref;
      a.traffic = c.traffic;
      send_message(src, a, now, out);
      qos_event(c, ClientEvent::Kind::kIncomingQosChange, Status::kSuccess, 0, out);
      return;
    }
    case MsgType::kModifyAck: {
      if (!c.modify_old) return;  // not ours: stale
      const Traffic granted = m.traffic ? swapped(*m.traffic) : c.traffic;
      c.modify_old.reset();
      c.params_changed = !(granted == c.traffic);  // the peer granted other than we asked
      c.traffic = granted;
      reserve(c, granted);
      // R61: re-activated with the new parameters before the client hears.
      (void)vcs_.activate(c.vc, vc_params(c, c.peer_vci));
      qos_event(c, ClientEvent::Kind::kModifyQosComplete, Status::kSuccess, 0, out);
      return;
    }
    case MsgType::kModifyReject: {
      if (!c.modify_old) return;
      // R62: the old parameters stay in force.
      c.traffic = *c.modify_old;
      c.modify_old.reset();
      reserve(c, c.traffic);
      const uint8_t why = m.cause ? m.cause->cause : cause::kNormalUnspecified;
      qos_event(c, ClientEvent::Kind::kModifyQosComplete,
                status_for_cause(why) == Status::kSuccess ? Status::kFailure : status_for_cause(why), why, out);
      return;
    }
    default:
      return;
  }
}

Status CallManager::close_call(VcId vc, Time now, CmOutput& out) {
  if (VcInfo* it = vcs_info_.find(vc.slot); it && it->pvc && vcs_.rx_vci(vc) != 0)
    return close_pvc_call(vc, *it, out);
  if (VcInfo* it = vcs_info_.find(vc.slot); it && it->root && vcs_.rx_vci(vc) != 0) {
    // R59: a multipoint call closes with its last party.
    if (parties(vc) != 1) return Status::kFailure;
    for (uint32_t p : it->root->parties) {
      const Key k = parties_.at(p);
      Call* c = find(k);
      if (!c || c->client_drop) continue;
      CallActions acts;
      if (!c->fsm.close(now, acts)) return Status::kFailure;
      run(k, acts, now, out);
      return Status::kPending;
    }
    return Status::kFailure;
  }
  const auto k = call_on(vc);
  if (!k) return Status::kFailure;
  Call* c = find(*k);
  if (c->p2mp) {
    // A leaf that is not its call's last party on this node leaves with
    // DROP_PARTY; the last one with RELEASE.
    size_t here = 0;
    for (const Key& o : keys_of_call(k->peer, k->ref, false))
      if (find(o)->fsm.state() != CallState::kNull) ++here;
    c->drop_mode = here > 1;
  }
  CallActions acts;
  if (!c->fsm.close(now, acts)) return Status::kFailure;  // R90: a close is under way
  run(*k, acts, now, out);
  return Status::kPending;
}

void CallManager::queue_deadlines(uint32_t slot, Call& c) {
  if (!c.fsm.take_rearmed()) return;
  for (auto t : {c.fsm.state_timer(), c.fsm.enquiry_timer()}) {
    if (!t) continue;
    deadlines_.emplace_back(*t, slot);
    std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
  }
}

void CallManager::pop_deadline() const {
  std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
  deadlines_.pop_back();
}

void CallManager::drop_stale_deadlines() const {
  while (!deadlines_.empty()) {
    const auto [at, slot] = deadlines_.front();
    if (const Call* c = calls_.at(slot); c && c->fsm.due_at(at)) return;
    pop_deadline();
  }
  // A quiet node gives back what a crowd of calls made the queue grow to.
  if (deadlines_.capacity() > 4096) deadlines_.shrink_to_fit();
}

void CallManager::forget_vc(uint32_t slot) {
  vcs_info_.erase(slot);
  vc_names_.erase(slot);
}

void CallManager::run(const Key& k, CallActions& acts, Time now, CmOutput& out) {
  struct Requeue {  // the call's new deadlines, once the actions are done
    CallManager& cm;
    const Key& k;
    ~Requeue() {
      const uint32_t slot = cm.calls_.find_slot(k);
      if (slot == CallTable<Call>::kNone) return;
      Call& c = *cm.calls_.at(slot);
      cm.settle_pending(c);
      cm.queue_deadlines(slot, c);
    }
  } requeue{*this, k};
  for (const CallAction& a : acts) {
    Call* c = find(k);
    if (!c) return;
    switch (a.kind) {
      case CallAction::Kind::kSend: {
        Message m;
        m.type = a.msg;
        if (c->p2mp) {
          auto t = party_wire_type(*c, a.msg);
          if (!t) break;
          // T399: an ADD_PARTY nobody answered is withdrawn with DROP_PARTY.
          if (c->originated && c->via_add_party && *t == MsgType::kReleaseComplete && a.cause &&
              a.cause->cause == cause::kRecoveryOnTimerExpiry)
            t = MsgType::kDropParty;
          m.type = *t;
          m.endpoint_ref = c->endpoint;
        }
        m.call_ref = wire_call_ref(c->ref, c->originated);
        m.cause = a.cause;
        m.call_state = a.state;
        const std::string& me = cfg_.node_address;
        if (a.msg == MsgType::kSetup) {
          m.called_party = bytes(peer_address(*c));
          m.calling_party = bytes(me);
          if (setup_sap_) m.sap = SapValue{setup_sap_->type, setup_sap_->value};
          m.vci = vcs_.rx_vci(c->vc);
          m.bearer = c->p2mp ? 2 : 1;
        } else if (a.msg == MsgType::kConnect) {
          m.vci = vcs_.rx_vci(c->vc);
        }
        if (a.msg == MsgType::kSetup || a.msg == MsgType::kConnect) m.traffic = c->traffic;
        send_message(c->peer, m, now, out);
        break;
      }
      case CallAction::Kind::kActivateVc:
        if (c->p2mp && c->originated) {
          // The root's VC sends one copy to each leaf (PROTOCOL.md 2).
          (void)vcs_.set_leaf(c->vc, c->leaf, c->peer, a.peer_vci);
          if (vcs_.state(c->vc) == miniport::VcState::kInactive) {
            miniport::VcParams p = vc_params(*c, a.peer_vci);  // shaped: each leaf gets the VC's rate
            p.receive = false;
            p.multipoint = true;
            (void)vcs_.activate(c->vc, p);
          }
        } else if (c->p2mp) {
          // Leaves never send on a point-to-multipoint circuit.
          (void)vcs_.activate(c->vc, miniport::VcParams{.peer = c->peer, .tx_vci = a.peer_vci, .transmit = false});
        } else {
          c->peer_vci = a.peer_vci;
          (void)vcs_.activate(c->vc, vc_params(*c, a.peer_vci));
        }
        break;
      case CallAction::Kind::kDeactivateVc:
        if (c->p2mp && c->originated) (void)vcs_.clear_leaf(c->vc, c->leaf);  // the VC goes with the last party
        else (void)vcs_.deactivate(c->vc);
        break;
      case CallAction::Kind::kIndicate: {
        ClientEvent e{ClientEvent::Kind::kCloseCallComplete};
        switch (a.indication) {
          case CallIndication::kMakeCallComplete: e.kind = ClientEvent::Kind::kMakeCallComplete; break;
          case CallIndication::kIncomingCall: e.kind = ClientEvent::Kind::kIncomingCall; break;
          case CallIndication::kCallConnected: e.kind = ClientEvent::Kind::kCallConnected; break;
          case CallIndication::kIncomingClose: e.kind = ClientEvent::Kind::kIncomingClose; break;
          case CallIndication::kCloseComplete: e.kind = ClientEvent::Kind::kCloseCallComplete; break;
        }
        if (c->p2mp && c->originated) {
          e.kind = root_party_event(*c, a.indication);
          e.party = c->party;
        }
        e.multipoint = c->p2mp;
        e.traffic = c->traffic;
        e.params_changed = c->params_changed;
        e.client = c->client;
        e.vc = c->vc;
        e.sap = c->incoming_sap;
        e.status = a.status;
        e.cause = a.cause ? a.cause->cause : 0;
        e.peer_address = peer_address(*c);
        out.events.push_back(std::move(e));
        break;
      }
      case CallAction::Kind::kFree: {
        unreserve(*c);
        const Call gone = std::move(*c);
        calls_.erase(k);
        unload(gone);
        names_.release(gone.peer_name);
        afs_.remove(gone.af, Held::kCall);
        if (gone.p2mp && gone.originated) {
          parties_.erase(gone.party);
          if (VcInfo* it = vcs_info_.find(gone.vc.slot); it) {
            if (it->root) std::erase(it->root->parties, gone.party);
            (void)vcs_.clear_leaf(gone.vc, gone.leaf);
            if (!it->root || it->root->parties.empty()) {
              // The last party took the call with it: the VC is the client's again.
              it->root.reset();
              if (vcs_.state(gone.vc) == miniport::VcState::kActive) (void)vcs_.deactivate(gone.vc);
            }
          }
          settle_closes(out);
          return;
        }
        if (VcInfo* it = vcs_info_.find(gone.vc.slot); it) it->call.reset();
        // A VC the CM made for an incoming call goes with the call, once
        // its deactivation has drained (R66).
        if (gone.cm_vc) retire_.push_back(gone.vc);
        settle_closes(out);
        return;
      }
    }
  }
}

void CallManager::send_message(const MacAddress& peer, const Message& m, Time now, CmOutput& out) {
  // On the stack, not zeroed: a message is encoded, handed to the transport
  // (which copies it) and forgotten, a few times per call.
  std::array<uint8_t, kMaxMessageBody> body;
  auto n = encode_message(m, body);
  if (!n) return;
  if (m.type == MsgType::kStatus) {
    ++c_.status_sent;
    if (m.cause && m.cause->cause == cause::kMessageNotCompatibleWithState) ++c_.msg_wrong_state;
  }
  Actions ta;
  if (transport_.send(peer, std::span(body).first(*n), now, ta)) flush(ta, now, out);
}

void CallManager::answer(const MacAddress& peer, MsgType type, uint32_t wire_ref, std::optional<CauseIe> cause,
                         std::optional<uint8_t> state, Time now, CmOutput& out) {
  Message m;
  m.type = type;
  m.call_ref = wire_ref;
  m.cause = cause;
  m.call_state = state;
  send_message(peer, m, now, out);
}

void CallManager::flush(Actions& ta, Time now, CmOutput& out) {
  for (OutFrame& f : ta.frames) out.frames.push_back(SigOut{f.peer, std::move(f.frame)});
  // Take the rest out first: handling them may send (and flush) again.
  auto delivered = std::move(ta.delivered);
  auto events = std::move(ta.events);
  ta.clear();
  for (const Delivered& d : delivered) on_message(d.peer, decode_message(d.body()), now, out);
  for (const PeerEvent& e : events) peer_gone(e.peer, now, out);
}

void CallManager::on_sig_frame(const MacAddress& src, std::span<const uint8_t> payload, Time now, CmOutput& out) {
  auto f = decode_sig(payload);
  if (!f) {
    ++c_.frames_malformed;
    if (payload.size() < kSigHeaderLen) ++c_.sig_short;
    else if (payload[0] != kSigVersion) ++c_.sig_bad_version;
    else if (f.error() == Status::kInvalidData) ++c_.sig_bad_kind;
    else ++c_.sig_bad_length;
    return;
  }
  if (f->hdr.kind == SigKind::kHello) {
    auto h = decode_hello(f->body);
    if (!h) {
      ++c_.hellos_dropped;
      return;
    }
    std::vector<NeighborEvent> nev;
    neighbors_.on_hello(src, f->hdr.incarnation, *h, now, nev);
    Actions ta;
    for (const NeighborEvent& e : nev) {
      switch (e.kind) {
        case NeighborEventKind::kUp:
        case NeighborEventKind::kRestarted:
          // A new incarnation drops the old association (and its calls).
          transport_.peer_incarnation(e.mac, f->hdr.incarnation, ta);
          break;
        case NeighborEventKind::kDown:
          peer_gone(e.mac, now, out);
          transport_.drop(e.mac, ta);
          break;
        case NeighborEventKind::kDuplicateAddress: {
          ClientEvent ce{ClientEvent::Kind::kNeighborEvent};
          ce.detail = "duplicate node address " + e.address + " announced by " + e.mac.to_string();
          out.events.push_back(std::move(ce));
          break;
        }
      }
    }
    flush(ta, now, out);
    return;
  }
  neighbors_.heard(src, now);
  Actions ta;
  transport_.on_frame(src, *f, now, ta);
  flush(ta, now, out);
}

void CallManager::on_message(const MacAddress& src, const Decoded& d, Time now, CmOutput& out) {
  if (d.verdict == Verdict::kMalformed) {
    ++c_.frames_malformed;
    ++c_.msg_malformed;
    return;
  }
  if (d.verdict == Verdict::kBadIe) ++c_.msg_bad_ie;
  const uint32_t wire_ref = d.msg.call_ref;
  const uint32_t reply_ref = wire_ref ^ kCallRefToOriginator;
  const bool to_originator = wire_ref & kCallRefToOriginator;
  // The call's first party; every party's key only where a message may
  // concern several (no list built per message otherwise).
  const Key named{src, wire_ref & ~kCallRefToOriginator, to_originator, 0};
  const Key k = calls_.first_party(named).value_or(named);
  auto keys = [&] { return keys_of_call(named.peer, named.ref, named.originated); };
  Call* c = find(k);
  if (d.verdict == Verdict::kUnknownType) {
    ++c_.msg_unknown_type;
    const uint8_t st = c ? static_cast<uint8_t>(c->fsm.state()) : 0;
    answer(src, MsgType::kStatus, reply_ref, CauseIe{d.cause, 1}, st, now, out);
    return;
  }
  const MsgType type = d.msg.type;
  if (type == MsgType::kRestart) {
    // RESTART clears one call or, with call_ref 0, every call with the sender.
    if (wire_ref == 0) {
      peer_gone(src, now, out);
      answer(src, MsgType::kRestartAck, 0, std::nullopt, std::nullopt, now, out);
    } else {
      for (const Key& pk : keys()) {  // every party of the call
        if (Call* pc = find(pk)) {
          CallActions acts;
          pc->fsm.peer_lost(acts);
          run(pk, acts, now, out);
        }
      }
      answer(src, MsgType::kRestartAck, reply_ref, std::nullopt, std::nullopt, now, out);
    }
    return;
  }
  if (!c) {
    switch (on_unknown_call_ref(type, wire_ref)) {
      case UnknownCallRef::kNewCall:
        if (d.verdict == Verdict::kBadIe) {
          ++c_.calls_refused;
          if (type == MsgType::kAddParty)
            answer_party(src, MsgType::kAddPartyReject, reply_ref, d.msg.endpoint_ref.value_or(0), d.cause, now, out);
          else
            answer(src, MsgType::kReleaseComplete, reply_ref, CauseIe{d.cause, 1}, std::nullopt, now, out);
        } else {
          // ADD_PARTY for a call we do not know is a new multipoint call (4).
          on_setup(src, d.msg, now, out, type == MsgType::kAddParty);
        }
        return;
      case UnknownCallRef::kReleaseComplete81:
        ++c_.msg_unknown_call;
        answer(src, MsgType::kReleaseComplete, reply_ref, CauseIe{cause::kInvalidCallRef, 1}, std::nullopt, now,
               out);
        return;
      case UnknownCallRef::kRestartAck:
        answer(src, MsgType::kRestartAck, reply_ref, std::nullopt, std::nullopt, now, out);
        return;
      case UnknownCallRef::kIgnore:
        ++c_.msg_unknown_call;
        return;
    }
  }
  Message m = d.msg;
  if (d.verdict == Verdict::kBadIe) {
    switch (type) {
      case MsgType::kRelease:
      case MsgType::kReleaseComplete:
      case MsgType::kDropParty:
        m.cause = CauseIe{cause::kNormalUnspecified, 1};  // still clears; a bad CAUSE reads as 31
        break;
      case MsgType::kStatus:
      case MsgType::kStatusEnquiry:
        return;  // never answer a STATUS with a STATUS
      case MsgType::kModifyRequest:
        answer(src, MsgType::kModifyReject, reply_ref, CauseIe{d.cause, 1}, std::nullopt, now, out);
        return;
      default:
        answer(src, MsgType::kStatus, reply_ref, CauseIe{d.cause, 1}, static_cast<uint8_t>(c->fsm.state()), now,
               out);
        return;
    }
  }
  switch (type) {
    case MsgType::kAddParty: case MsgType::kAddPartyAck: case MsgType::kAddPartyReject:
    case MsgType::kDropParty: case MsgType::kDropPartyAck:
      return on_party_message(src, keys(), m, now, out);
    default:
      if (c->p2mp) return on_party_message(src, keys(), m, now, out);
      break;
  }
  if (type == MsgType::kModifyRequest || type == MsgType::kModifyAck || type == MsgType::kModifyReject)
    return on_modify(src, *c, m, now, out);
  if (type == MsgType::kSetup) {
    // A second SETUP on a known call (4.2 step 5).
    answer(src, MsgType::kStatus, reply_ref, CauseIe{cause::kMessageNotCompatibleWithState, 1},
           static_cast<uint8_t>(c->fsm.state()), now, out);
    return;
  }
  if (type == MsgType::kConnect && m.traffic && c->originated &&
      (c->fsm.state() == CallState::kCallInitiated || c->fsm.state() == CallState::kOutgoingProceeding)) {
    // What the callee granted, seen from our side (R42: changed if lowered).
    const Traffic granted = swapped(*m.traffic);
    if (!(granted == c->traffic)) {
      c->params_changed = true;
      c->traffic = granted;
      reserve(*c, granted);
    }
  }
  CallActions acts;
  c->fsm.on_message(m, now, acts);
  run(k, acts, now, out);
}

void CallManager::answer_party(const MacAddress& peer, MsgType type, uint32_t wire_ref, uint16_t endpoint,
                               uint8_t c, Time now, CmOutput& out) {
  Message m;
  m.type = type;
  m.call_ref = wire_ref;
  m.endpoint_ref = endpoint;
  m.cause = CauseIe{c, 1};
  send_message(peer, m, now, out);
}

bool CallManager::takes_less(const Call& c, const Message& m) {
  // The leaf's TRAFFIC as we see it: its receive FLOWSPEC is our transmit.
  return c.originated && m.traffic && !(swapped(*m.traffic).transmit == c.traffic.transmit);
}

void CallManager::refuse_short_party(const Key& k, Time now, CmOutput& out) {
  // R57: the VC goes at one rate to every leaf, so a leaf that takes less
  // cannot be a party: it is cleared there, and our client hears cause 49.
  Call& c = *find(k);
  const uint32_t ref = wire_call_ref(c.ref, true);
  if (c.via_add_party) answer_party(c.peer, MsgType::kDropParty, ref, c.endpoint, cause::kQosUnavailable, now, out);
  else answer(c.peer, MsgType::kRelease, ref, CauseIe{cause::kQosUnavailable, 1}, std::nullopt, now, out);
  Message fm;
  fm.type = MsgType::kReleaseComplete;
  fm.call_ref = ref ^ kCallRefToOriginator;
  fm.cause = CauseIe{cause::kQosUnavailable, 1};
  CallActions acts;
  c.fsm.on_message(fm, now, acts);
  run(k, acts, now, out);
}

void CallManager::on_party_message(const MacAddress& src, const std::vector<Key>& keys, const Message& m, Time now,
                                   CmOutput& out) {
  const Key& first = keys.front();
  const Call* fc = find(first);
  const uint32_t reply_ref = m.call_ref ^ kCallRefToOriginator;
  auto wrong_state = [&] {  // 4.2 step 5
    answer(src, MsgType::kStatus, reply_ref, CauseIe{cause::kMessageNotCompatibleWithState, 1},
           static_cast<uint8_t>(fc->fsm.state()), now, out);
  };
  auto deliver = [&](const Key& pk, const Message& fm) {
    if (Call* c = find(pk)) {
      CallActions acts;
      c->fsm.on_message(fm, now, acts);
      run(pk, acts, now, out);
    }
  };
  const uint16_t e = m.endpoint_ref.value_or(0);
  switch (m.type) {
    case MsgType::kAddParty:
      // One more party of a call we are a leaf of (4); ADD_PARTY on a
      // point-to-point call, to the root, or naming a party that exists: 101.
      if (first.originated || !fc->p2mp || find(Key{src, first.ref, false, e})) return wrong_state();
      return on_setup(src, m, now, out, true);
    case MsgType::kSetup:
      return wrong_state();
    case MsgType::kAddPartyAck:
    case MsgType::kAddPartyReject:
    case MsgType::kDropParty:
    case MsgType::kDropPartyAck: {
      if (!fc->p2mp) return wrong_state();
      const Key pk{src, first.ref, first.originated, e};
      Call* c = find(pk);
      if (!c) {
        // DROP_PARTY naming an unknown party is acked with cause 81 (4).
        if (m.type == MsgType::kDropParty)
          answer_party(src, MsgType::kDropPartyAck, reply_ref, e, cause::kInvalidCallRef, now, out);
        else if (m.type != MsgType::kDropPartyAck)
          wrong_state();
        return;
      }
      if (m.type == MsgType::kAddPartyAck && takes_less(*c, m)) return refuse_short_party(pk, now, out);
      // The party's call machine reads them as CONNECT / RELEASE /
      // RELEASE_COMPLETE.
      Message fm = m;
      if (m.type == MsgType::kAddPartyAck) fm.type = MsgType::kConnect;
      else if (m.type == MsgType::kDropParty) fm.type = MsgType::kRelease, c->answer_drop = true;
      else fm.type = MsgType::kReleaseComplete;
      return deliver(pk, fm);
    }
    case MsgType::kConnect:
    case MsgType::kConnectAck:
      // For the party offered with SETUP.
      for (const Key& pk : keys) {
        if (find(pk)->via_add_party) continue;
        if (m.type == MsgType::kConnect && takes_less(*find(pk), m)) return refuse_short_party(pk, now, out);
        return deliver(pk, m);
      }
      return wrong_state();
    case MsgType::kRelease:
    case MsgType::kReleaseComplete:
      // Every party of the call with that node.
      for (const Key& pk : keys) deliver(pk, m);
      return;
    default:
      return deliver(first, m);
  }
}

bool CallManager::admit_setup(const MacAddress& peer, Time now) {
  const CmLimits& lim = cfg_.limits;
  auto it = load_.find(peer);
  if (it != load_.end()) {
    if (lim.calls_per_peer != 0 && it->second.calls >= lim.calls_per_peer) return false;
    if (lim.pending_per_peer != 0 && it->second.pending >= lim.pending_per_peer) return false;
  }
  if (lim.setups_per_second == 0) return true;
  // The entry goes again when no call comes of the SETUP (on_setup's
  // end), so a flood from many forged MACs leaves nothing behind; a peer
  // with no live calls starts with a full bucket.
  if (it == load_.end()) it = load_.try_emplace(peer).first;
  PeerLoad& p = it->second;
  if (!p.bucket_set) {
    p.setups.reset(lim.setups_per_second, lim.setups_per_second, now);
    p.bucket_set = true;
  }
  return p.setups.take(1, now);
}

bool CallManager::at_call_limit(const MacAddress& peer) const {
  if (cfg_.limits.calls_per_peer == 0) return false;
  auto it = load_.find(peer);
  return it != load_.end() && it->second.calls >= cfg_.limits.calls_per_peer;
}

CallManager::Call& CallManager::place(const Key& k, Call&& c) {
  PeerLoad& p = load_[c.peer];
  ++p.calls;
  if (c.pending_in) ++p.pending;
  return *calls_.at(calls_.emplace(k, std::move(c)));
}

void CallManager::settle_pending(Call& c) {
  if (!c.pending_in) return;
  switch (c.fsm.state()) {
    case CallState::kCallPresent:
    case CallState::kIncomingProceeding:
    case CallState::kConnectRequest:
      return;  // still half-open
    default:
      break;
  }
  c.pending_in = false;
  if (auto it = load_.find(c.peer); it != load_.end()) --it->second.pending;
}

void CallManager::unload(const Call& gone) {
  auto it = load_.find(gone.peer);
  if (it == load_.end()) return;
  if (gone.pending_in) --it->second.pending;
  if (--it->second.calls == 0) load_.erase(it);
}

void CallManager::on_setup(const MacAddress& src, const Message& m, Time now, CmOutput& out, bool add_party) {
  struct DropIdle {  // a peer whose SETUP made no call keeps no load entry
    std::map<MacAddress, PeerLoad, MacLess>& load;
    const MacAddress& peer;
    ~DropIdle() {
      if (auto it = load.find(peer); it != load.end() && it->second.calls == 0) load.erase(it);
    }
  } drop_idle{load_, src};
  const uint32_t reply_ref = m.call_ref | kCallRefToOriginator;
  const bool p2mp = add_party || m.bearer.value_or(1) == 2;
  const uint16_t endpoint = p2mp ? m.endpoint_ref.value_or(0) : 0;
  auto refuse = [&](uint8_t c) {
    ++c_.calls_refused;
    if (add_party) answer_party(src, MsgType::kAddPartyReject, reply_ref, endpoint, c, now, out);
    else answer(src, MsgType::kReleaseComplete, reply_ref, CauseIe{c, 1}, std::nullopt, now, out);
  };
  if (!admit_setup(src, now)) {
    ++c_.setups_limited;
    return refuse(cause::kResourceUnavailable);
  }
  // Step 6: the called party is checked before the SAP (cause 1 wins over 88).
  if (!m.called_party ||
      !std::equal(m.called_party->begin(), m.called_party->end(), cfg_.node_address.begin(), cfg_.node_address.end()))
    return refuse(cause::kUnallocatedNumber);
  auto sap = saps_.find_for_call(*m.sap);
  if (!sap) return refuse(cause::kIncompatibleDestination);
  Traffic offered = m.traffic ? swapped(*m.traffic) : Traffic{};
  if (p2mp) offered = one_way(offered, false);  // a leaf only receives
  if (!fits(offered)) return refuse(cause::kQosUnavailable);  // admission (cause 49)
  auto af_it = sap_af_.find(sap->slot);
  if (af_it == sap_af_.end() || !afs_.usable(af_it->second)) return refuse(cause::kIncompatibleDestination);
  const ClientId client = saps_.client(*sap);
  // R27: the CM creates the VC for an incoming call, owned by the SAP's client.
  auto vc = vcs_.create(client);
  if (!vc) return refuse(cause::kResourceUnavailable);
  std::string peer_address;
  if (m.calling_party) peer_address.assign(m.calling_party->begin(), m.calling_party->end());
  else if (const Neighbor* n = neighbors_.by_mac(src)) peer_address = n->address;
  const Key k{src, m.call_ref, false, endpoint};
  CallActions acts;
  Call c{.fsm = CallFsm::incoming(m.call_ref, *m.vci, cfg_.timers, acts), .peer = src, .endpoint = endpoint,
         .ref = m.call_ref, .peer_name = names_.acquire(peer_address), .vc = *vc, .client = client,
         .af = af_it->second, .incoming_sap = *sap, .cm_vc = true, .p2mp = p2mp, .via_add_party = add_party};
  c.traffic = offered;
  c.pending_in = true;
  reserve(place(k, std::move(c)), offered);
  vcs_info_.put(vc->slot, VcInfo{af_it->second, client, k}).gen = vc->gen;
  afs_.add(af_it->second, Held::kCall);
  afs_.add(af_it->second, Held::kCmVc);
  ClientEvent created{ClientEvent::Kind::kCreateVc};  // R28: the client hears of the VC first
  created.client = client;
  created.af = af_it->second;
  created.vc = *vc;
  out.events.push_back(created);
  run(k, acts, now, out);
}

bool CallManager::on_vc_status(const miniport::StatusIndication& ind, CmOutput& out) {
  VcInfo* it = vcs_info_.find(ind.vc.slot);
  if (!it || vcs_.owner(ind.vc) == 0) return false;  // deleted meanwhile
  ++c_.vc_indications;
  ClientEvent e{ClientEvent::Kind::kVcStatus};
  e.client = it->client;
  e.af = it->af;
  e.vc = ind.vc;
  e.indication = static_cast<uint32_t>(ind.code);
  e.errors = ind.errors;
  e.dropped = ind.dropped;
  out.events.push_back(std::move(e));
  return true;
}

void CallManager::on_link(bool up, Time now, CmOutput& out) {
  if (up == link_up_) return;
  link_up_ = up;
  // R83: whether calls can be made and dispatched, to every open AF.
  afs_.for_each_usable([&](AfOpenId id, uint64_t) {
    out.events.push_back(oid_request(id, up ? co_oid::kSignalingEnabled : co_oid::kSignalingDisabled));
  });
  if (!up) {
    std::vector<Key> keys;
    calls_.for_each([&](const Key& k, const Call&) { keys.push_back(k); });
    for (const Key& k : keys) {
      if (std::find(restart_on_link_up_.begin(), restart_on_link_up_.end(), k.peer) == restart_on_link_up_.end())
        restart_on_link_up_.push_back(k.peer);
      if (Call* c = find(k)) {
        CallActions acts;
        c->fsm.peer_lost(acts, cause::kDestinationOutOfOrder);
        run(k, acts, now, out);
      }
    }
    return;
  }
  start(now, out);  // announce ourselves again
  for (const MacAddress& peer : std::exchange(restart_on_link_up_, {}))
    answer(peer, MsgType::kRestart, 0, std::nullopt, std::nullopt, now, out);
}

void CallManager::peer_gone(const MacAddress& peer, Time now, CmOutput& out) {
  std::vector<Key> keys;
  calls_.for_each([&](const Key& k, const Call&) {
    if (k.peer == peer) keys.push_back(k);
  });
  for (const Key& k : keys) {
    Call* c = find(k);
    if (!c) continue;
    CallActions acts;
    c->fsm.peer_lost(acts);
    run(k, acts, now, out);
  }
}

void CallManager::on_timer(Time now, CmOutput& out) {
  for (ClientEvent& e : std::exchange(deferred_, {}))
    if (client_oids_.contains(e.request)) out.events.push_back(std::move(e));
  run_completions(now, out);
  if (neighbors_.hello_due(now)) start(now, out);
  std::vector<NeighborEvent> nev;
  neighbors_.on_timer(now, nev);
  Actions ta;
  for (const NeighborEvent& e : nev) {
    if (e.kind != NeighborEventKind::kDown) continue;
    peer_gone(e.mac, now, out);
    transport_.drop(e.mac, ta);
  }
  transport_.on_timer(now, ta);
  flush(ta, now, out);
  // Calls whose timers ran out (the queue's stale entries are skipped).
  std::vector<Key> due;
  while (!deadlines_.empty() && deadlines_.front().first <= now) {
    const auto [at, slot] = deadlines_.front();
    pop_deadline();
    if (const Call* c = calls_.at(slot); c && c->fsm.due_at(at)) due.push_back(CallTable<Call>::key_of(*c));
  }
  for (const Key& k : due) {
    if (Call* c = find(k)) {
      CallActions acts;
      c->fsm.on_timer(now, acts);
      run(k, acts, now, out);
    }
  }
  // CM-created VCs of freed calls go once their deactivation has drained.
  vcs_.poll_deactivations([](VcId) {});
  std::erase_if(retire_, [&](VcId vc) {
    if (vcs_.state(vc) != miniport::VcState::kInactive) return false;
    (void)vcs_.remove(vc);
    if (VcInfo* it = vcs_info_.find(vc.slot); it) {
      ClientEvent gone{ClientEvent::Kind::kDeleteVc};  // R31/R66: the client's handle dies here
      gone.client = it->client;
      gone.af = it->af;
      gone.vc = vc;
      out.events.push_back(gone);
      afs_.remove(it->af, Held::kCmVc);
      forget_vc(vc.slot);
    }
    return true;
  });
  settle_closes(out);
}

std::optional<Time> CallManager::next_deadline() const {
  std::optional<Time> d;
  auto take = [&](std::optional<Time> t) {
    if (t && (!d || *t < *d)) d = t;
  };
  take(neighbors_.next_deadline());
  take(transport_.next_deadline());
  drop_stale_deadlines();
  if (!deadlines_.empty()) take(deadlines_.front().first);
  for (const Completion& c : completions_) take(c.at);
  return d;
}

std::vector<CallView> CallManager::call_views(Time now) const {
  std::vector<CallView> out;
  calls_.for_each([&](const Key& k, const Call& c) {
    CallView v{peer_address(c), c.peer, k.ref, k.originated, c.p2mp, c.endpoint, c.party, c.fsm.state(),
               c.vc,           c.client, c.traffic, {}};
    if (auto t = c.fsm.state_timer()) {
      const char* name = "timer";
      switch (c.fsm.state()) {
        case CallState::kCallInitiated: name = c.via_add_party ? "T399" : "T303"; break;
        case CallState::kOutgoingProceeding: name = "T310"; break;
        case CallState::kConnectRequest: name = "T313"; break;
        case CallState::kReleaseRequest: name = c.drop_mode ? "T398" : "T308"; break;
        default: break;
      }
      v.timers.push_back({name, *t - now});
    }
    if (auto t = c.fsm.enquiry_timer()) v.timers.push_back({"T322", *t - now});
    out.push_back(std::move(v));
  });
  return out;
}

std::vector<VcView> CallManager::vc_views() const {
  std::vector<VcView> out;
  vcs_info_.for_each([&](uint32_t slot, const VcInfo& v) {
    auto name = vc_names_.find(slot);
    out.push_back(VcView{VcId{slot, v.gen}, v.client, v.call.has_value(), v.root != nullptr,
                         v.root ? v.root->parties.size() : 0, v.pvc,
                         name == vc_names_.end() ? std::string() : name->second});
  });
  return out;
}

uint8_t refusal_cause(Status answer) noexcept {
  switch (answer) {
    case Status::kResources: return cause::kResourceUnavailable;
    case Status::kIncompatableQos:
    case Status::kCellrateNotAvailable: return cause::kQosUnavailable;
    case Status::kInvalidSap: return cause::kIncompatibleDestination;
    case Status::kDestOutOfOrder: return cause::kDestinationOutOfOrder;
    case Status::kNoRouteToDestination: return cause::kNoRoute;
    default: return cause::kCallRejected;
  }
}

std::optional<Status> refusal_status(uint8_t c) noexcept {
  switch (c) {
    case cause::kCallRejected: return Status::kNotAccepted;
    case cause::kResourceUnavailable: return Status::kResources;
    case cause::kQosUnavailable: return Status::kIncompatableQos;
    case cause::kIncompatibleDestination: return Status::kInvalidSap;
    case cause::kDestinationOutOfOrder: return Status::kDestOutOfOrder;
    case cause::kNoRoute: return Status::kNoRouteToDestination;
    default: return std::nullopt;
  }
}

}  // namespace cm
