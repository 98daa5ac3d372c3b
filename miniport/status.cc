#include "miniport/status.h"

namespace miniport {

std::string_view to_string(Status s) noexcept {
  switch (s) {
    case Status::kSuccess: return "SUCCESS";
    case Status::kPending: return "PENDING";
    case Status::kNotRecognized: return "NOT_RECOGNIZED";
    case Status::kNotAccepted: return "NOT_ACCEPTED";
    case Status::kCallActive: return "CALL_ACTIVE";
    case Status::kFailure: return "FAILURE";
    case Status::kResources: return "RESOURCES";
    case Status::kNotSupported: return "NOT_SUPPORTED";
    case Status::kClosing: return "CLOSING";
    case Status::kRequestAborted: return "REQUEST_ABORTED";
    case Status::kInvalidLength: return "INVALID_LENGTH";
    case Status::kInvalidData: return "INVALID_DATA";
    case Status::kBufferTooShort: return "BUFFER_TOO_SHORT";
    case Status::kInvalidOid: return "INVALID_OID";
    case Status::kAdapterRemoved: return "ADAPTER_REMOVED";
    case Status::kInvalidSap: return "INVALID_SAP";
    case Status::kSapInUse: return "SAP_IN_USE";
    case Status::kInvalidAddress: return "INVALID_ADDRESS";
    case Status::kVcNotActivated: return "VC_NOT_ACTIVATED";
    case Status::kDestOutOfOrder: return "DEST_OUT_OF_ORDER";
    case Status::kVcNotAvailable: return "VC_NOT_AVAILABLE";
    case Status::kCellrateNotAvailable: return "CELLRATE_NOT_AVAILABLE";
    case Status::kIncompatableQos: return "INCOMPATABLE_QOS";
    case Status::kNoRouteToDestination: return "NO_ROUTE_TO_DESTINATION";
  }
  return "UNKNOWN";
}

}  // namespace miniport
