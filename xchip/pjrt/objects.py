"""The plugin's objects behind the opaque PJRT handles, and the handle table.

A handle (`PJRT_Client*`, `PJRT_Buffer*`, ...) is the address of a zeroed 16-byte slot
that the plugin owns, and the key of its object in `HANDLES`. Most handle types are
opaque to the framework, but since PJRT 0.105 `PJRT_Error` and `PJRT_Memory` start with a
`vtable` pointer that jaxlib reads (null: "use the API table"), so every handle must be
readable memory whose first word is zero. A slot is reused only after its handle was
destroyed and drained, as malloc would; while alive, handles are unique across kinds
(the native destroy queue frees any kind through one entry).
"""

from __future__ import annotations

import ctypes
import threading

from . import abi
from .abi import Code


class PjrtError(Exception):
    """Raised inside an entry; the table turns it into a `PJRT_Error*` for the caller."""

    def __init__(self, code: int, message: str, payloads: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.payloads = dict(payloads or {})


class Handles:
    _SLOT = 16            # bytes per handle: the vtable word and room to spare
    _CHUNK = 4096         # slots per allocation

    def __init__(self):
        self._objects: dict[int, object] = {}
        self._chunks: list = []     # the zeroed memory the handles point into, never freed
        self._free: list[int] = []
        self._next = 0
        self._end = 0

    def add(self, obj) -> int:
        if self._free:
            h = self._free.pop()
        else:
            if self._next == self._end:
                chunk = (ctypes.c_uint64 * (self._CHUNK * self._SLOT // 8))()
                self._chunks.append(chunk)
                self._next = ctypes.addressof(chunk)
                self._end = self._next + self._CHUNK * self._SLOT
            h = self._next
            self._next += self._SLOT
        self._objects[h] = obj
        return h

    def get(self, handle, kind: type):
        obj = self._objects.get(handle)
        if type(obj) is not kind and not isinstance(obj, kind):
            what = "null" if not handle else ("unknown or destroyed" if obj is None else type(obj).__name__)
            raise PjrtError(Code.INVALID_ARGUMENT, f"expected a {kind.__name__} handle, got a {what} handle "
                                                   f"({handle or 0:#x})")
        return obj

    def peek(self, handle):
        return self._objects.get(handle)

    def release(self, handle: int) -> None:
        if self._objects.pop(handle, None) is not None:
            self._free.append(handle)

    def __len__(self) -> int:
        return len(self._objects)

    def count(self, kind: type) -> int:
        return sum(isinstance(o, kind) for o in list(self._objects.values()))

    def live(self, kind: type) -> list:
        return [o for o in list(self._objects.values()) if type(o) is kind]


HANDLES = Handles()


class CString:
    """Bytes at a stable address for as long as the owner keeps this object."""

    __slots__ = ("buffer", "ptr", "size")

    def __init__(self, text: str | bytes):
        data = text.encode() if isinstance(text, str) else bytes(text)
        self.buffer = ctypes.create_string_buffer(data, len(data) + 1)
        self.ptr = ctypes.addressof(self.buffer)
        self.size = len(data)


class NamedValues:
    """A `PJRT_NamedValue[]` built from a dict (str, int, bool, list of ints)."""

    def __init__(self, values: dict):
        self._keep: list = []
        self.array = (abi.NamedValue * max(1, len(values)))()
        self.count = len(values)
        for nv, (name, value) in zip(self.array, values.items()):
            key = CString(name)
            self._keep.append(key)
            nv.struct_size = ctypes.sizeof(abi.NamedValue)
            nv.name, nv.name_size = key.ptr, key.size
            if isinstance(value, bool):
                nv.type, nv.bool_value, nv.value_size = abi.NV_BOOL, value, 1
            elif isinstance(value, int):
                nv.type, nv.int64_value, nv.value_size = abi.NV_INT64, value, 1
            elif isinstance(value, str):
                text = CString(value)
                self._keep.append(text)
                nv.type, nv.string_value, nv.value_size = abi.NV_STRING, text.ptr, text.size
            else:
                ints = (ctypes.c_int64 * max(1, len(value)))(*value)
                self._keep.append(ints)
                nv.type, nv.int64_array_value, nv.value_size = abi.NV_INT64_LIST, ctypes.addressof(ints), len(value)
        self.ptr = ctypes.addressof(self.array)


class Error:
    __slots__ = ("code", "message", "payloads")

    def __init__(self, code: int, message: str, payloads: dict[str, str] | None = None):
        self.code = code
        self.message = CString(message)
        self.payloads = [(CString(k), CString(v)) for k, v in (payloads or {}).items()]


def new_error(code: int, message: str, payloads: dict[str, str] | None = None) -> int:
    return HANDLES.add(Error(code, message, payloads))


_OnReady = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class Event:
    """Work is synchronous, so the plugin's own events are born ready (one shared object,
    `READY`, under as many handles as asked for); only events the framework makes with
    PJRT_Event_Create start pending and wait for PJRT_Event_Set."""

    def __init__(self, ready: bool = True):
        self._done = threading.Event()
        self.error: tuple[int, str] | None = None
        self._callbacks: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        if ready:
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def error_handle(self) -> int | None:
        """A new `PJRT_Error*` for the outcome (the receiver owns it), or None."""
        return None if self.error is None else new_error(*self.error)

    def on_ready(self, callback: int, user_arg: int) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append((callback, user_arg))
                return
        _OnReady(callback)(self.error_handle(), user_arg)

    def set(self, error: tuple[int, str] | None) -> None:
        with self._lock:
            if self._done.is_set():
                raise PjrtError(Code.FAILED_PRECONDITION, "PJRT_Event_Set: the event is already set")
            self.error = error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback, user_arg in callbacks:
            _OnReady(callback)(self.error_handle(), user_arg)

    def wait(self) -> None:
        self._done.wait()


READY = Event()


PLATFORM_NAME = "xchip"
MEMORY_KIND = "device"   # JAX's name for a device's default memory; there is one memory


class DeviceDescription:
    def __init__(self, device_id: int, kind: str, attributes: dict):
        self.id = device_id
        self.kind = CString(kind)
        self.to_string = CString(f"XchipDevice(id={device_id})")
        self.debug_string = CString(f"XchipDevice(id={device_id}, kind={kind!r}, process=0)")
        self.attributes = NamedValues(attributes)


class Memory:
    def __init__(self, memory_id: int):
        self.id = memory_id
        self.kind = CString(MEMORY_KIND)
        self.kind_id = 0
        self.to_string = CString(f"XchipMemory(id={memory_id}, kind={MEMORY_KIND})")
        self.debug_string = self.to_string
        self.device_handles = (ctypes.c_void_p * 1)()


class Device:
    def __init__(self, device_id: int, description_handle: int, memory_handle: int):
        self.id = device_id
        self.description = description_handle
        self.memory = memory_handle
        self.memory_handles = (ctypes.c_void_p * 1)(memory_handle)


class Client:
    """One host device, with one memory. The device is the host CPU as xchip's CPU backend
    sees it; the description's attributes say which xchip target compiles for it."""

    def __init__(self, platform_version: str, device_kind: str, attributes: dict):
        self.platform_name = CString(PLATFORM_NAME)
        self.platform_version = CString(platform_version)
        description = DeviceDescription(0, device_kind, attributes)
        self.description_handle = HANDLES.add(description)
        memory = Memory(0)
        self.memory_handle = HANDLES.add(memory)
        device = Device(0, self.description_handle, self.memory_handle)
        self.device_handle = HANDLES.add(device)
        memory.device_handles[0] = self.device_handle
        self.device_handles = (ctypes.c_void_p * 1)(self.device_handle)
        self.memory_handles = (ctypes.c_void_p * 1)(self.memory_handle)
        self.device = device
        self.memory = memory
        self.description = description

    def check_device(self, handle) -> None:
        if handle and handle != self.device_handle:
            raise PjrtError(Code.INVALID_ARGUMENT, f"device handle {handle:#x} is not this client's device")

    def check_memory(self, handle) -> None:
        if handle and handle != self.memory_handle:
            raise PjrtError(Code.INVALID_ARGUMENT, f"memory handle {handle:#x} is not this client's memory")

    def release(self) -> None:
        for h in (self.description_handle, self.memory_handle, self.device_handle):
            HANDLES.release(h)
