#include "cm/transport.h"

#include <algorithm>

namespace cm {

Transport::Transport(uint32_t incarnation, const TransportConfig& cfg) : incarnation_(incarnation), cfg_(cfg) {}

SigHeader Transport::header(SigKind kind, const Assoc& a, uint32_t seq) const {
  // Every unicast frame carries the current cumulative ack (3.2).
  return SigHeader{kind, incarnation_, a.peer_inc, seq, a.delivered};
}

Result<void> Transport::send(const MacAddress& peer, std::span<const uint8_t> body, Time now, Actions& out) {
  if (body.size() > 0xFFFF) return miniport::fail(Status::kInvalidLength);
  auto [it, fresh] = assocs_.try_emplace(peer);
  Assoc& a = it->second;
  if (fresh) a.rto = cfg_.rto_initial;  // opening: our first MSG is seq 1
  if (a.unacked.size() >= cfg_.window) {
    if (a.queued.size() >= cfg_.max_queued) return miniport::fail(Status::kResources);
    a.queued.emplace_back(body.begin(), body.end());
    return {};
  }
  a.unacked.push_back(Pending{a.next_seq++, std::vector<uint8_t>(body.begin(), body.end())});
  transmit(peer, a, a.unacked.back(), now, out);
  return {};
}

void Transport::emit(const MacAddress& peer, const SigHeader& h, std::span<const uint8_t> body, Actions& out) {
  OutFrame& f = out.frames.emplace_back(OutFrame{peer, h, std::vector<uint8_t>(kSigHeaderLen + body.size())});
  // Cannot fail: the frame is sized for it and send() refused bodies over 65535.
  (void)encode_sig(h, body, f.frame);
}

void Transport::transmit(const MacAddress& peer, Assoc& a, const Pending& p, Time now, Actions& out) {
  emit(peer, header(SigKind::kMsg, a, p.seq), p.body, out);
  ++c_.msgs_sent;
  a.ack_at.reset();  // this MSG carries the ack
  if (!a.rto_at) a.rto_at = now + a.rto;
}

void Transport::fill_window(const MacAddress& peer, Assoc& a, Time now, Actions& out) {
  while (a.unacked.size() < cfg_.window && !a.queued.empty()) {
    a.unacked.push_back(Pending{a.next_seq++, std::move(a.queued.front())});
    a.queued.pop_front();
    transmit(peer, a, a.unacked.back(), now, out);
  }
}

bool Transport::process_ack(const MacAddress& peer, Assoc& a, uint32_t ack, Time now, Actions& out) {
  if (ack == 0) return false;
  if (ack >= a.next_seq) {
    ++c_.ack_above_sent;  // acks something never sent: ignored (3.2)
    return false;
  }
  bool advanced = false;
  while (!a.unacked.empty() && a.unacked.front().seq <= ack) {
    a.unacked.pop_front();
    advanced = true;
  }
  if (!advanced) return false;
  // An ack that advances ends the backoff.
  a.rto = cfg_.rto_initial;
  a.expiries = 0;
  a.same_acks = 0;
  a.rto_at.reset();
  fill_window(peer, a, now, out);
  if (!a.unacked.empty() && !a.rto_at) a.rto_at = now + a.rto;
  return true;
}

void Transport::on_bare_ack(const MacAddress& peer, Assoc& a, uint32_t ack, Time now, Actions& out) {
  if (process_ack(peer, a, ack, now, out) || a.unacked.empty()) return;
  // The peer holds MSGs past a gap and still waits for our oldest: resend it
  // once per gap, without touching the RTO or its backoff.
  if (cfg_.fast_retransmit_acks != 0 && ack + 1 == a.unacked.front().seq &&
      ++a.same_acks == cfg_.fast_retransmit_acks) {
    resend_oldest(peer, a, out);
    ++c_.fast_retransmits;
  }
}

void Transport::resend_oldest(const MacAddress& peer, Assoc& a, Actions& out) {
  emit(peer, header(SigKind::kMsg, a, a.unacked.front().seq), a.unacked.front().body, out);
  ++c_.retransmits;
  a.ack_at.reset();  // it carries the ack
}

void Transport::send_reset(const MacAddress& peer, uint32_t their_incarnation, Actions& out) {
  // RESET names the life of the peer it answers; it has no body and no ack.
  emit(peer, SigHeader{SigKind::kReset, incarnation_, their_incarnation, 0, 0}, {}, out);
  ++c_.resets_sent;
}

void Transport::send_ack(const MacAddress& peer, Assoc& a, Actions& out) {
  emit(peer, header(SigKind::kAck, a, 0), {}, out);
  ++c_.acks_sent;
  a.ack_at.reset();
}

void Transport::on_frame(const MacAddress& peer, const SigFrame& f, Time now, Actions& out) {
  switch (f.hdr.kind) {
    case SigKind::kHello:
      return;  // the neighbor table's
    case SigKind::kMsg:
      on_msg(peer, f, now, out);
      return;
    case SigKind::kAck: {
      if (f.hdr.peer_incarnation != 0 && f.hdr.peer_incarnation != incarnation_) {
        send_reset(peer, f.hdr.incarnation, out);  // meant for an earlier life of ours
        return;
      }
      auto it = assocs_.find(peer);
      if (it == assocs_.end()) return;
      Assoc& a = it->second;
      if (a.peer_inc == 0) a.peer_inc = f.hdr.incarnation;
      if (a.peer_inc != f.hdr.incarnation) return;  // from another life of the peer
      on_bare_ack(peer, a, f.hdr.ack, now, out);
      return;
    }
    case SigKind::kReset: {
      if (f.hdr.peer_incarnation != incarnation_) {
        ++c_.stale_resets;
        return;
      }
      if (assocs_.erase(peer)) out.events.push_back(PeerEvent{peer, PeerEventKind::kReset});
      return;
    }
  }
}

void Transport::on_msg(const MacAddress& peer, const SigFrame& f, Time now, Actions& out) {
  const uint32_t inc = f.hdr.incarnation;
  if (f.hdr.peer_incarnation != 0 && f.hdr.peer_incarnation != incarnation_) {
    send_reset(peer, inc, out);  // a frame for an earlier life of ours
    return;
  }
  auto it = assocs_.find(peer);
  if (it != assocs_.end() && it->second.peer_inc == 0) it->second.peer_inc = inc;  // we opened; now we know
  const bool known = it != assocs_.end() && it->second.peer_inc == inc;
  if (!known) {
    if (f.hdr.seq != 1) {
      if (f.hdr.peer_incarnation == 0) {
        ++c_.dropped_opening;  // its seq 1 was lost and will be resent
      } else {
        send_reset(peer, inc, out);
      }
      return;
    }
    if (it != assocs_.end()) {
      // seq 1 from a new incarnation of a peer we know: it restarted.
      assocs_.erase(it);
      out.events.push_back(PeerEvent{peer, PeerEventKind::kRestarted});
    }
    it = assocs_.try_emplace(peer).first;
    it->second.rto = cfg_.rto_initial;
    it->second.peer_inc = inc;
  }
  Assoc& a = it->second;
  process_ack(peer, a, f.hdr.ack, now, out);
  const uint32_t seq = f.hdr.seq;
  if (seq == 0) return;  // MSGs are numbered from 1
  if (seq <= a.delivered) {
    ++c_.duplicates;  // delivered already: ack again, deliver never
  } else if (seq == a.delivered + 1) {
    out.delivered.push_back(Delivered{peer, f.body, {}});
    ++a.delivered;
    ++c_.delivered;
    for (auto r = a.reorder.find(a.delivered + 1); r != a.reorder.end(); r = a.reorder.find(a.delivered + 1)) {
      out.delivered.push_back(Delivered{peer, {}, std::move(r->second)});
      a.reorder.erase(r);
      ++a.delivered;
      ++c_.delivered;
    }
  } else if (seq - a.delivered <= cfg_.window) {
    if (!a.reorder.emplace(seq, std::vector<uint8_t>(f.body.begin(), f.body.end())).second) ++c_.duplicates;
    // A gap: tell the sender now, so that repeated acks can trigger its resend.
    if (cfg_.fast_retransmit_acks != 0) {
      send_ack(peer, a, out);
      return;
    }
  } else {
    ++c_.out_of_window;
    return;
  }
  if (!a.ack_at) a.ack_at = now + cfg_.ack_delay;
}

void Transport::on_timer(Time now, Actions& out) {
  for (auto it = assocs_.begin(); it != assocs_.end();) {
    const MacAddress peer = it->first;
    Assoc& a = it->second;
    if (a.rto_at && *a.rto_at <= now && a.unacked.empty()) a.rto_at.reset();
    if (a.rto_at && *a.rto_at <= now) {
      if (++a.expiries >= cfg_.max_retries) {
        // The peer may still be there (only our MSGs or its ACKs were lost):
        // drop() resets its side too. Lost as well, the next give-up sends
        // another RESET.
        out.events.push_back(PeerEvent{peer, PeerEventKind::kDown});
        ++it;
        drop(peer, out);
        continue;
      }
      // Resend the oldest unacknowledged MSG; back off up to rto_max.
      resend_oldest(peer, a, out);
      a.same_acks = 0;
      a.rto = std::min(a.rto * 2, cfg_.rto_max);
      a.rto_at = now + a.rto;
    }
    if (a.ack_at && *a.ack_at <= now) send_ack(peer, a, out);
    ++it;
  }
}

std::optional<Time> Transport::next_deadline() const {
  std::optional<Time> d;
  auto take = [&](const std::optional<Time>& t) {
    if (t && (!d || *t < *d)) d = t;
  };
  for (const auto& [peer, a] : assocs_) {
    take(a.rto_at);
    take(a.ack_at);
  }
  return d;
}

void Transport::peer_incarnation(const MacAddress& peer, uint32_t incarnation, Actions& out) {
  auto it = assocs_.find(peer);
  if (it == assocs_.end()) return;
  if (it->second.peer_inc == 0) {
    it->second.peer_inc = incarnation;
  } else if (it->second.peer_inc != incarnation) {
    assocs_.erase(it);
    out.events.push_back(PeerEvent{peer, PeerEventKind::kRestarted});
  }
}

void Transport::drop(const MacAddress& peer, Actions& out) {
  auto it = assocs_.find(peer);
  if (it == assocs_.end()) return;
  if (it->second.peer_inc != 0) send_reset(peer, it->second.peer_inc, out);
  assocs_.erase(it);
}

bool Transport::has_association(const MacAddress& peer) const { return assocs_.count(peer) != 0; }

size_t Transport::unacked(const MacAddress& peer) const {
  auto it = assocs_.find(peer);
  return it == assocs_.end() ? 0 : it->second.unacked.size();
}

}  // namespace cm
