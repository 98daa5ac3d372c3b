// Node: one emulated host. A link, a miniport with its data path (I/O
// threads), and a call manager run by one control thread (an epoll loop with
// an eventfd for requests and received SIG frames and a timerfd for the call
// manager's deadlines). Clients attach and make requests from any thread;
// completions and indications reach them from the node's control context,
// data on the I/O threads.
//
// The control context is a token (leader/follower): the control thread holds
// it while it works, and an I/O thread that receives SIG frames while the
// control thread sleeps takes it and runs the call manager itself, so a
// signaling hop costs one thread wake-up instead of two. Whoever holds it,
// the call manager's work and the client events stay one at a time and in
// order; NodeConfig::io_thread_signals turns this off.
//
//   auto node = Node::start(link, {.address = "alpha", .mac = mac});
//   ClientId me = (*node)->attach(&my_client);
//   AfOpenId af = *(*node)->open_af(me);
//   VcId vc = *(*node)->create_vc(af);
//   (*node)->make_call(vc, "beta", sap);      // PENDING; kMakeCallComplete later
//   (*node)->data().send(vc, packets);        // once the call is up
#pragma once

#include <atomic>
#include <array>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cm/call_manager.h"
#include "emulator/data_path.h"

namespace emulator {

using cm::AfOpenId;
using cm::ClientEvent;
using cm::ClientId;
using cm::SapId;
using cm::SapSpec;

// A client's callbacks (the ProtocolCl*/ProtocolCo* handler set).
class NodeClient {
 public:
  virtual ~NodeClient() = default;
  // Completions and indications, from the node's control context (the
  // control thread, or the I/O thread holding the token), one at a time and
  // in order. Do not block here: it may hold up the node's receives. A client may make requests from here: they run at
  // once, and the events they cause come after this call returns.
  virtual void on_event(const ClientEvent& e) = 0;
  // Receives on this client's VCs (I/O thread; keep or drop the packets).
  virtual void on_receive(std::span<RxPacket> packets) { (void)packets; }
  // Send completions on this client's VCs (I/O thread).
  virtual void on_send_complete(std::span<const TxCompletion> done) { (void)done; }
};

struct NodeConfig {
  std::string address = {};   // the node address announced in HELLOs
  miniport::MacAddress mac = {};  // the node's NIC address
  uint32_t incarnation = 0;   // 0 = pick a random non-zero one
  cm::CallTimers timers = {};
  // EMU choices (see cm::CmConfig): a busy AF close pends or is refused;
  // OpenAf and RegisterSap complete at once or pend for this long.
  cm::AfOptions af = {};
  std::optional<miniport::Duration> open_af_pends = std::nullopt;
  std::optional<miniport::Duration> register_sap_pends = std::nullopt;
  cm::TransportConfig transport = {};
  cm::NeighborConfig neighbors = {};
  DataPathOptions data = {};
  // What the call manager's admission may hand out in each direction
  // (guaranteed and controlled-load token rates), bytes/s.
  uint64_t link_bytes_per_s = 1'250'000'000;
  // Per-peer and per-client limits (SETUP floods, runaway clients), and the
  // VCs the node holds at once (1..2^20: one per call or party).
  cm::CmLimits limits = {};
  uint32_t max_vcs = miniport::kMaxVcs;
  // The control thread writes a lone SIG frame to the link itself, just
  // before it sleeps, instead of waking the I/O thread for it. Measured over
  // TAPs: call setup p50 85-90 us instead of 115-130 us with one call in
  // flight, the same rate with 16 in flight.
  bool sig_write_now = true;
  // The I/O thread that receives SIG frames runs the call manager itself when
  // the control thread is not running it (see the top of this file). Measured
  // over TAPs with one call in flight: see `coemu bench calls`
  // --control-thread-only. Off: only the control thread runs it.
  bool io_thread_signals = true;
};

class Node final : private DataPathHandler {
 public:
  // Errors: kInvalidData for a bad node address; the data path's errors.
  [[nodiscard]] static Result<std::unique_ptr<Node>> start(Link& link, const NodeConfig& cfg);
  // Stops the control thread and the data path; joins both.
  ~Node() override;

  // Registers a client; its id is the owner of its VCs. Returns 0 when 63
  // clients are attached already. The client is then told of the node's
  // address family (kAfRegistered, R10) on the control thread. The node's
  // threads call the client until the node is destroyed: it must outlive
  // the node.
  ClientId attach(NodeClient* client);

  // Requests (any thread; from the control thread they run inline). Each
  // returns the call manager's immediate answer; PENDING ones complete
  // through on_event.
  [[nodiscard]] Result<cm::Issued<AfOpenId>> open_af(ClientId c);
  [[nodiscard]] Status close_af(AfOpenId af);
  [[nodiscard]] Result<cm::Issued<SapId>> register_sap(AfOpenId af, const SapSpec& sap);
  [[nodiscard]] Status deregister_sap(SapId sap);
  [[nodiscard]] Result<VcId> create_vc(AfOpenId af);
  [[nodiscard]] Status delete_vc(VcId vc);
  // `traffic`: the FLOWSPECs asked for (see cm::CallManager::make_call).
  [[nodiscard]] Status make_call(VcId vc, const std::string& called, const SapSpec& sap,
                                 const cm::Traffic& traffic = {});
  // R38, R56-R59: point-to-multipoint calls (see cm::CallManager): the
  // first party, more parties, dropping one; handles are party numbers.
  [[nodiscard]] Result<uint32_t> make_multipoint_call(VcId vc, const std::string& called, const SapSpec& sap,
                                                      const cm::Traffic& traffic = {});
  [[nodiscard]] Result<uint32_t> add_party(VcId vc, const std::string& called, const SapSpec& sap,
                                           const std::optional<cm::Traffic>& traffic = std::nullopt);
  [[nodiscard]] Status drop_party(uint32_t party);
  [[nodiscard]] Status incoming_call_complete(VcId vc, Status answer,
                                              const std::optional<cm::Traffic>& granted = std::nullopt);
  // R61/R52: new FLOWSPECs for the call on `vc` (see cm::CallManager::modify_call_qos).
  [[nodiscard]] Status modify_call_qos(VcId vc, const cm::Traffic& wanted);
  [[nodiscard]] Status close_call(VcId vc);
  // STATUS_ENQUIRY for the call on `vc` (see cm::CallManager::enquire_call).
  [[nodiscard]] Status enquire_call(VcId vc);
  // R76 with no AF handle: a query straight to the miniport, adapter-wide or
  // for one VC (R80), answered from the fast path's counters with R79/R82's
  // statuses and sizes. Any thread.
  [[nodiscard]] miniport::OidResult query_miniport(uint32_t oid, std::optional<VcId> vc, std::span<uint8_t> out);
  // R76 with an AF handle: a query to the call manager (see
  // cm::CallManager::query_oid, e.g. OID_CO_GET_ADDRESSES). Any thread.
  [[nodiscard]] miniport::OidResult query_cm(AfOpenId af, uint32_t oid, std::span<uint8_t> out);
  // R68/R76: an OID set to the call manager with an AF handle
  // (OID_CO_ADD_PVC / OID_CO_DELETE_PVC, see cm::CallManager::set_oid).
  [[nodiscard]] miniport::OidResult set_cm(AfOpenId af, uint32_t oid, std::span<const uint8_t> in);
  // R44 PERMANENT_VC: a call on the configured PVC that receives on
  // `pvc_rx_vci` (see cm::CallManager::make_pvc_call).
  [[nodiscard]] Status make_pvc_call(VcId vc, uint32_t pvc_rx_vci);
  // R77: completes an OID request the call manager made of this client
  // (a kOidRequest event), from on_event or later, in any order.
  [[nodiscard]] Status oid_request_complete(uint64_t request, Status status);
  // R36: names the VC (see cm::CallManager::assign_instance_name).
  [[nodiscard]] Result<std::string> assign_instance_name(VcId vc, const std::string& base);

  // R16/R17: the node closes its address family, as when it shuts down:
  // every client with an open AF gets kNotifyCloseAf and tears down (closing
  // its calls, SAPs, VCs and the AF, from its callbacks or any thread).
  // Waits up to `limit` for the last AF to close: kSuccess, or kFailure when
  // a client did not finish in time. New opens fail from now on.
  [[nodiscard]] Status close_address_families(miniport::Duration limit);

  [[nodiscard]] DataPath& data() noexcept { return *dp_; }
  [[nodiscard]] miniport::Miniport& miniport() noexcept { return mp_; }
  [[nodiscard]] const NodeConfig& config() const noexcept { return cfg_; }
  // Calls active or being set up / torn down (read on the control thread).
  [[nodiscard]] size_t calls();
  // VCs that exist on this node (read on the control thread, which changes them).
  [[nodiscard]] uint32_t vcs_in_use();
  // The call manager's and its signaling transport's counters.
  struct SigCounters {
    cm::CmCounters cm;
    cm::TransportCounters transport;
  };
  [[nodiscard]] SigCounters sig_counters();
  // Whether a HELLO from `address` has been heard (and not timed out).
  [[nodiscard]] bool knows(const std::string& address);

  // What the node holds right now, for `coemu show`: taken on the control
  // thread in one go, so calls, VCs and counters agree with each other.
  struct Snapshot {
    std::string address;
    miniport::MacAddress mac;
    uint32_t incarnation = 0;
    bool link_up = true;
    uint32_t mtu = 0;
    std::vector<cm::CallView> calls;
    struct Sap {
      SapId id;
      ClientId client = 0;
      SapSpec spec;
      cm::SapState state;
    };
    std::vector<Sap> saps;
    struct Peer {
      cm::Neighbor neighbor;
      miniport::Duration since_heard;
    };
    std::vector<Peer> peers;
    struct Vc {
      cm::VcView view;
      miniport::VcState state;
      miniport::VcCounters counters;
    };
    std::vector<Vc> vcs;
    SigCounters sig;
    ImpairmentCounters impairment;
  };
  [[nodiscard]] Snapshot snapshot();

 private:
  explicit Node(Link& link, const NodeConfig& cfg);
  // DataPathHandler (I/O threads)
  void on_receive(std::span<RxPacket> packets) override;
  void on_send_complete(std::span<const TxCompletion> done) override;
  void on_signaling(std::span<const uint8_t> frame) override;
  void on_status(const miniport::StatusIndication& ind) override;
  void on_signaling_done() override;

  // Runs fn in the control context and returns its result: inline when this
  // thread holds it, else posted to the control thread.
  template <class F>
  auto on_control(F&& fn) -> decltype(fn());
  // A call-manager request in the control context: its frames and events
  // go out and the timer follows its deadlines.
  template <class F>
  auto cm_request(F&& fn);
  void post(std::function<void()> task);
  void wake();
  void run() noexcept;
  // One round of control work: queued frames and tasks, due timers, frames
  // out, events to clients. Caller holds control_mu_. True when nothing is
  // left queued.
  bool pass();
  void emit(cm::CmOutput& out);  // frames to the data path (see sig_write_now), events to the clients
  void flush_held(bool going_idle);
  void arm_timer();
  NodeClient* client(ClientId id);

  Link& link_;
  NodeConfig cfg_;
  miniport::Miniport mp_;
  std::unique_ptr<cm::CallManager> cm_;
  std::unique_ptr<DataPath> dp_;
  UniqueFd epoll_, wake_, timer_;
  std::mutex mu_;  // guards tasks_ and sig_ (the control path; the data path never takes it)
  // The control context: held by whichever thread runs the call manager and
  // the members marked "control" below. The I/O threads only try it.
  std::mutex control_mu_;
  // Received SIG frames waiting for the CM, back to back in one buffer.
  struct SigQueue {
    struct Entry {
      miniport::MacAddress src;
      size_t at, len;
    };
    std::vector<uint8_t> bytes;
    std::vector<Entry> frames;
    [[nodiscard]] bool empty() const noexcept { return frames.empty(); }
    void clear() noexcept {
      bytes.clear();
      frames.clear();
    }
  };
  // Posted under mu_; a pass swaps them with the *_work_ pair and drains
  // that, so both keep their capacity and a pass allocates nothing for them.
  std::vector<std::function<void()>> tasks_;
  SigQueue sig_;
  std::vector<std::function<void()>> tasks_work_;  // control
  SigQueue sig_work_;                              // control
  // Clients by id, read lock-free by the I/O threads (ids are never reused).
  static constexpr ClientId kMaxClients = 64;
  std::array<std::atomic<NodeClient*>, kMaxClients> clients_{};
  std::atomic<ClientId> next_client_{1};
  std::atomic<bool> stop_{false};
  // Events wait here while a client callback runs, so a request made from
  // inside on_event never calls back into the client re-entrantly.
  std::deque<ClientEvent> queued_;           // control
  // Room for the largest SIG frame the CM encodes.
  using SigFrameBuf = std::array<uint8_t, miniport::kEthHeaderLen + cm::kSigHeaderLen + cm::kMaxMessageBody>;
  SigFrameBuf held_;       // control: a lone SIG frame held to the end of the pass
  size_t held_len_ = 0;    // 0: none held
  bool pass_busy_ = false;                    // control: this pass sent more than one frame
  bool delivering_ = false;                  // control
  bool afs_closing_ = false;                 // control
  std::optional<miniport::Time> armed_;      // control: the timerfd's deadline
  std::optional<std::promise<void>> afs_closed_;  // control: set when the last AF closed
  std::jthread control_;
};

}  // namespace emulator
