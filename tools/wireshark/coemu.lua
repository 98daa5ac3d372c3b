-- coemu.lua: Wireshark/tshark dissector for the coemu wire protocol, version 1
-- (PROTOCOL.md): signaling (SIG, EtherType 0x88B5) and data on a virtual
-- circuit (DATA, EtherType 0x88B6).
--
--   tshark -n -X lua_script:tools/wireshark/coemu.lua -r node-a.pcap
--   wireshark -X lua_script:tools/wireshark/coemu.lua node-a.pcap
--   (or copy it to ~/.local/lib/wireshark/plugins/ to load it always)
--
-- Display filters: coemu (signaling), coemu.msg.type == 0x05 (SETUP),
-- coemu.msg.call_ref.value == 3, coemu.cause == 88, coemu_data.vci == 17.
--
-- The local experimental EtherTypes are shared with other experiments, so a
-- SIG frame whose version is not 1 or whose header length is below 24 is
-- declined (left to Wireshark's generic data dissector), not called
-- malformed. What is ours but broken is dissected as far as it goes and
-- flagged with expert info; the checks follow PROTOCOL.md section 4.2.

local sig = Proto("coemu", "coemu signaling")
local dat = Proto("coemu_data", "coemu data")

-- ---- value names ----

local kinds = { [1] = "HELLO", [2] = "MSG", [3] = "ACK", [4] = "RESET" }

local msg_types = {
  [0x05] = "SETUP", [0x02] = "CALL_PROCEEDING", [0x07] = "CONNECT", [0x0F] = "CONNECT_ACK",
  [0x4D] = "RELEASE", [0x5A] = "RELEASE_COMPLETE",
  [0x80] = "ADD_PARTY", [0x81] = "ADD_PARTY_ACK", [0x82] = "ADD_PARTY_REJECT",
  [0x83] = "DROP_PARTY", [0x84] = "DROP_PARTY_ACK",
  [0x88] = "MODIFY_REQUEST", [0x89] = "MODIFY_ACK", [0x8A] = "MODIFY_REJECT",
  [0x75] = "STATUS_ENQUIRY", [0x7D] = "STATUS", [0x46] = "RESTART", [0x4E] = "RESTART_ACK",
}

local ie_types = {
  [0x01] = "CALLED_PARTY", [0x02] = "CALLING_PARTY", [0x03] = "SAP", [0x04] = "TRAFFIC",
  [0x05] = "VCI", [0x06] = "CAUSE", [0x07] = "ENDPOINT_REF", [0x08] = "BEARER",
  [0x09] = "CALL_STATE", [0x0A] = "USER_DATA",
  [0x10] = "NODE_ADDRESS", [0x11] = "MTU", [0x12] = "LINK_SPEED",
}

local causes = {
  [1] = "unallocated number", [3] = "no route to destination", [16] = "normal clearing",
  [17] = "user busy", [18] = "no user responding", [21] = "call rejected",
  [27] = "destination out of order", [30] = "response to STATUS ENQUIRY",
  [31] = "normal, unspecified", [41] = "temporary failure", [47] = "resource unavailable",
  [49] = "quality of service unavailable", [81] = "invalid call reference",
  [88] = "incompatible destination", [96] = "mandatory information element missing",
  [97] = "message type non-existent", [99] = "information element non-existent",
  [100] = "invalid information element contents", [101] = "message not compatible with call state",
  [102] = "recovery on timer expiry", [111] = "protocol error",
}

local locations = { [0] = "client", [1] = "call manager", [2] = "transport" }
local sap_types = { [1] = "SELECTOR", [2] = "SERVICE", [3] = "WILDCARD" }
local bearers = { [1] = "point-to-point", [2] = "point-to-multipoint" }
local service_types = { [0] = "no traffic", [1] = "best effort", [2] = "controlled load", [3] = "guaranteed" }
local call_states = {
  [0] = "null", [1] = "call initiated", [3] = "outgoing call proceeding", [6] = "call present",
  [8] = "connect request", [9] = "incoming call proceeding", [10] = "active",
  [11] = "release request", [12] = "release indication",
}

-- Mandatory IEs per message type (4.2): missing ones are cause 96.
local mandatory = {
  [0x05] = { 0x01, 0x03, 0x05 },
  [0x80] = { 0x01, 0x03, 0x05, 0x07 },
  [0x07] = { 0x05 },
  [0x81] = { 0x05, 0x07 },
  [0x88] = { 0x04 },
  [0x83] = { 0x07 }, [0x84] = { 0x07 }, [0x82] = { 0x07 },
}

-- ---- fields ----

local F = {
  version = ProtoField.uint8("coemu.version", "Version", base.DEC),
  kind = ProtoField.uint8("coemu.kind", "Kind", base.DEC, kinds),
  hdr_len = ProtoField.uint16("coemu.hdr_len", "Header length", base.DEC),
  body_len = ProtoField.uint16("coemu.body_len", "Body length", base.DEC),
  rsvd = ProtoField.uint16("coemu.rsvd", "Reserved", base.HEX),
  incarnation = ProtoField.uint32("coemu.incarnation", "Incarnation", base.HEX),
  peer_incarnation = ProtoField.uint32("coemu.peer_incarnation", "Peer incarnation", base.HEX),
  seq = ProtoField.uint32("coemu.seq", "Sequence", base.DEC),
  ack = ProtoField.uint32("coemu.ack", "Acknowledged", base.DEC),
  hdr_ext = ProtoField.bytes("coemu.hdr_ext", "Header extension"),
  padding = ProtoField.bytes("coemu.padding", "Padding"),

  hello = ProtoField.none("coemu.hello", "HELLO"),
  msg = ProtoField.none("coemu.msg", "Message"),
  ie_item = ProtoField.none("coemu.ie", "Information element"),
  msg_type = ProtoField.uint8("coemu.msg.type", "Message type", base.HEX, msg_types),
  msg_rsvd = ProtoField.uint8("coemu.msg.rsvd", "Reserved", base.HEX),
  msg_length = ProtoField.uint16("coemu.msg.length", "IE length", base.DEC),
  call_ref = ProtoField.uint32("coemu.msg.call_ref", "Call reference", base.HEX),
  call_ref_flag = ProtoField.bool("coemu.msg.call_ref.to_originator", "To the originator", 32,
                                  { "yes (sent by the called side)", "no (sent by the originator)" }, 0x80000000),
  call_ref_value = ProtoField.uint32("coemu.msg.call_ref.value", "Call reference value", base.DEC, nil, 0x7FFFFFFF),

  ie = ProtoField.uint8("coemu.ie.type", "IE", base.HEX, ie_types),
  ie_flags = ProtoField.uint8("coemu.ie.flags", "IE flags", base.HEX),
  ie_cr = ProtoField.bool("coemu.ie.flags.comprehension_required", "Comprehension required", 8, nil, 0x01),
  ie_length = ProtoField.uint16("coemu.ie.length", "IE length", base.DEC),
  ie_value = ProtoField.bytes("coemu.ie.value", "IE value"),

  called_party = ProtoField.string("coemu.called_party", "Called party"),
  calling_party = ProtoField.string("coemu.calling_party", "Calling party"),
  sap_type = ProtoField.uint16("coemu.sap.type", "SAP type", base.DEC, sap_types),
  sap_selector = ProtoField.uint16("coemu.sap.selector", "Selector", base.DEC),
  sap_service = ProtoField.string("coemu.sap.service", "Service"),
  sap_value = ProtoField.bytes("coemu.sap.value", "SAP value"),
  vci = ProtoField.uint32("coemu.vci", "VCI", base.DEC),
  cause = ProtoField.uint8("coemu.cause", "Cause", base.DEC, causes),
  location = ProtoField.uint8("coemu.cause.location", "Location", base.DEC, locations),
  endpoint_ref = ProtoField.uint16("coemu.endpoint_ref", "Endpoint reference (party)", base.DEC),
  bearer = ProtoField.uint8("coemu.bearer", "Bearer", base.DEC, bearers),
  call_state = ProtoField.uint8("coemu.call_state", "Call state", base.DEC, call_states),
  user_data = ProtoField.bytes("coemu.user_data", "User data"),
  node_address = ProtoField.string("coemu.node_address", "Node address"),
  mtu = ProtoField.uint16("coemu.mtu", "MTU", base.DEC),
  link_speed = ProtoField.uint64("coemu.link_speed", "Link speed (bit/s)", base.DEC),
}

-- The FLOWSPEC fields, once for each direction: coemu.tx.token_rate, ...
local flow_fields = {
  { "token_rate", "Token rate (bytes/s)" }, { "bucket", "Bucket (bytes)" }, { "peak", "Peak rate (bytes/s)" },
  { "latency", "Latency (us)" }, { "delay_variation", "Delay variation (us)" },
  { "service_type", "Service type", service_types }, { "max_sdu", "Max SDU (bytes)" },
  { "min_policed", "Min policed size (bytes)" },
}
local FLOW = { tx = {}, rx = {} }
local FLOW_ITEM = {
  tx = ProtoField.none("coemu.tx", "Transmit FLOWSPEC"),
  rx = ProtoField.none("coemu.rx", "Receive FLOWSPEC"),
}
for dir, _ in pairs(FLOW) do
  for i, f in ipairs(flow_fields) do
    FLOW[dir][i] = ProtoField.uint32("coemu." .. dir .. "." .. f[1], f[2], base.DEC, f[3])
  end
end

local D = {
  vci = ProtoField.uint32("coemu_data.vci", "VCI", base.DEC),
  len = ProtoField.uint16("coemu_data.len", "Length", base.DEC),
  flags = ProtoField.uint16("coemu_data.flags", "Flags", base.HEX),
  payload = ProtoField.bytes("coemu_data.payload", "Payload"),
  padding = ProtoField.bytes("coemu_data.padding", "Padding"),
}

local all = {}
for _, f in pairs(F) do all[#all + 1] = f end
for _, dir in pairs(FLOW) do for _, f in ipairs(dir) do all[#all + 1] = f end end
for _, f in pairs(FLOW_ITEM) do all[#all + 1] = f end
sig.fields = all
dat.fields = { D.vci, D.len, D.flags, D.payload, D.padding }

-- ---- expert info ----

local E = {
  malformed = ProtoExpert.new("coemu.malformed", "Malformed coemu signaling",
                              expert.group.MALFORMED, expert.severity.ERROR),
  unknown_kind = ProtoExpert.new("coemu.unknown_kind", "Unknown SIG kind (dropped by a receiver)",
                                 expert.group.PROTOCOL, expert.severity.WARN),
  unknown_type = ProtoExpert.new("coemu.unknown_type", "Unknown message type (answered with STATUS, cause 97)",
                                 expert.group.PROTOCOL, expert.severity.WARN),
  unknown_ie = ProtoExpert.new("coemu.unknown_ie", "Unknown IE", expert.group.PROTOCOL, expert.severity.NOTE),
  unknown_ie_cr = ProtoExpert.new("coemu.unknown_ie_cr",
                                  "Unknown comprehension-required IE (cause 99)",
                                  expert.group.PROTOCOL, expert.severity.WARN),
  bad_ie = ProtoExpert.new("coemu.bad_ie", "Invalid IE contents (cause 100)",
                           expert.group.MALFORMED, expert.severity.ERROR),
  missing_ie = ProtoExpert.new("coemu.missing_ie", "Mandatory IE missing (cause 96)",
                               expert.group.PROTOCOL, expert.severity.WARN),
  duplicate_ie = ProtoExpert.new("coemu.duplicate_ie", "Repeated IE (skipped unread by a receiver)",
                                 expert.group.PROTOCOL, expert.severity.NOTE),
  data_malformed = ProtoExpert.new("coemu_data.malformed", "Malformed coemu DATA (dropped: rx_malformed)",
                                   expert.group.MALFORMED, expert.severity.ERROR),
  data_vci_zero = ProtoExpert.new("coemu_data.vci_zero", "VCI 0 is never valid",
                                  expert.group.MALFORMED, expert.severity.ERROR),
}
sig.experts = { E.malformed, E.unknown_kind, E.unknown_type, E.unknown_ie, E.unknown_ie_cr, E.bad_ie,
                E.missing_ie, E.duplicate_ie }
dat.experts = { E.data_malformed, E.data_vci_zero }

-- ---- helpers ----

local function valid_address(s)
  return #s >= 1 and #s <= 32 and s:match("^[A-Za-z0-9._-]+$") ~= nil
end

local function name_or_hex(names, v, digits)
  return names[v] or string.format("0x%0" .. digits .. "X", v)
end

local function cause_text(c)
  return string.format("cause %d (%s)", c, causes[c] or "unknown")
end

-- Fixed sizes of IE values; other IEs are checked in dissect_ie.
local fixed_len = { [0x04] = 64, [0x05] = 4, [0x06] = 2, [0x07] = 2, [0x08] = 1, [0x09] = 1, [0x11] = 2, [0x12] = 8 }

-- Adds one IE's value under `t`; returns a short summary for the Info column
-- and whether the value is valid.
local function dissect_ie_value(code, v, t, info)
  local n = v:len()
  if fixed_len[code] and n ~= fixed_len[code] then return false end
  if code == 0x01 or code == 0x02 or code == 0x10 then
    local s = n > 0 and v:string() or ""
    local field = code == 0x01 and F.called_party or code == 0x02 and F.calling_party or F.node_address
    if n > 0 then t:add(field, v) end
    if code == 0x01 then info.called = s elseif code == 0x02 then info.calling = s else info.address = s end
    return valid_address(s)
  elseif code == 0x03 then
    if n < 2 then return false end
    local st = v(0, 2):uint()
    t:add(F.sap_type, v(0, 2))
    local rest = n - 2
    if st == 1 then
      if rest ~= 2 then return false end
      t:add(F.sap_selector, v(2, 2))
      info.sap = tostring(v(2, 2):uint())
      return v(2, 2):uint() ~= 0
    elseif st == 2 then
      if rest < 1 or rest > 64 then return false end
      t:add(F.sap_service, v(2, rest))
      info.sap = v(2, rest):string()
      return true
    elseif st == 3 then
      info.sap = "*"
      return rest == 0
    end
    if rest > 0 then t:add(F.sap_value, v(2, rest)) end
    info.sap = string.format("type %d", st)
    return true  -- an unknown SAP type is well formed (section 5)
  elseif code == 0x04 then
    for d, dir in ipairs({ "tx", "rx" }) do
      local base_off = (d - 1) * 32
      local st = t:add(FLOW_ITEM[dir], v(base_off, 32))
      for i, f in ipairs(FLOW[dir]) do st:add(f, v(base_off + (i - 1) * 4, 4)) end
      local svc = v(base_off + 20, 4):uint()
      st:append_text(string.format(": %s, %d bytes/s", service_types[svc] or tostring(svc),
                                   v(base_off, 4):uint()))
      if d == 1 then info.traffic = service_types[svc] or tostring(svc) end
    end
    return true
  elseif code == 0x05 then
    t:add(F.vci, v)
    info.vci = v:uint()
    return v:uint() ~= 0
  elseif code == 0x06 then
    t:add(F.cause, v(0, 1))
    t:add(F.location, v(1, 1))
    info.cause = v(0, 1):uint()
    return causes[v(0, 1):uint()] ~= nil and v(1, 1):uint() <= 2
  elseif code == 0x07 then
    t:add(F.endpoint_ref, v)
    info.party = v:uint()
    return true
  elseif code == 0x08 then
    t:add(F.bearer, v)
    info.bearer = v:uint()
    return v:uint() == 1 or v:uint() == 2
  elseif code == 0x09 then
    t:add(F.call_state, v)
    return call_states[v:uint()] ~= nil
  elseif code == 0x0A then
    if n > 0 then t:add(F.user_data, v) end
    return n <= 256
  elseif code == 0x11 then
    t:add(F.mtu, v)
    info.mtu = v:uint()
    return true
  elseif code == 0x12 then
    t:add(F.link_speed, v)
    return true
  end
  return true
end

-- Dissects the IEs in tvb range `r` under `tree`; `hello` selects which IEs
-- belong (HELLO IEs have no place in a message). Returns the info table and
-- the set of IE codes seen.
local function dissect_ies(r, tree, hello)
  local info, seen = {}, {}
  local off, n = 0, r:len()
  while off < n do
    if n - off < 4 then
      local it = tree:add(r(off, n - off), "Truncated IE header")
      it:add_proto_expert_info(E.malformed, "IE header runs past the message (cause 100)")
      info.bad = true
      break
    end
    local code, flags, len = r(off, 1):uint(), r(off + 1, 1):uint(), r(off + 2, 2):uint()
    local fits = off + 4 + len <= n
    local span = fits and 4 + len or n - off
    local t = tree:add(F.ie_item, r(off, span))
    t:set_text(string.format("IE %s", name_or_hex(ie_types, code, 2)))
    t:add(F.ie, r(off, 1))
    local ft = t:add(F.ie_flags, r(off + 1, 1))
    ft:add(F.ie_cr, r(off + 1, 1))
    local lt = t:add(F.ie_length, r(off + 2, 2))
    if not fits then
      lt:add_proto_expert_info(E.malformed,
                               string.format("IE length %d runs past the end of the message (cause 100)", len))
      info.bad = true
      break
    end
    local known = ie_types[code] ~= nil and ((code >= 0x10) == hello)
    if seen[code] then
      t:add_proto_expert_info(E.duplicate_ie)
    elseif not known then
      if len > 0 then t:add(F.ie_value, r(off + 4, len)) end
      if bit32.band(flags, 1) ~= 0 then
        t:add_proto_expert_info(E.unknown_ie_cr)
        info.bad = true
      else
        t:add_proto_expert_info(E.unknown_ie)
      end
    else
      local ok = true
      if len > 0 then
        ok = dissect_ie_value(code, r(off + 4, len), t, info)
      else
        ok = code == 0x0A  -- only USER_DATA may be empty
      end
      if not ok then
        t:add_proto_expert_info(E.bad_ie)
        info.bad = true
      end
    end
    seen[code] = true
    off = off + 4 + len
  end
  return info, seen
end

local function add_padding(tvb, tree, field, from)
  if tvb:len() > from then tree:add(field, tvb(from)) end
end

-- ---- SIG ----

function sig.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  if n < 24 then return 0 end
  local ver, kind, hdr_len, body_len = tvb(0, 1):uint(), tvb(1, 1):uint(), tvb(2, 2):uint(), tvb(4, 2):uint()
  -- Not ours (another experiment on the shared EtherType, or a later version).
  if ver ~= 1 or hdr_len < 24 then return 0 end

  pinfo.cols.protocol = "COEMU"
  local t = tree:add(sig, tvb(), "coemu signaling")
  t:add(F.version, tvb(0, 1))
  local kt = t:add(F.kind, tvb(1, 1))
  t:add(F.hdr_len, tvb(2, 2))
  local bt = t:add(F.body_len, tvb(4, 2))
  t:add(F.rsvd, tvb(6, 2))
  t:add(F.incarnation, tvb(8, 4))
  t:add(F.peer_incarnation, tvb(12, 4))
  t:add(F.seq, tvb(16, 4))
  t:add(F.ack, tvb(20, 4))
  local seq, ack = tvb(16, 4):uint(), tvb(20, 4):uint()
  local kname = kinds[kind] or string.format("kind %d", kind)
  t:append_text(string.format(", %s", kname))

  if hdr_len > n then
    t:add_proto_expert_info(E.malformed, string.format("hdr_len %d runs past the frame (%d bytes)", hdr_len, n))
    pinfo.cols.info = string.format("%s [malformed: hdr_len %d]", kname, hdr_len)
    return n
  end
  if hdr_len > 24 then t:add(F.hdr_ext, tvb(24, hdr_len - 24)) end
  if hdr_len + body_len > n then
    bt:add_proto_expert_info(E.malformed,
                             string.format("body_len %d runs past the frame (%d bytes after the header)",
                                           body_len, n - hdr_len))
    pinfo.cols.info = string.format("%s seq=%d [malformed: body_len %d]", kname, seq, body_len)
    return n
  end
  local body = body_len > 0 and tvb(hdr_len, body_len) or nil
  add_padding(tvb, t, F.padding, hdr_len + body_len)

  if kind == 1 then
    local info = {}
    if body then
      local ht = t:add(F.hello, body)
      info = dissect_ies(body, ht, true)
    end
    if not info.address then
      t:add_proto_expert_info(E.missing_ie, "HELLO without NODE_ADDRESS")
    end
    pinfo.cols.info = string.format("HELLO %s%s", info.address or "?",
                                    info.mtu and string.format(" mtu=%d", info.mtu) or "")
  elseif kind == 2 then
    pinfo.cols.info = string.format("seq=%d ack=%d ", seq, ack)
    if not body or body_len < 8 then
      t:add_proto_expert_info(E.malformed, "message shorter than 8 bytes")
      pinfo.cols.info:append("[malformed message]")
      return n
    end
    local mtype, length, cref = body(0, 1):uint(), body(2, 2):uint(), body(4, 4):uint()
    local mname = msg_types[mtype] or string.format("type 0x%02X", mtype)
    local mt = t:add(F.msg, body)
    mt:set_text(mname)
    local tt = mt:add(F.msg_type, body(0, 1))
    mt:add(F.msg_rsvd, body(1, 1))
    local lt = mt:add(F.msg_length, body(2, 2))
    local ct = mt:add(F.call_ref, body(4, 4))
    ct:add(F.call_ref_flag, body(4, 4))
    ct:add(F.call_ref_value, body(4, 4))
    local to_orig = bit32.band(cref, 0x80000000) ~= 0
    local crv = bit32.band(cref, 0x7FFFFFFF)
    local text = string.format("%s call_ref=%d%s", mname, crv, to_orig and " (to originator)" or "")
    if length + 8 ~= body_len then
      lt:add_proto_expert_info(E.malformed,
                               string.format("length %d + 8 disagrees with body_len %d", length, body_len))
      pinfo.cols.info:append(text .. " [malformed: length]")
      return n
    end
    if not msg_types[mtype] then tt:add_proto_expert_info(E.unknown_type) end
    local info, seen = {}, {}
    if length > 0 then info, seen = dissect_ies(body(8, length), mt, false) end
    for _, code in ipairs(mandatory[mtype] or {}) do
      if not seen[code] then
        mt:add_proto_expert_info(E.missing_ie, string.format("Mandatory IE %s missing (cause 96)", ie_types[code]))
      end
    end
    if info.calling or info.called then
      text = text .. string.format(" %s -> %s", info.calling or "?", info.called or "?")
      if info.sap then text = text .. ":" .. info.sap end
    end
    if info.bearer == 2 then text = text .. " p2mp" end
    if info.party then text = text .. string.format(" party=%d", info.party) end
    if info.traffic then text = text .. " " .. info.traffic end
    if info.vci then text = text .. string.format(" vci=%d", info.vci) end
    if info.cause then text = text .. " " .. cause_text(info.cause) end
    if info.bad then text = text .. " [bad IE]" end
    pinfo.cols.info:append(text)
  elseif kind == 3 then
    pinfo.cols.info = string.format("ACK ack=%d", ack)
  elseif kind == 4 then
    pinfo.cols.info = string.format("RESET peer_incarnation=0x%08X", tvb(12, 4):uint())
  else
    kt:add_proto_expert_info(E.unknown_kind)
    pinfo.cols.info = kname
  end
  return n
end

-- ---- DATA ----

function dat.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  if n < 8 then return 0 end
  pinfo.cols.protocol = "COEMU-DATA"
  local vci, len = tvb(0, 4):uint(), tvb(4, 2):uint()
  local t = tree:add(dat, tvb(), "coemu data")
  local vt = t:add(D.vci, tvb(0, 4))
  local lt = t:add(D.len, tvb(4, 2))
  t:add(D.flags, tvb(6, 2))
  t:append_text(string.format(", VCI %d, %d bytes", vci, len))
  pinfo.cols.info = string.format("DATA vci=%d len=%d", vci, len)
  if vci == 0 then vt:add_proto_expert_info(E.data_vci_zero) end
  if 8 + len > n then
    lt:add_proto_expert_info(E.data_malformed,
                             string.format("len %d exceeds the %d bytes the frame carries", len, n - 8))
    pinfo.cols.info:append(" [malformed]")
    if n > 8 then t:add(D.payload, tvb(8)) end
    return n
  end
  if len > 0 then t:add(D.payload, tvb(8, len)) end
  add_padding(tvb, t, D.padding, 8 + len)
  return n
end

local ethertype = DissectorTable.get("ethertype")
ethertype:add(0x88B5, sig)
ethertype:add(0x88B6, dat)
