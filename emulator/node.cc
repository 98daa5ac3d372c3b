#include "emulator/node.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "emulator/clock.h"
#include "miniport/byte_order.h"

namespace emulator {

namespace {

// The node whose control context this thread holds (none: nullptr).
thread_local const Node* t_control = nullptr;

class ControlScope {
 public:
  explicit ControlScope(const Node* n) noexcept : prev_(std::exchange(t_control, n)) {}
  ~ControlScope() { t_control = prev_; }
  ControlScope(const ControlScope&) = delete;
  ControlScope& operator=(const ControlScope&) = delete;

 private:
  const Node* prev_;
};

}  // namespace

Node::Node(Link& link, const NodeConfig& cfg)
    : link_(link), cfg_(cfg), mp_({.mac = cfg.mac, .mtu = link.mtu(), .max_vcs = cfg.max_vcs}) {}

Result<std::unique_ptr<Node>> Node::start(Link& link, const NodeConfig& cfg) {
  const std::span<const uint8_t> addr(reinterpret_cast<const uint8_t*>(cfg.address.data()), cfg.address.size());
  if (!cm::valid_node_address(addr)) {
    set_last_error("node address '" + cfg.address + "': use 1-32 characters A-Z a-z 0-9 . _ -");
    return miniport::fail(Status::kInvalidData);
  }
  std::unique_ptr<Node> n(new Node(link, cfg));
  uint32_t inc = cfg.incarnation;
  while (inc == 0) inc = std::random_device{}();  // a new life at every start (3)
  cm::CmConfig cc{.node_address = cfg.address, .mac = cfg.mac, .incarnation = inc, .transport = cfg.transport,
                  .neighbors = cfg.neighbors, .timers = cfg.timers, .af = cfg.af,
                  .open_af_pends = cfg.open_af_pends, .register_sap_pends = cfg.register_sap_pends};
  cc.link_bytes_per_s = cfg.link_bytes_per_s;
  cc.limits = cfg.limits;
  n->cm_ = std::make_unique<cm::CallManager>(cc, n->mp_.vcs());
  n->wake_ = COEMU_TRY(UniqueFd::eventfd());
  int t = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (t < 0) return miniport::fail(record_errno("timerfd_create", errno));
  n->timer_.reset(t);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return miniport::fail(record_errno("epoll_create1", errno));
  n->epoll_.reset(ep);
  for (int fd : {n->wake_.get(), n->timer_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) return miniport::fail(record_errno("epoll_ctl", errno));
  }
  {
    // The I/O thread may take SIG frames before dp_ is set: holding the
    // control context sends them to the control thread instead.
    std::lock_guard token(n->control_mu_);
    n->dp_ = COEMU_TRY(DataPath::start(link, n->mp_, *n, cfg.data));
  }
  // Without a carrier source (the memory wire, or a TAP whose link events
  // nobody watches) the link is taken to be up until told otherwise.
  if (!cfg.data.link_events) n->dp_->indicate_carrier(true);
  n->control_ = std::jthread([p = n.get()] { p->run(); });
  // The first HELLO goes out from the control thread.
  n->post([p = n.get()] {
    cm::CmOutput out;
    p->cm_->start(steady_now(), out);
    p->emit(out);
  });
  return n;
}

Node::~Node() {
  stop_.store(true);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_.get(), &one, sizeof one);
  if (control_.joinable()) control_.join();
  if (dp_) dp_->stop();
}

ClientId Node::attach(NodeClient* c) {
  const ClientId id = next_client_.fetch_add(1);
  if (id >= kMaxClients) return 0;
  clients_[id].store(c, std::memory_order_release);
  post([this, id] {
    cm::CmOutput out;
    ClientEvent e{ClientEvent::Kind::kAfRegistered};
    e.client = id;
    e.address_family = cm::kCoemuAf;
    out.events.push_back(e);
    emit(out);
  });
  return id;
}

NodeClient* Node::client(ClientId id) {
  return id > 0 && id < kMaxClients ? clients_[id].load(std::memory_order_acquire) : nullptr;
}

void Node::post(std::function<void()> task) {
  bool first;
  {
    std::lock_guard lock(mu_);
    first = tasks_.empty() && sig_.empty();
    tasks_.push_back(std::move(task));
  }
  if (first) wake();
}

void Node::wake() {
  // Only the push that makes the queues non-empty wakes the control thread:
  // it takes everything queued when it swaps, and looks again (under mu_)
  // before it sleeps, so later pushes ride on that one wake-up.
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_.get(), &one, sizeof one);
}

template <class F>
auto Node::on_control(F&& fn) -> decltype(fn()) {
  if (t_control == this) return fn();  // from on_event: run inline
  std::packaged_task<decltype(fn())()> task(std::forward<F>(fn));
  auto result = task.get_future();
  post([&task] { task(); });
  return result.get();
}

template <class F>
auto Node::cm_request(F&& fn) {
  return on_control([&] {
    cm::CmOutput out;
    auto r = fn(out);
    emit(out);
    arm_timer();  // the request may have moved the earliest deadline
    return r;
  });
}

void Node::emit(cm::CmOutput& out) {
  for (const cm::SigOut& f : out.frames) {
    // With sig_write_now the first frame of a pass waits: if it stays the
    // only one, this thread writes it just before it sleeps. A second frame
    // sends both to the I/O thread at once, which writes while we go on.
    const bool hold = cfg_.sig_write_now && held_len_ == 0 && !pass_busy_;
    // Ethernet header, SIG payload, padding to the 60-byte minimum: built
    // where it waits, or on the stack, as every SIG message passes here.
    SigFrameBuf scratch;
    SigFrameBuf& frame = hold ? held_ : scratch;
    const size_t len = std::max<size_t>(miniport::kEthHeaderLen + f.payload.size(), miniport::kMinEthFrame);
    if (len > frame.size()) continue;  // larger than any SIG message the CM encodes
    std::memcpy(frame.data(), f.dst.bytes.data(), 6);
    std::memcpy(frame.data() + 6, cfg_.mac.bytes.data(), 6);
    miniport::store_be16(frame.data() + 12, miniport::kEtherTypeSig);
    std::memcpy(frame.data() + miniport::kEthHeaderLen, f.payload.data(), f.payload.size());
    std::fill(frame.begin() + static_cast<ptrdiff_t>(miniport::kEthHeaderLen + f.payload.size()),
              frame.begin() + static_cast<ptrdiff_t>(len), uint8_t{0});
    if (hold) {
      held_len_ = len;
      continue;
    }
    pass_busy_ = true;
    flush_held(false);
    // A full ring or pool loses this copy; the transport resends MSGs and
    // HELLOs repeat, so signaling recovers.
    (void)dp_->send_frame(std::span(frame).first(len));
  }
  for (ClientEvent& e : out.events) queued_.push_back(std::move(e));
  out = {};
  if (delivering_) return;  // the outer emit delivers them, in order, after this callback
  delivering_ = true;
  while (!queued_.empty()) {
    const ClientEvent e = std::move(queued_.front());
    queued_.pop_front();
    if (NodeClient* c = client(e.client)) c->on_event(e);
  }
  delivering_ = false;
}

void Node::flush_held(bool going_idle) {
  if (held_len_ == 0) return;
  // A lone frame sent just before this thread sleeps is written from here:
  // one wake-up less on a call's critical path, and no woken thread left
  // waiting behind a busy one.
  (void)dp_->send_frame(std::span(held_).first(held_len_), going_idle);
  held_len_ = 0;
}

void Node::arm_timer() {
  // Most requests and frames leave the earliest deadline where it was; a
  // timerfd_settime for each would be a syscall per message.
  const auto next = cm_->next_deadline();
  if (next == armed_) return;
  armed_ = next;
  itimerspec its{};
  if (auto d = next) {
    const auto left = std::max<int64_t>(1, (*d - steady_now()).count());
    its.it_value.tv_sec = left / 1'000'000'000;
    its.it_value.tv_nsec = left % 1'000'000'000;
  }
  ::timerfd_settime(timer_.get(), 0, &its, nullptr);
}

bool Node::pass() {
  {
    std::lock_guard lock(mu_);
    tasks_work_.swap(tasks_);
    std::swap(sig_work_, sig_);
  }
  cm::CmOutput out;
  pass_busy_ = false;
  for (const SigQueue::Entry& e : sig_work_.frames) {
    const auto frame = std::span(sig_work_.bytes).subspan(e.at, e.len);
    cm_->on_sig_frame(e.src, frame.subspan(miniport::kEthHeaderLen), steady_now(), out);
    emit(out);
  }
  sig_work_.clear();
  for (auto& t : tasks_work_) t();
  tasks_work_.clear();
  cm_->on_timer(steady_now(), out);
  emit(out);
  arm_timer();
  if (afs_closing_ && afs_closed_ && cm_->all_afs_closed()) {
    afs_closed_->set_value();
    afs_closed_.reset();
  }
  bool idle;
  {
    std::lock_guard lock(mu_);
    idle = tasks_.empty() && sig_.empty();
  }
  flush_held(idle);
  return idle;
}

void Node::run() noexcept {
  pthread_setname_np(pthread_self(), "coemu-control");  // for top -H, perf and gdb
  epoll_event evs[4];
  bool fired = false;
  while (!stop_.load()) {
    bool idle;
    {
      std::lock_guard token(control_mu_);
      ControlScope scope(this);
      if (fired) armed_.reset();  // the timer fired: arm it anew
      idle = pass();
    }
    if (!idle) continue;
    const int n = ::epoll_wait(epoll_.get(), evs, 4, -1);
    fired = false;
    for (int i = 0; i < n; ++i) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(evs[i].data.fd, &v, sizeof v);
      fired |= evs[i].data.fd == timer_.get();
    }
  }
}

// ---- I/O threads ----

void Node::on_signaling(std::span<const uint8_t> frame) {
  miniport::MacAddress src;
  std::memcpy(src.bytes.data(), frame.data() + 6, 6);
  bool first;
  {
    std::lock_guard lock(mu_);  // signaling is the control path, not the data path
    first = tasks_.empty() && sig_.empty();
    sig_.frames.push_back({src, sig_.bytes.size(), frame.size()});
    sig_.bytes.insert(sig_.bytes.end(), frame.begin(), frame.end());
  }
  // With io_thread_signals, on_signaling_done (after this receive batch)
  // runs it or wakes the control thread.
  if (first && !cfg_.io_thread_signals) wake();
}

void Node::on_signaling_done() {
  if (!cfg_.io_thread_signals) return;
  std::unique_lock token(control_mu_, std::try_to_lock);
  if (!token) {
    // The control thread holds it and may have looked at the queues before
    // our frames landed: make it look again.
    wake();
    return;
  }
  bool idle;
  {
    ControlScope scope(this);
    idle = pass();
  }
  token.unlock();
  if (!idle) wake();  // requests posted meanwhile: the control thread takes them
}

void Node::on_receive(std::span<RxPacket> packets) {
  // Hand each run of packets with the same owner to that client at once.
  size_t i = 0;
  while (i < packets.size()) {
    size_t j = i + 1;
    while (j < packets.size() && packets[j].owner() == packets[i].owner()) ++j;
    if (NodeClient* c = client(packets[i].owner())) c->on_receive(packets.subspan(i, j - i));
    i = j;
  }
}

void Node::on_send_complete(std::span<const TxCompletion> done) {
  size_t i = 0;
  while (i < done.size()) {
    const uint64_t owner = mp_.vcs().owner(done[i].vc);
    size_t j = i + 1;
    while (j < done.size() && mp_.vcs().owner(done[j].vc) == owner) ++j;
    if (NodeClient* c = client(owner)) c->on_send_complete(done.subspan(i, j - i));
    i = j;
  }
}

void Node::on_status(const miniport::StatusIndication& ind) {
  if (ind.vc.valid()) {
    // R84: a VC's indication goes to its CM, which hands it to the VC's
    // client alone. The VC may indicate again once this one is delivered.
    post([this, ind] {
      cm::CmOutput out;
      (void)cm_->on_vc_status(ind, out);
      emit(out);
      mp_.vcs().rearm_status(ind.vc);
    });
    return;
  }
  // R84: a link-state indication reaches every client, then the CM, which
  // clears the calls when the link goes down (R85).
  post([this, ind] {
    cm::CmOutput out;
    for (ClientId id = 1; id < kMaxClients; ++id) {
      if (!client(id)) continue;
      ClientEvent e{ClientEvent::Kind::kLinkStatus};
      e.client = id;
      e.link_up = ind.link_up;
      e.speed_bps = ind.speed_bps;
      out.events.push_back(e);
    }
    cm_->on_link(ind.link_up, steady_now(), out);
    emit(out);
  });
}

// ---- requests ----

Result<cm::Issued<AfOpenId>> Node::open_af(ClientId c) {
  return on_control([&] {
    auto r = cm_->open_af(c, cm::kCoemuAf, steady_now());
    arm_timer();
    return r;
  });
}

Status Node::close_af(AfOpenId af) {
  return on_control([&] { return cm_->close_af(af); });
}

Result<cm::Issued<SapId>> Node::register_sap(AfOpenId af, const SapSpec& sap) {
  return on_control([&] {
    auto r = cm_->register_sap(af, sap, steady_now());
    arm_timer();
    return r;
  });
}

Status Node::close_address_families(miniport::Duration limit) {
  if (t_control == this) {
    set_last_error("close_address_families waits for the control thread: call it from outside on_event");
    return Status::kFailure;
  }
  std::future<void> done = on_control([&] {
    afs_closing_ = true;
    afs_closed_.emplace();
    auto f = afs_closed_->get_future();
    cm::CmOutput out;
    cm_->notify_close_afs(out);
    emit(out);
    // Clients that had nothing open, or closed inline, are done already.
    if (cm_->all_afs_closed()) {
      afs_closed_->set_value();
      afs_closed_.reset();
    }
    return f;
  });
  return done.wait_for(limit) == std::future_status::ready ? Status::kSuccess : Status::kFailure;
}

Status Node::deregister_sap(SapId sap) {
  return cm_request([&](cm::CmOutput& out) { return cm_->deregister_sap(sap, out); });
}

Result<VcId> Node::create_vc(AfOpenId af) {
  return on_control([&] { return cm_->create_vc(af); });
}

Status Node::delete_vc(VcId vc) {
  return on_control([&] { return cm_->delete_vc(vc); });
}

Status Node::make_call(VcId vc, const std::string& called, const SapSpec& sap, const cm::Traffic& traffic) {
  return cm_request([&](cm::CmOutput& out) { return cm_->make_call(vc, called, sap, steady_now(), out, traffic); });
}

Result<uint32_t> Node::make_multipoint_call(VcId vc, const std::string& called, const SapSpec& sap,
                                            const cm::Traffic& traffic) {
  return cm_request(
      [&](cm::CmOutput& out) { return cm_->make_multipoint_call(vc, called, sap, steady_now(), out, traffic); });
}

Result<uint32_t> Node::add_party(VcId vc, const std::string& called, const SapSpec& sap,
                                 const std::optional<cm::Traffic>& traffic) {
  return cm_request([&](cm::CmOutput& out) { return cm_->add_party(vc, called, sap, steady_now(), out, traffic); });
}

Status Node::drop_party(uint32_t party) {
  return cm_request([&](cm::CmOutput& out) { return cm_->drop_party(party, steady_now(), out); });
}

Status Node::incoming_call_complete(VcId vc, Status answer, const std::optional<cm::Traffic>& granted) {
  return cm_request([&](cm::CmOutput& out) { return cm_->incoming_call_complete(vc, answer, steady_now(), out, granted); });
}

Status Node::modify_call_qos(VcId vc, const cm::Traffic& wanted) {
  return cm_request([&](cm::CmOutput& out) { return cm_->modify_call_qos(vc, wanted, steady_now(), out); });
}

Status Node::close_call(VcId vc) {
  return cm_request([&](cm::CmOutput& out) { return cm_->close_call(vc, steady_now(), out); });
}

Status Node::enquire_call(VcId vc) {
  return cm_request([&](cm::CmOutput& out) { return cm_->enquire_call(vc, steady_now(), out); });
}

miniport::OidResult Node::query_miniport(uint32_t oid, std::optional<VcId> vc, std::span<uint8_t> out) {
  // On the control thread, which alone changes the VC table's handles.
  return on_control([&] { return mp_.query(oid, vc, out); });
}

miniport::OidResult Node::query_cm(AfOpenId af, uint32_t oid, std::span<uint8_t> out) {
  return on_control([&] { return cm_->query_oid(af, oid, out); });
}

miniport::OidResult Node::set_cm(AfOpenId af, uint32_t oid, std::span<const uint8_t> in) {
  return cm_request([&](cm::CmOutput& out) { return cm_->set_oid(af, oid, in, out); });
}

Status Node::make_pvc_call(VcId vc, uint32_t pvc_rx_vci) {
  return cm_request([&](cm::CmOutput& out) { return cm_->make_pvc_call(vc, pvc_rx_vci, out); });
}

Status Node::oid_request_complete(uint64_t request, Status status) {
  return on_control([&] { return cm_->oid_request_complete(request, status); });
}

Result<std::string> Node::assign_instance_name(VcId vc, const std::string& base) {
  return on_control([&] { return cm_->assign_instance_name(vc, base); });
}

uint32_t Node::vcs_in_use() {
  return on_control([&] { return mp_.vcs().in_use(); });
}

bool Node::knows(const std::string& address) {
  return on_control([&] { return cm_->neighbors().lookup(address).has_value(); });
}

Node::SigCounters Node::sig_counters() {
  return on_control([&] { return SigCounters{cm_->counters(), cm_->transport().counters()}; });
}

size_t Node::calls() {
  return on_control([&] { return cm_->calls(); });
}

Node::Snapshot Node::snapshot() {
  return on_control([&] {
    const Time now = steady_now();
    Snapshot s;
    s.address = cfg_.address;
    s.mac = cfg_.mac;
    s.incarnation = cm_->neighbors().incarnation();
    s.link_up = cm_->link_up();
    s.mtu = link_.mtu();
    s.calls = cm_->call_views(now);
    cm_->saps().for_each([&](SapId id, uint64_t client, const SapSpec& spec, cm::SapState st) {
      s.saps.push_back({id, static_cast<ClientId>(client), spec, st});
    });
    cm_->neighbors().for_each([&](const cm::Neighbor& n) { s.peers.push_back({n, now - n.last_heard}); });
    for (const auto& v : cm_->vc_views())
      s.vcs.push_back({v, mp_.vcs().state(v.vc), mp_.vcs().counters(v.vc)});
    s.sig = SigCounters{cm_->counters(), cm_->transport().counters()};
    s.impairment = link_.impairment_counters();
    return s;
  });
}

}  // namespace emulator
