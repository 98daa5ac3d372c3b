// The CoNDIS rules of condis-spec sections 1-6 and 9 as the call manager's
// clients see them, on an explicit clock: each test carries its R-numbers,
// and sequence tests assert the exact order of the callbacks.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>

#include "cm_lab.h"

namespace cm {
namespace {

using miniport::VcState;

TEST(CondisRules, R8_R9_OneAddressFamilyTypePerCm) {
  Lab l;
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  EXPECT_EQ(afs.register_af(kCoemuAf).error(), Status::kFailure) << "a second registration of the type";
  EXPECT_EQ(l.a.afs().registered(), std::vector<uint32_t>{kCoemuAf}) << "the CM registered its AF";
  EXPECT_EQ(l.a.open_af(1, 0x1234).error(), Status::kFailure) << "an AF nobody registered";
}

TEST(CondisRules, R20_ManySapsPerClientAndNoVcForASap) {
  Lab l;
  l.start();
  AfOpenId af = l.b.open_af(2, kCoemuAf)->id;
  const uint32_t vcs = l.vcs_b.in_use();
  ASSERT_TRUE(l.b.register_sap(af, kSap42));
  ASSERT_TRUE(l.b.register_sap(af, SapSpec{1, {0, 43}}));
  ASSERT_TRUE(l.b.register_sap(af, SapSpec{2, {'e', 'c', 'h', 'o'}}));
  EXPECT_EQ(l.b.saps().size(), 3u);
  EXPECT_EQ(l.vcs_b.in_use(), vcs);
}

TEST(CondisRules, R25_DeregisteringASapLeavesItsCallsAlone) {
  Lab l;
  l.start();
  Answered c = answered_call(l);
  CmOutput out;
  ASSERT_EQ(l.b.deregister_sap(c.sap, out), Status::kPending);
  l.take(kMacB, out);
  EXPECT_EQ(l.vcs_a.state(c.vc_a), VcState::kActive);
  EXPECT_EQ(l.vcs_b.state(c.vc_b), VcState::kActive) << "the call received on the SAP stays up";
  // New calls to that SAP are refused now.
  VcId vc2 = *l.a.create_vc(l.a.open_af(1, kCoemuAf)->id);
  l.ev_a.clear();
  ASSERT_EQ(l.a.make_call(vc2, "beta", kSap42, l.now, out), Status::kPending);
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  ASSERT_NE(l.last(l.ev_a, Ev::kMakeCallComplete), nullptr);
  EXPECT_EQ(l.last(l.ev_a, Ev::kMakeCallComplete)->cause, cause::kIncompatibleDestination);
  // And the old call still closes normally.
  l.close(l.a, c.vc_a);
  EXPECT_NE(l.last(l.ev_b, Ev::kIncomingClose), nullptr);
}

TEST(CondisRules, R27_R28_R50_R51_IncomingCallGetsACmVcTheClientHearsOfFirst) {
  Lab l;
  l.start();
  AfOpenId af_b = l.b.open_af(2, kCoemuAf)->id;
  SapId sap = *l.b.register_sap(af_b, kSap42);
  VcId vc = *l.a.create_vc(l.a.open_af(1, kCoemuAf)->id);
  CmOutput out;
  ASSERT_EQ(l.a.make_call(vc, "beta", kSap42, l.now, out), Status::kPending);
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  ASSERT_EQ(Lab::kinds(l.ev_b), (std::vector<Ev>{Ev::kCreateVc, Ev::kIncomingCall}));
  const ClientEvent& created = l.ev_b[0];
  const ClientEvent& offered = l.ev_b[1];
  EXPECT_EQ(created.client, 2u);
  EXPECT_EQ(created.af, af_b) << "R27: made with the AF of the SAP's client";
  EXPECT_EQ(offered.vc, created.vc);
  EXPECT_EQ(offered.sap, sap);
  EXPECT_EQ(l.vcs_b.owner(offered.vc), 2u);
  EXPECT_EQ(l.vcs_b.state(offered.vc), VcState::kActive) << "R50: activated before the dispatch";
  EXPECT_EQ(l.b.delete_vc(offered.vc), Status::kNotAccepted) << "R30: a call is on it";
}

TEST(CondisRules, R29_R37_CreateAndCallNeedALiveAf) {
  Lab l;
  l.start();
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  VcId vc = *l.a.create_vc(af);
  ASSERT_EQ(l.a.delete_vc(vc), Status::kSuccess);
  ASSERT_EQ(l.a.close_af(af), Status::kSuccess);
  EXPECT_EQ(l.a.create_vc(af).error(), Status::kFailure) << "R29: a dead AF handle";
  EXPECT_EQ(l.a.create_vc(AfOpenId{}).error(), Status::kFailure) << "R29: a handle never issued";
  AfOpenId af2 = l.a.open_af(1, kCoemuAf)->id;
  VcId vc2 = *l.a.create_vc(af2);
  ASSERT_EQ(l.a.delete_vc(vc2), Status::kSuccess);
  CmOutput out;
  EXPECT_EQ(l.a.make_call(vc2, "beta", kSap42, l.now, out), Status::kFailure) << "R37: a VC that is gone";
}

TEST(CondisRules, R30_R31_R91_ADeletedVcIsDeadForEveryone) {
  Lab l;
  l.start();
  VcId vc = *l.a.create_vc(l.a.open_af(1, kCoemuAf)->id);
  ASSERT_EQ(l.a.delete_vc(vc), Status::kSuccess);
  CmOutput out;
  EXPECT_EQ(l.a.delete_vc(vc), Status::kFailure);
  EXPECT_EQ(l.a.make_call(vc, "beta", kSap42, l.now, out), Status::kFailure);
  EXPECT_EQ(l.a.close_call(vc, l.now, out), Status::kFailure);
  EXPECT_EQ(l.a.incoming_call_complete(vc, Status::kSuccess, l.now, out), Status::kFailure);
  EXPECT_EQ(l.vcs_a.owner(vc), 0u) << "the miniport's VC is gone too";
  // A new VC in the same slot does not answer to the old handle.
  VcId again = *l.a.create_vc(l.a.open_af(1, kCoemuAf)->id);
  EXPECT_FALSE(again == vc);
  EXPECT_EQ(l.a.delete_vc(vc), Status::kFailure);
}

TEST(CondisRules, R36_ANamedVcKeepsItsNameUntilDeleted) {
  Lab l;
  l.start();
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  VcId vc = *l.a.create_vc(af);
  VcId other = *l.a.create_vc(af);
  auto name = l.a.assign_instance_name(vc, "video");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->rfind("video-", 0), 0u) << *name;
  EXPECT_EQ(*l.a.assign_instance_name(vc, "else"), *name) << "a second call: the original name";
  auto second = l.a.assign_instance_name(other, "video");
  ASSERT_TRUE(second);
  EXPECT_NE(*second, *name) << "the index keeps names apart";
  EXPECT_EQ(l.a.assign_instance_name(VcId{}, "x").error(), Status::kFailure);
  EXPECT_EQ(l.a.assign_instance_name(*l.a.create_vc(af), "").error(), Status::kInvalidData);
  ASSERT_EQ(l.a.delete_vc(vc), Status::kSuccess);
  EXPECT_EQ(l.a.assign_instance_name(vc, "video").error(), Status::kFailure) << "gone with its VC";
}

TEST(CondisRules, R76_R79_R83_GetAddressesFromTheCmWithTheAfHandle) {
  Lab l;
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  std::array<uint8_t, 64> buf{};
  auto r = l.a.query_oid(af, co_oid::kGetAddresses, buf);
  ASSERT_EQ(r.status, Status::kSuccess);
  ASSERT_EQ(r.bytes_written, 12u + 5u);
  uint32_t head[3];
  std::memcpy(head, buf.data(), sizeof head);
  EXPECT_EQ(head[0], 1u) << "NumberOfAddressesAvailable";
  EXPECT_EQ(head[1], 1u) << "NumberOfAddresses";
  EXPECT_EQ(head[2], 5u) << "AddressSize";
  EXPECT_EQ(std::string(buf.begin() + 12, buf.begin() + 17), "alpha");
  std::array<uint8_t, 8> small{};
  r = l.a.query_oid(af, co_oid::kGetAddresses, small);
  EXPECT_EQ(r.status, Status::kInvalidLength);
  EXPECT_EQ(r.bytes_needed, 17u);
  EXPECT_EQ(r.bytes_written, 0u);
  EXPECT_EQ(l.a.query_oid(af, 0xFE0000FF, buf).status, Status::kInvalidOid);
  ASSERT_EQ(l.a.close_af(af), Status::kSuccess);
  EXPECT_EQ(l.a.query_oid(af, co_oid::kGetAddresses, buf).status, Status::kFailure) << "a dead AF handle";
}

// R84: a VC-scoped indication goes to the client that owns the VC, with its
// handle, and to no other; one for a VC the CM no longer has is ignored.
TEST(CondisRules, R84_AVcScopedIndicationReachesOnlyThatVcsClient) {
  Lab l;
  AfOpenId af1 = l.a.open_af(1, kCoemuAf)->id;
  (void)l.a.open_af(2, kCoemuAf);
  VcId vc = *l.a.create_vc(af1);
  miniport::StatusIndication ind{miniport::Indication::kVcReceiveError};
  ind.vc = vc;
  ind.errors = miniport::vc_error::kBufferOverrun;
  ind.dropped = 3;
  CmOutput out;
  ASSERT_TRUE(l.a.on_vc_status(ind, out));
  ASSERT_EQ(out.events.size(), 1u);
  const ClientEvent& e = out.events[0];
  EXPECT_EQ(e.kind, Ev::kVcStatus);
  EXPECT_EQ(e.client, 1u) << "the VC's client, not client 2";
  EXPECT_EQ(e.af, af1);
  EXPECT_EQ(e.vc, vc);
  EXPECT_EQ(e.indication, 0x40010015u);
  EXPECT_EQ(e.errors, miniport::vc_error::kBufferOverrun);
  EXPECT_EQ(e.dropped, 3u);
  EXPECT_EQ(l.a.counters().vc_indications, 1u);

  ASSERT_EQ(l.a.delete_vc(vc), Status::kSuccess);
  out = {};
  EXPECT_FALSE(l.a.on_vc_status(ind, out)) << "a stale handle";
  EXPECT_TRUE(out.events.empty());
  EXPECT_EQ(l.a.counters().vc_indications, 1u);
}

// R13/R83: once an open is done the CM tells the client its addresses
// changed (OID_CO_ADDRESS_CHANGE, an OID set from the CM with the AF), and
// the client queries them; R77: the client completes the request later.
TEST(CondisRules, R13_R77_R83_AfterOpenTheCmSetsAddressChangeAndTheClientCompletesIt) {
  Lab l;
  l.keep_oids = true;
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  l.pump(l.now + milliseconds(1));
  const ClientEvent* req = l.last(l.ev_a, Ev::kOidRequest);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->oid, co_oid::kAddressChange);
  EXPECT_EQ(req->af, af);
  EXPECT_EQ(req->client, 1u);
  EXPECT_EQ(l.a.oids_outstanding(), 1u);
  std::array<uint8_t, 64> buf{};
  EXPECT_EQ(l.a.query_oid(af, co_oid::kGetAddresses, buf).status, Status::kSuccess);
  EXPECT_EQ(l.a.oid_request_complete(req->request, Status::kSuccess), Status::kSuccess);
  EXPECT_EQ(l.a.oids_outstanding(), 0u);
  EXPECT_EQ(l.a.counters().client_oids_completed, 1u);
  EXPECT_EQ(l.a.oid_request_complete(req->request, Status::kSuccess), Status::kFailure) << "answered already";
  EXPECT_EQ(l.a.oid_request_complete(999, Status::kSuccess), Status::kFailure) << "never asked";

  // A pended open hears it after its completion.
  CmConfig pend;
  pend.open_af_pends = milliseconds(5);
  Lab p(pend);
  p.keep_oids = true;
  ASSERT_TRUE(p.a.open_af(1, kCoemuAf)->pending);
  p.pump(p.now + milliseconds(10));
  ASSERT_EQ(p.ev_a.size(), 2u);
  EXPECT_EQ(p.ev_a[0].kind, Ev::kOpenAfComplete);
  EXPECT_EQ(p.ev_a[1].kind, Ev::kOidRequest);
}

// R83: the link going down disables signaling at every open AF, coming back
// enables it (OID_CO_SIGNALING_DISABLED / _ENABLED); R78: requests overlap,
// and the client may answer them in any order.
TEST(CondisRules, R78_R83_LinkStateBecomesSignalingDisabledAndEnabledAnsweredInAnyOrder) {
  Lab l;
  l.keep_oids = true;
  AfOpenId af1 = l.a.open_af(1, kCoemuAf)->id;
  AfOpenId af2 = l.a.open_af(2, kCoemuAf)->id;
  l.pump(l.now + milliseconds(1));
  CmOutput out;
  l.a.on_link(false, l.now, out);
  l.take(kMacA, out);
  l.a.on_link(true, l.now, out);
  l.take(kMacA, out);
  std::vector<const ClientEvent*> reqs;
  for (const auto& e : l.ev_a)
    if (e.kind == Ev::kOidRequest) reqs.push_back(&e);
  ASSERT_EQ(reqs.size(), 6u) << "address change, disabled and enabled, for each of two opens";
  EXPECT_EQ(reqs[2]->oid, co_oid::kSignalingDisabled);
  EXPECT_EQ(reqs[3]->oid, co_oid::kSignalingDisabled);
  EXPECT_EQ(reqs[4]->oid, co_oid::kSignalingEnabled);
  EXPECT_EQ(reqs[5]->oid, co_oid::kSignalingEnabled);
  EXPECT_NE(reqs[2]->af, reqs[3]->af);
  EXPECT_TRUE((reqs[2]->af == af1 && reqs[3]->af == af2) || (reqs[2]->af == af2 && reqs[3]->af == af1));
  EXPECT_EQ(l.a.oids_outstanding(), 6u);
  for (auto it = reqs.rbegin(); it != reqs.rend(); ++it)
    EXPECT_EQ(l.a.oid_request_complete((*it)->request, Status::kSuccess), Status::kSuccess);
  EXPECT_EQ(l.a.oids_outstanding(), 0u);
  // A closed AF's requests go with it.
  l.a.on_link(false, l.now, out);
  l.take(kMacA, out);
  const uint64_t pending = l.last(l.ev_a, Ev::kOidRequest)->request;
  ASSERT_EQ(l.a.close_af(af1), Status::kSuccess);
  ASSERT_EQ(l.a.close_af(af2), Status::kSuccess);
  EXPECT_EQ(l.a.oids_outstanding(), 0u);
  EXPECT_EQ(l.a.oid_request_complete(pending, Status::kSuccess), Status::kFailure);
}

// R18: with the legacy option the CM asks its clients to close with
// OID_CO_AF_CLOSE instead of NotifyCloseAf; the R14 sequence follows.
TEST(CondisRules, R18_LegacyAfCloseOidAsksTheClientToClose) {
  CmConfig cfg;
  cfg.legacy_af_close = true;
  Lab l(cfg);
  l.keep_oids = true;
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  l.pump(l.now + milliseconds(1));
  CmOutput out;
  l.a.notify_close_afs(out);
  l.take(kMacA, out);
  EXPECT_FALSE(l.last(l.ev_a, Ev::kNotifyCloseAf));
  const ClientEvent* req = l.last(l.ev_a, Ev::kOidRequest);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->oid, co_oid::kAfClose);
  EXPECT_EQ(req->af, af);
  EXPECT_EQ(l.a.oid_request_complete(req->request, Status::kSuccess), Status::kSuccess);
  ASSERT_EQ(l.a.close_af(af), Status::kSuccess);
  EXPECT_TRUE(l.a.all_afs_closed());
}

// R68: a client configures a PVC on the CM's list with its AF handle; R44
// PERMANENT_VC: a client's make-call on it activates the VC with the PVC's
// labels without a signaling frame, and close_call deactivates it.
TEST(CondisRules, R68_R44_AddPvcThenAPermanentCallUsesItWithoutSignaling) {
  Lab l;
  l.start();
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  CmOutput out;
  const auto pvc = encode_co_pvc({.rx_vci = 100, .tx_vci = 200, .peer = kMacB});
  auto r = l.a.set_oid(af, co_oid::kAddPvc, pvc, out);
  ASSERT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(r.bytes_read, kCoPvcLen);
  EXPECT_EQ(l.a.pvcs(), 1u);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc, pvc, out).status, Status::kInvalidData) << "label 100 is configured";

  VcId vc = *l.a.create_vc(af);
  const size_t frames_before = l.wire.size();
  ASSERT_EQ(l.a.make_pvc_call(vc, 100, out), Status::kPending);
  l.take(kMacA, out);
  EXPECT_EQ(l.wire.size(), frames_before) << "a PVC needs no signaling";
  ASSERT_TRUE(l.last(l.ev_a, Ev::kMakeCallComplete));
  EXPECT_EQ(l.last(l.ev_a, Ev::kMakeCallComplete)->status, Status::kSuccess);
  EXPECT_EQ(l.last(l.ev_a, Ev::kMakeCallComplete)->vc, vc);
  // Active with the PVC's labels: receives on 100 from beta, sends to beta on 200.
  ASSERT_EQ(l.vcs_a.state(vc), miniport::VcState::kActive);
  auto hit = l.vcs_a.lookup_rx(100, kMacB);
  ASSERT_EQ(hit.miss, miniport::VcTable::RxMiss::kNone);
  EXPECT_EQ(hit.id, vc);
  l.vcs_a.rx_dropped(hit.id);
  auto grant = l.vcs_a.begin_tx(vc);
  ASSERT_EQ(grant.status, Status::kSuccess);
  EXPECT_EQ(grant.tx_vci, 200u);
  EXPECT_EQ(grant.peer, kMacB);
  l.vcs_a.cancel_tx(vc);

  VcId other = *l.a.create_vc(af);
  EXPECT_EQ(l.a.make_pvc_call(other, 100, out), Status::kNotAccepted) << "another VC uses the PVC";
  EXPECT_EQ(l.a.make_pvc_call(other, 101, out), Status::kInvalidData) << "no such PVC";
  EXPECT_EQ(l.a.make_pvc_call(vc, 100, out), Status::kCallActive);
  EXPECT_EQ(l.a.make_call(vc, "beta", kSap42, l.now, out), Status::kCallActive);
  EXPECT_EQ(l.a.delete_vc(vc), Status::kNotAccepted) << "R30: a call is on it";
  EXPECT_EQ(l.a.close_af(af), Status::kFailure) << "R14: calls and VCs remain";

  ASSERT_EQ(l.a.close_call(vc, l.now, out), Status::kPending);
  l.take(kMacA, out);
  EXPECT_EQ(l.wire.size(), frames_before);
  ASSERT_TRUE(l.last(l.ev_a, Ev::kCloseCallComplete));
  EXPECT_EQ(l.last(l.ev_a, Ev::kCloseCallComplete)->vc, vc);
  EXPECT_NE(l.vcs_a.state(vc), miniport::VcState::kActive);
  EXPECT_EQ(l.a.close_call(vc, l.now, out), Status::kFailure) << "no call any more";
  l.pump(l.now + milliseconds(10));  // the deactivation drains
  EXPECT_EQ(l.a.make_pvc_call(other, 100, out), Status::kPending) << "free for another VC now";
}

// R68: OID_CO_DELETE_PVC takes the PVC off the list; a call on it is closed
// by the CM (EMU: kIncomingClose with cause 27 and the VC deactivated at
// once; the client's close_call completes it). Bad sets get R79's statuses.
TEST(CondisRules, R68_R79_DeletePvcClosesTheCallOnItAndBadSetsAreRefused) {
  Lab l;
  AfOpenId af = l.a.open_af(1, kCoemuAf)->id;
  CmOutput out;
  const auto pvc = encode_co_pvc({.rx_vci = 100, .tx_vci = 200, .peer = kMacB});
  ASSERT_EQ(l.a.set_oid(af, co_oid::kAddPvc, pvc, out).status, Status::kSuccess);
  VcId vc = *l.a.create_vc(af);
  ASSERT_EQ(l.a.make_pvc_call(vc, 100, out), Status::kPending);
  l.take(kMacA, out);
  ASSERT_EQ(l.a.set_oid(af, co_oid::kDeletePvc, pvc, out).status, Status::kSuccess);
  l.take(kMacA, out);
  EXPECT_EQ(l.a.pvcs(), 0u);
  const ClientEvent* closed = l.last(l.ev_a, Ev::kIncomingClose);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->vc, vc);
  EXPECT_EQ(closed->cause, cause::kDestinationOutOfOrder);
  EXPECT_NE(closed->status, Status::kSuccess) << "R67: not SUCCESS, so the client must delete its VC";
  EXPECT_NE(l.vcs_a.state(vc), miniport::VcState::kActive) << "no data from the moment it is gone";
  ASSERT_EQ(l.a.close_call(vc, l.now, out), Status::kPending);
  l.take(kMacA, out);
  EXPECT_EQ(l.kinds(l.ev_a).back(), Ev::kCloseCallComplete);
  l.pump(l.now + milliseconds(10));
  EXPECT_EQ(l.a.delete_vc(vc), Status::kSuccess);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kDeletePvc, pvc, out).status, Status::kInvalidData) << "not configured";

  // Bad sets change nothing.
  std::array<uint8_t, 8> shrt{};
  auto r = l.a.set_oid(af, co_oid::kAddPvc, shrt, out);
  EXPECT_EQ(r.status, Status::kInvalidLength);
  EXPECT_EQ(r.bytes_needed, kCoPvcLen);
  auto bad_type = pvc;
  bad_type[8] = 9;
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc, bad_type, out).status, Status::kInvalidData);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc, encode_co_pvc({.rx_vci = 0, .tx_vci = 200, .peer = kMacB}), out).status,
            Status::kInvalidData);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc, encode_co_pvc({.rx_vci = miniport::kPvcVciLimit, .tx_vci = 200,
                                                            .peer = kMacB}), out).status,
            Status::kInvalidData);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc, encode_co_pvc({.rx_vci = 5, .tx_vci = 0, .peer = kMacB}), out).status,
            Status::kInvalidData);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc,
                        encode_co_pvc({.rx_vci = 5, .tx_vci = 6, .peer = MacAddress::broadcast()}), out).status,
            Status::kInvalidData);
  EXPECT_EQ(l.a.set_oid(af, 0xFE0000FF, pvc, out).status, Status::kInvalidOid);
  EXPECT_EQ(l.a.pvcs(), 0u);
  ASSERT_EQ(l.a.close_af(af), Status::kSuccess);
  EXPECT_EQ(l.a.set_oid(af, co_oid::kAddPvc, pvc, out).status, Status::kFailure) << "a dead AF handle";
}

TEST(CondisRules, R40_NoDataBeforeTheCallIsUpAndBothEndsActiveWhenItIs) {
  Lab l;
  l.start();
  AfOpenId af_b = l.b.open_af(2, kCoemuAf)->id;
  (void)*l.b.register_sap(af_b, kSap42);
  VcId vc = *l.a.create_vc(l.a.open_af(1, kCoemuAf)->id);
  CmOutput out;
  ASSERT_EQ(l.a.make_call(vc, "beta", kSap42, l.now, out), Status::kPending);
  EXPECT_NE(l.vcs_a.state(vc), VcState::kActive) << "nothing flows before the completion";
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  const VcId vc_b = l.last(l.ev_b, Ev::kIncomingCall)->vc;
  l.answer(vc_b, Status::kSuccess);
  ASSERT_EQ(l.last(l.ev_a, Ev::kMakeCallComplete)->status, Status::kSuccess);
  EXPECT_EQ(l.vcs_a.state(vc), VcState::kActive);
  EXPECT_EQ(l.vcs_b.state(vc_b), VcState::kActive) << "the first frame the caller sends has a VC to land on";
}

TEST(CondisRules, R41_AfterAFailedCallTheClientDeletesItsVc) {
  Lab l;
  l.start();
  VcId vc = *l.a.create_vc(l.a.open_af(1, kCoemuAf)->id);
  CmOutput out;
  ASSERT_EQ(l.a.make_call(vc, "beta", kSap42, l.now, out), Status::kPending);  // nobody listens
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  ASSERT_EQ(Lab::kinds(l.ev_a), std::vector<Ev>{Ev::kMakeCallComplete});
  EXPECT_EQ(l.ev_a[0].status, Status::kNotAccepted);
  EXPECT_EQ(l.a.calls(), 0u);
  EXPECT_EQ(l.a.delete_vc(vc), Status::kSuccess);
  EXPECT_EQ(l.vcs_a.in_use(), 0u);
  EXPECT_EQ(l.vcs_b.in_use(), 0u) << "the callee made no VC for a call it refused";
}

TEST(CondisRules, R51_R54_ARejectedCallsVcIsDeactivatedAndDeleted) {
  Lab l;
  l.start();
  auto [vc, vc_b] = l.offer();
  l.answer(vc_b, Status::kNotAccepted);
  EXPECT_EQ(Lab::kinds(l.ev_b), (std::vector<Ev>{Ev::kCreateVc, Ev::kIncomingCall, Ev::kDeleteVc}));
  EXPECT_EQ(l.ev_b.back().vc, vc_b);
  EXPECT_EQ(l.vcs_b.in_use(), 0u);
  EXPECT_EQ(l.last(l.ev_a, Ev::kMakeCallComplete)->cause, cause::kCallRejected);
}

TEST(CondisRules, R55_CallerGivesUpDuringSetupCalleeGetsIncomingCloseNotConnected) {
  Lab l;
  l.start();
  auto [vc, vc_b] = l.offer();
  CmOutput out;
  ASSERT_EQ(l.a.close_call(vc, l.now, out), Status::kPending);
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  EXPECT_EQ(Lab::kinds(l.ev_b), (std::vector<Ev>{Ev::kCreateVc, Ev::kIncomingCall, Ev::kIncomingClose}));
  EXPECT_EQ(l.b.incoming_call_complete(vc_b, Status::kSuccess, l.now, out), Status::kFailure)
      << "too late to accept";
  ASSERT_EQ(l.b.close_call(vc_b, l.now, out), Status::kPending);
  l.take(kMacB, out);
  l.pump(l.now + milliseconds(50));
  EXPECT_EQ(Lab::kinds(l.ev_b), (std::vector<Ev>{Ev::kCreateVc, Ev::kIncomingCall, Ev::kIncomingClose,
                                                 Ev::kCloseCallComplete, Ev::kDeleteVc}));
  // The caller's make-call fails (R90's EMU rule), then its close completes.
  EXPECT_EQ(Lab::kinds(l.ev_a), (std::vector<Ev>{Ev::kMakeCallComplete, Ev::kCloseCallComplete}));
  EXPECT_EQ(l.ev_a[0].status, Status::kRequestAborted);
}

// R64-R67 and R88: a whole call, every callback on both sides in order.
TEST(CondisRules, R64_R65_R66_R67_R88_AWholeCallInExactOrder) {
  Lab l;
  l.start();
  Answered c = answered_call(l);
  CmOutput out;
  ASSERT_EQ(l.a.close_call(c.vc_a, l.now, out), Status::kPending);
  EXPECT_NE(l.vcs_a.state(c.vc_a), VcState::kActive) << "R64: no sends once the client closed";
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  const ClientEvent* ic = l.last(l.ev_b, Ev::kIncomingClose);
  ASSERT_NE(ic, nullptr);
  EXPECT_EQ(ic->status, Status::kSuccess) << "R67: the remote closed";
  EXPECT_EQ(ic->cause, cause::kNormalClearing);
  ASSERT_EQ(l.b.close_call(c.vc_b, l.now, out), Status::kPending) << "R67: answered with a close";
  l.take(kMacB, out);
  l.pump(l.now + milliseconds(50));
  EXPECT_EQ(Lab::kinds(l.ev_a), (std::vector<Ev>{Ev::kMakeCallComplete, Ev::kCloseCallComplete}));
  EXPECT_EQ(Lab::kinds(l.ev_b), (std::vector<Ev>{Ev::kCreateVc, Ev::kIncomingCall, Ev::kCallConnected,
                                                 Ev::kIncomingClose, Ev::kCloseCallComplete, Ev::kDeleteVc}));
  EXPECT_EQ(l.vcs_a.state(c.vc_a), VcState::kInactive) << "R65: closed means deactivated";
  EXPECT_EQ(l.b.close_call(c.vc_b, l.now, out), Status::kFailure) << "R66: the CM's VC handle is dead";
  EXPECT_EQ(l.b.delete_vc(c.vc_b), Status::kFailure) << "R66: and not the client's to delete";
  EXPECT_EQ(l.a.delete_vc(c.vc_a), Status::kSuccess) << "R66: the client deletes its own";
}

TEST(CondisRules, R35_R66_AClientReusesItsVcForAnotherCall) {
  Lab l;
  l.start();
  Answered c = answered_call(l);
  CmOutput out;
  l.close(l.a, c.vc_a);
  l.close(l.b, c.vc_b);
  l.ev_a.clear();
  l.ev_b.clear();
  ASSERT_EQ(l.a.make_call(c.vc_a, "beta", kSap42, l.now, out), Status::kPending);
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  ASSERT_NE(l.last(l.ev_b, Ev::kIncomingCall), nullptr);
  l.answer(l.last(l.ev_b, Ev::kIncomingCall)->vc, Status::kSuccess);
  ASSERT_EQ(l.last(l.ev_a, Ev::kMakeCallComplete)->status, Status::kSuccess);
  EXPECT_EQ(l.vcs_a.state(c.vc_a), VcState::kActive);
}

TEST(CondisRules, R91_DeadSapAndAfHandlesAreRefused) {
  Lab l;
  l.start();
  AfOpenId af = l.b.open_af(2, kCoemuAf)->id;
  SapId sap = *l.b.register_sap(af, kSap42);
  CmOutput out;
  ASSERT_EQ(l.b.deregister_sap(sap, out), Status::kPending);
  EXPECT_EQ(l.b.deregister_sap(sap, out), Status::kFailure) << "R24: a second deregister";
  EXPECT_EQ(l.b.deregister_sap(SapId{}, out), Status::kFailure);
  ASSERT_EQ(l.b.close_af(af), Status::kSuccess);
  EXPECT_EQ(l.b.close_af(af), Status::kFailure);
  EXPECT_EQ(l.b.register_sap(af, kSap42).error(), Status::kFailure);
  EXPECT_EQ(l.b.create_vc(af).error(), Status::kFailure);
}

}  // namespace
}  // namespace cm
