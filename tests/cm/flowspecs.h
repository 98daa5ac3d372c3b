// FLOWSPECs and link configurations the QoS tests ask for.
#pragma once

#include "cm/call_manager.h"

namespace cm {

inline FlowSpec guaranteed(uint32_t rate, uint32_t bucket = 3000) {
  FlowSpec f;
  f.service_type = 3;
  f.token_rate = rate;
  f.bucket = bucket;
  f.peak = rate;
  return f;
}

// A call manager whose admission hands out `bytes_per_s` each way.
inline CmConfig link(uint64_t bytes_per_s) {
  CmConfig c;
  c.link_bytes_per_s = bytes_per_s;
  return c;
}

}  // namespace cm
