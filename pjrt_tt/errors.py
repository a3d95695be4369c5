"""Exceptions that cross into PJRT. The shim turns each into a PJRT_Error with the
exception's `pjrt_code` (an absl::StatusCode) and its message."""


class TTError(Exception):
    pjrt_code = 13  # INTERNAL


class InvalidArgument(TTError):
    pjrt_code = 3


class DeadlineExceeded(TTError):
    pjrt_code = 4


class ResourceExhausted(TTError):
    pjrt_code = 8


class FailedPrecondition(TTError):
    pjrt_code = 9


class StaleEntry(FailedPrecondition):
    """A serialized executable made by other code, for another system or with other
    settings (runtime/serialized.py): the framework compiles the program afresh."""


class Unavailable(TTError):
    """A peer process of a multi-process run is not there (not started, or died)."""
    pjrt_code = 14


class Unimplemented(TTError):
    pjrt_code = 12


class UnsupportedOp(Unimplemented):
    """A StableHLO op (or a case of one) that the lowering cannot map to ttnn."""

    def __init__(self, op_name: str, location: str, why: str = "", others: list | None = None):
        self.op_name, self.location, self.why = op_name, location, why
        where = f" at {location}" if location else ""
        detail = f": {why}" if why else ""
        more = ""
        if others:
            more = f"; {len(others)} more op(s) without a TT lowering: " + "; ".join(
                f"`{name}` at {loc or 'unknown location'}" for name, loc in others[:20])
        super().__init__(f"pjrt-tt cannot lower `{op_name}`{where}{detail}{more}")


class UnsupportedDtype(Unimplemented):
    """A valid element type the chip cannot hold (64-bit, complex, float16...)."""
