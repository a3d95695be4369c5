// Events. The runtime executes synchronously, so every event is born ready and is
// nothing more than an optional error.
#pragma once

#include <optional>

#include "common.h"

struct PJRT_Event {
  std::optional<pjrt_tt::Status> error;  // empty: completed successfully
};

namespace pjrt_tt {

inline PJRT_Event* ReadyEvent() { return new PJRT_Event{}; }
inline PJRT_Event* FailedEvent(Status error) { return new PJRT_Event{std::move(error)}; }

}  // namespace pjrt_tt
