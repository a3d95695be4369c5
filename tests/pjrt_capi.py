"""The PJRT C API of pjrt_tt/libpjrt_tt.so driven with ctypes, as a framework drives it
(for tests that feed the entry points bad input: tests/test_errors.py, tests/test_fuzz.py).

Only the entries those tests need are described here; the slot order comes from the
pjrt_c_api.h the shim is built against (the xla-cpu-pjrt package)."""
from __future__ import annotations

import ctypes
import re
from pathlib import Path

c = ctypes
CODES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
         5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
         9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
         13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


def header_path() -> Path:
    import xla_plugins.xla_cpu_pjrt as m
    return Path(m.__file__).parent / "include" / "pjrt_c_api.h"


class ClientCreate(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("create_options", c.c_void_p), ("num_options", c.c_size_t),
                ("kv_get_callback", c.c_void_p), ("kv_get_user_arg", c.c_void_p),
                ("kv_put_callback", c.c_void_p), ("kv_put_user_arg", c.c_void_p),
                ("client", c.c_void_p),
                ("kv_try_get_callback", c.c_void_p), ("kv_try_get_user_arg", c.c_void_p)]


class Program(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("code", c.c_char_p), ("code_size", c.c_size_t),
                ("format", c.c_char_p), ("format_size", c.c_size_t)]


class Compile(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("client", c.c_void_p), ("program", c.c_void_p),
                ("compile_options", c.c_char_p), ("compile_options_size", c.c_size_t),
                ("executable", c.c_void_p)]


class BufferFromHost(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("client", c.c_void_p), ("data", c.c_void_p), ("type", c.c_int),
                ("dims", c.c_void_p), ("num_dims", c.c_size_t),
                ("byte_strides", c.c_void_p), ("num_byte_strides", c.c_size_t),
                ("host_buffer_semantics", c.c_int), ("device", c.c_void_p), ("memory", c.c_void_p),
                ("device_layout", c.c_void_p), ("done_with_host_buffer", c.c_void_p),
                ("buffer", c.c_void_p)]


class AddressableDevices(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("client", c.c_void_p), ("addressable_devices", c.c_void_p),
                ("num_addressable_devices", c.c_size_t)]


class GetExecutable(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("loaded_executable", c.c_void_p), ("executable", c.c_void_p)]


class Serialize(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("executable", c.c_void_p), ("serialized_bytes", c.c_void_p), ("serialized_bytes_size", c.c_size_t),
                ("serialized_executable", c.c_void_p), ("serialized_executable_deleter", c.c_void_p)]


class DeserializeAndLoad(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("client", c.c_void_p), ("serialized_executable", c.c_char_p),
                ("serialized_executable_size", c.c_size_t), ("loaded_executable", c.c_void_p),
                ("overridden_serialized_compile_options", c.c_char_p),
                ("overridden_serialized_compile_options_size", c.c_size_t)]


class Handle(c.Structure):   # the args of every *_Destroy entry: struct_size, extension, handle
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p), ("handle", c.c_void_p)]


class ErrorMessage(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("error", c.c_void_p), ("message", c.c_void_p), ("message_size", c.c_size_t)]


class ErrorCode(c.Structure):
    _fields_ = [("struct_size", c.c_size_t), ("extension_start", c.c_void_p),
                ("error", c.c_void_p), ("code", c.c_int)]


class PjrtError(Exception):
    def __init__(self, code: int, message: str):
        self.code, self.message = code, message
        super().__init__(f"{CODES.get(code, code)}: {message}")


class Api:
    def __init__(self, library: str | Path):
        text = header_path().read_text()
        table = text[text.index("typedef struct PJRT_Api {"):text.index("} PJRT_Api;")]
        names = re.findall(r"_PJRT_API_STRUCT_FIELD\((\w+)\)", table)
        self.lib = c.CDLL(str(library))
        self.lib.GetPjrtApi.restype = c.c_void_p
        api = self.lib.GetPjrtApi()
        first_slot = 40  # struct_size, extension_start, PJRT_Api_Version
        self.slots = {n: c.c_void_p.from_address(api + first_slot + 8 * i).value for i, n in enumerate(names)}

    def raw(self, entry: str, args: c.Structure | c.Array) -> int | None:
        """Calls `entry` with `args`; returns the PJRT_Error pointer (None: success)."""
        fn = c.CFUNCTYPE(c.c_void_p, c.c_void_p)(self.slots[entry])
        return fn(c.addressof(args))

    def take_error(self, error: int) -> PjrtError:
        msg = ErrorMessage(struct_size=c.sizeof(ErrorMessage), error=error)
        c.CFUNCTYPE(None, c.c_void_p)(self.slots["PJRT_Error_Message"])(c.addressof(msg))
        text = c.string_at(msg.message, msg.message_size).decode("utf-8", "replace")
        code = ErrorCode(struct_size=c.sizeof(ErrorCode), error=error)
        self.raw("PJRT_Error_GetCode", code)
        # the args are kept in a name: addressof() of a temporary hands C freed memory
        destroy = Handle(struct_size=c.sizeof(Handle), handle=error)
        c.CFUNCTYPE(None, c.c_void_p)(self.slots["PJRT_Error_Destroy"])(c.addressof(destroy))
        return PjrtError(code.code, text)

    def call(self, entry: str, args) -> None:
        error = self.raw(entry, args)
        if error:
            raise self.take_error(error)

    def destroy(self, entry: str, handle: int) -> None:
        self.call(entry, Handle(struct_size=c.sizeof(Handle), handle=handle))

    # --- the entries the tests drive ------------------------------------------------
    def client(self) -> int:
        args = ClientCreate(struct_size=c.sizeof(ClientCreate))
        self.call("PJRT_Client_Create", args)
        return args.client

    def devices(self, client: int) -> list[int]:
        args = AddressableDevices(struct_size=c.sizeof(AddressableDevices), client=client)
        self.call("PJRT_Client_AddressableDevices", args)
        array = c.cast(args.addressable_devices, c.POINTER(c.c_void_p))
        return [array[i] for i in range(args.num_addressable_devices)]

    def compile(self, client: int, code: bytes, fmt: str, options: bytes = b"",
                struct_size: int | None = None, program_struct_size: int | None = None) -> int:
        """A loaded executable (the caller destroys it), or PjrtError. A struct_size past the
        real struct is given zeroed memory behind it, as a newer framework's would hold."""
        program = Program(struct_size=program_struct_size if program_struct_size is not None else c.sizeof(Program),
                          code=code, code_size=len(code), format=fmt.encode(), format_size=len(fmt))
        holder = (c.c_char * (c.sizeof(Compile) + 64))()
        args = Compile.from_buffer(holder)
        args.struct_size = struct_size if struct_size is not None else c.sizeof(Compile)
        args.client, args.program = client, c.addressof(program)
        args.compile_options, args.compile_options_size = options, len(options)
        self.call("PJRT_Client_Compile", args)
        return args.executable

    def serialize(self, loaded: int) -> bytes:
        """PJRT_Executable_Serialize of a loaded executable's PJRT_Executable, or PjrtError."""
        get = GetExecutable(struct_size=c.sizeof(GetExecutable), loaded_executable=loaded)
        self.call("PJRT_LoadedExecutable_GetExecutable", get)
        try:
            args = Serialize(struct_size=c.sizeof(Serialize), executable=get.executable)
            self.call("PJRT_Executable_Serialize", args)
            data = c.string_at(args.serialized_bytes, args.serialized_bytes_size)
            c.CFUNCTYPE(None, c.c_void_p)(args.serialized_executable_deleter)(args.serialized_executable)
            return data
        finally:
            self.destroy("PJRT_Executable_Destroy", get.executable)

    def deserialize(self, client: int, data: bytes, options: bytes | None = None) -> int:
        """A loaded executable from serialized bytes (the caller destroys it), or PjrtError."""
        args = DeserializeAndLoad(struct_size=c.sizeof(DeserializeAndLoad), client=client,
                                  serialized_executable=data, serialized_executable_size=len(data))
        if options is not None:
            args.overridden_serialized_compile_options = options
            args.overridden_serialized_compile_options_size = len(options)
        self.call("PJRT_Executable_DeserializeAndLoad", args)
        return args.loaded_executable

    def buffer_from_host(self, client: int, device: int, data: c.Array, element_type: int, dims,
                         strides=None, struct_size: int | None = None, at: int = 0) -> int:
        """A buffer (the caller destroys it), or PjrtError. `at`: the byte of `data` where
        element [0, ..] is (negative strides reach below it)."""
        dims_array = (c.c_int64 * max(len(dims), 1))(*dims)
        strides_array = (c.c_int64 * max(len(strides or ()), 1))(*(strides or ()))
        holder = (c.c_char * (c.sizeof(BufferFromHost) + 64))()
        args = BufferFromHost.from_buffer(holder)
        args.struct_size = struct_size if struct_size is not None else c.sizeof(BufferFromHost)
        args.client, args.data, args.type = client, c.addressof(data) + at, element_type
        args.dims, args.num_dims = c.addressof(dims_array), len(dims)
        if strides is not None:
            args.byte_strides, args.num_byte_strides = c.addressof(strides_array), len(strides)
        args.device = device
        self.call("PJRT_Client_BufferFromHostBuffer", args)
        if args.done_with_host_buffer:
            self.destroy("PJRT_Event_Destroy", args.done_with_host_buffer)
        return args.buffer
