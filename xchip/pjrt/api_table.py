"""The `PJRT_Api` table: one ctypes callback per PJRT function, wrapped in the capsule
that `jax._src.xla_bridge.register_plugin(..., c_api=...)` takes.

Every PJRT function has the shape `PJRT_Error* f(Args*)`. `impl(name, *fields)` registers
the Python body of one; the table wraps it so that (1) the caller's `struct_size` is
checked to cover every field the body touches (an older framework passes shorter
structs), (2) any exception becomes a `PJRT_Error*` and never escapes into C++, and
(3) the handle kinds are checked. Functions without a body answer UNIMPLEMENTED with their
name, except the `*_Destroy` ones, which go to the native queue (destroy_queue.c), and
the three whose errors jaxlib turns into a process abort (`PJRT_Device_GetAttributes`,
`PJRT_LoadedExecutable_AddressableDeviceLogicalIds`,
`PJRT_LoadedExecutable_GetDeviceAssignment`), which are implemented for real.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable

from . import abi, buffers, destroy_queue
from .abi import Code
from .buffers import Buffer
from .executable import Executable, compile_stablehlo
from .objects import (HANDLES, READY, Client, Device, DeviceDescription, Error, Event, Memory, NamedValues,
                      PjrtError, new_error)

_ENTRY = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
_PAYLOAD_VISITOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.c_void_p)
_IMPLS: dict[str, tuple[Callable, type, int]] = {}
# XCHIP_PJRT_TRACE=1 prints every PJRT call the framework makes (to stderr)
_TRACE = os.environ.get("XCHIP_PJRT_TRACE", "") == "1"
# void functions: a failure cannot be reported, so their bodies must not fail
_VOID = {"PJRT_Error_Message"}


def impl(name: str, *fields: str):
    """Registers the body of PJRT function `name`, which reads or writes `fields` of its
    args struct (the caller's struct must be at least that long)."""
    cls = abi.args_type(name)
    need = max((getattr(cls, f).offset + getattr(cls, f).size for f in fields), default=16)

    def register(fn):
        if name in _IMPLS:
            raise RuntimeError(f"{name} registered twice")
        _IMPLS[name] = (fn, cls, need)
        return fn
    return register


class LoadedExecutable:
    def __init__(self, executable: Executable, client: Client):
        self.executable = executable
        self.client = client
        self.deleted = False


# -- errors ------------------------------------------------------------------------------

_UNKNOWN_ERROR = Error(Code.INTERNAL, "xchip PJRT plugin: PJRT_Error_Message was given an unknown error handle")


@impl("PJRT_Error_Message", "error", "message", "message_size")
def _error_message(a):
    err = HANDLES.peek(a.error)
    if type(err) is not Error:
        err = _UNKNOWN_ERROR
    a.message, a.message_size = err.message.ptr, err.message.size


@impl("PJRT_Error_GetCode", "error", "code")
def _error_code(a):
    a.code = HANDLES.get(a.error, Error).code


@impl("PJRT_Error_ForEachPayload", "error", "visitor", "user_arg")
def _error_payloads(a):
    # jaxlib asks every error for its payloads; an error here would be asked in turn
    # (an endless loop), so the body must not fail on a valid error.
    err = HANDLES.get(a.error, Error)
    if err.payloads and a.visitor:
        visit = _PAYLOAD_VISITOR(a.visitor)
        for key, value in err.payloads:
            visit(key.ptr, key.size, value.ptr, value.size, a.user_arg)


# -- plugin ------------------------------------------------------------------------------

_PLUGIN_ATTRIBUTES: NamedValues | None = None


def _plugin_attributes() -> NamedValues:
    global _PLUGIN_ATTRIBUTES
    if _PLUGIN_ATTRIBUTES is None:
        from jaxlib.mlir.dialects import stablehlo
        version = lambda v: [int(x) for x in v.split(".")]  # noqa: E731
        # The StableHLO version range xchip's importer reads: jaxlib serializes the program
        # for the newest version both sides know.
        _PLUGIN_ATTRIBUTES = NamedValues({
            "stablehlo_current_version": version(stablehlo.get_current_version()),
            "stablehlo_minimum_version": version(stablehlo.get_minimum_version()),
        })
    return _PLUGIN_ATTRIBUTES


@impl("PJRT_Plugin_Initialize")
def _plugin_initialize(a):
    destroy_queue.library()


@impl("PJRT_Plugin_Attributes", "attributes", "num_attributes")
def _plugin_attrs(a):
    attrs = _plugin_attributes()
    a.attributes, a.num_attributes = attrs.ptr, attrs.count


# -- events ------------------------------------------------------------------------------

@impl("PJRT_Event_IsReady", "event", "is_ready")
def _event_is_ready(a):
    a.is_ready = HANDLES.get(a.event, Event).ready


@impl("PJRT_Event_Error", "event")
def _event_error(a):
    return HANDLES.get(a.event, Event).error_handle()


@impl("PJRT_Event_Await", "event")
def _event_await(a):
    event = HANDLES.get(a.event, Event)
    event.wait()
    return event.error_handle()


@impl("PJRT_Event_OnReady", "event", "callback", "user_arg")
def _event_on_ready(a):
    if not a.callback:
        raise PjrtError(Code.INVALID_ARGUMENT, "PJRT_Event_OnReady: null callback")
    HANDLES.get(a.event, Event).on_ready(a.callback, a.user_arg)


@impl("PJRT_Event_Create", "event")
def _event_create(a):
    a.event = HANDLES.add(Event(ready=False))


@impl("PJRT_Event_Set", "event", "error_code", "error_message", "error_message_size")
def _event_set(a):
    error = None
    if a.error_code:   # PJRT_Error_Code_OK is 0
        error = (a.error_code, ctypes.string_at(a.error_message, a.error_message_size).decode(errors="replace")
                 if a.error_message else "")
    HANDLES.get(a.event, Event).set(error)


# -- client ------------------------------------------------------------------------------

def _platform_version() -> str:
    import platform

    import xchip
    return f"xchip {xchip.__version__} (CPU backend: TVM/LLVM, {platform.machine()})"


@impl("PJRT_Client_Create", "create_options", "num_options", "client")
def _client_create(a):
    destroy_queue.drain()
    if a.num_options:
        options = abi.NamedValue * a.num_options
        names = [ctypes.string_at(nv.name, nv.name_size).decode() for nv in options.from_address(a.create_options)]
        raise PjrtError(Code.INVALID_ARGUMENT, f"the xchip plugin takes no client options, got {names}")
    a.client = HANDLES.add(Client(_platform_version(), "xchip-cpu", {"xchip_target": "cpu"}))


@impl("PJRT_Client_PlatformName", "client", "platform_name", "platform_name_size")
def _client_platform_name(a):
    c = HANDLES.get(a.client, Client)
    a.platform_name, a.platform_name_size = c.platform_name.ptr, c.platform_name.size


@impl("PJRT_Client_PlatformVersion", "client", "platform_version", "platform_version_size")
def _client_platform_version(a):
    c = HANDLES.get(a.client, Client)
    a.platform_version, a.platform_version_size = c.platform_version.ptr, c.platform_version.size


@impl("PJRT_Client_ProcessIndex", "client", "process_index")
def _client_process_index(a):
    HANDLES.get(a.client, Client)
    a.process_index = 0


@impl("PJRT_Client_Devices", "client", "devices", "num_devices")
def _client_devices(a):
    c = HANDLES.get(a.client, Client)
    a.devices, a.num_devices = ctypes.addressof(c.device_handles), 1


@impl("PJRT_Client_AddressableDevices", "client", "addressable_devices", "num_addressable_devices")
def _client_addressable_devices(a):
    c = HANDLES.get(a.client, Client)
    a.addressable_devices, a.num_addressable_devices = ctypes.addressof(c.device_handles), 1


@impl("PJRT_Client_LookupDevice", "client", "id", "device")
def _client_lookup_device(a):
    c = HANDLES.get(a.client, Client)
    if a.id != c.device.id:
        raise PjrtError(Code.INVALID_ARGUMENT, f"no xchip device with id {a.id} (there is one, id 0)")
    a.device = c.device_handle


@impl("PJRT_Client_LookupAddressableDevice", "client", "local_hardware_id", "addressable_device")
def _client_lookup_addressable(a):
    c = HANDLES.get(a.client, Client)
    if a.local_hardware_id != 0:
        raise PjrtError(Code.INVALID_ARGUMENT, f"no xchip device with local hardware id {a.local_hardware_id}")
    a.addressable_device = c.device_handle


@impl("PJRT_Client_AddressableMemories", "client", "addressable_memories", "num_addressable_memories")
def _client_memories(a):
    c = HANDLES.get(a.client, Client)
    a.addressable_memories, a.num_addressable_memories = ctypes.addressof(c.memory_handles), 1


@impl("PJRT_Client_DefaultDeviceAssignment", "client", "num_replicas", "num_partitions",
      "default_assignment_size", "default_assignment")
def _client_default_assignment(a):
    HANDLES.get(a.client, Client)
    if a.num_replicas * a.num_partitions != 1:
        raise PjrtError(Code.INVALID_ARGUMENT, f"xchip has one device: {a.num_replicas} replicas x "
                                               f"{a.num_partitions} partitions do not fit")
    if a.default_assignment_size < 1:
        raise PjrtError(Code.INVALID_ARGUMENT, "PJRT_Client_DefaultDeviceAssignment: no room for the assignment")
    ctypes.c_int.from_address(a.default_assignment).value = 0


@impl("PJRT_Client_Compile", "client", "program", "compile_options", "compile_options_size", "executable")
def _client_compile(a):
    destroy_queue.drain()
    client = HANDLES.get(a.client, Client)
    program = abi.Program.from_address(a.program)
    fmt = ctypes.string_at(program.format, program.format_size).decode(errors="replace")
    if fmt != "mlir":
        raise PjrtError(Code.UNIMPLEMENTED, f"xchip compiles StableHLO (program format 'mlir'), got '{fmt}'")
    # CompileOptionsProto (replicas, partitions, layouts, flags) is ignored: one device,
    # row-major buffers, xchip's own options.
    exe = compile_stablehlo(ctypes.string_at(program.code, program.code_size))
    a.executable = HANDLES.add(LoadedExecutable(exe, client))


@impl("PJRT_Client_BufferFromHostBuffer", "client", "data", "type", "dims", "num_dims", "byte_strides",
      "num_byte_strides", "host_buffer_semantics", "device", "memory", "device_layout",
      "done_with_host_buffer", "buffer")
def _client_buffer_from_host(a):
    destroy_queue.drain()
    client = HANDLES.get(a.client, Client)
    client.check_device(a.device)
    client.check_memory(a.memory)
    kind, _ = buffers.read_layout(a.device_layout, a.num_dims, "PJRT_Client_BufferFromHostBuffer")
    if kind != buffers.DENSE:
        raise PjrtError(Code.UNIMPLEMENTED, "xchip buffers are dense row-major; a device layout was asked for")
    buf = buffers.from_host(client, a.data, a.type, a.dims, a.num_dims, a.byte_strides, a.num_byte_strides)
    # the data was copied: the caller may reuse its host memory at once
    a.done_with_host_buffer = HANDLES.add(READY)
    a.buffer = HANDLES.add(buf)


# -- device descriptions, devices, memories ---------------------------------------------------

@impl("PJRT_DeviceDescription_Id", "device_description", "id")
def _desc_id(a):
    a.id = HANDLES.get(a.device_description, DeviceDescription).id


@impl("PJRT_DeviceDescription_ProcessIndex", "device_description", "process_index")
def _desc_process(a):
    HANDLES.get(a.device_description, DeviceDescription)
    a.process_index = 0


@impl("PJRT_DeviceDescription_Attributes", "device_description", "num_attributes", "attributes")
def _desc_attributes(a):
    attrs = HANDLES.get(a.device_description, DeviceDescription).attributes
    a.attributes, a.num_attributes = attrs.ptr, attrs.count


@impl("PJRT_DeviceDescription_Kind", "device_description", "device_kind", "device_kind_size")
def _desc_kind(a):
    d = HANDLES.get(a.device_description, DeviceDescription)
    a.device_kind, a.device_kind_size = d.kind.ptr, d.kind.size


@impl("PJRT_DeviceDescription_DebugString", "device_description", "debug_string", "debug_string_size")
def _desc_debug(a):
    d = HANDLES.get(a.device_description, DeviceDescription)
    a.debug_string, a.debug_string_size = d.debug_string.ptr, d.debug_string.size


@impl("PJRT_DeviceDescription_ToString", "device_description", "to_string", "to_string_size")
def _desc_to_string(a):
    d = HANDLES.get(a.device_description, DeviceDescription)
    a.to_string, a.to_string_size = d.to_string.ptr, d.to_string.size


@impl("PJRT_Device_GetDescription", "device", "device_description")
def _device_description(a):
    a.device_description = HANDLES.get(a.device, Device).description


@impl("PJRT_Device_IsAddressable", "device", "is_addressable")
def _device_addressable(a):
    HANDLES.get(a.device, Device)
    a.is_addressable = True


@impl("PJRT_Device_LocalHardwareId", "device", "local_hardware_id")
def _device_hardware_id(a):
    a.local_hardware_id = HANDLES.get(a.device, Device).id


@impl("PJRT_Device_AddressableMemories", "device", "memories", "num_memories")
def _device_memories(a):
    d = HANDLES.get(a.device, Device)
    a.memories, a.num_memories = ctypes.addressof(d.memory_handles), 1


@impl("PJRT_Device_DefaultMemory", "device", "memory")
def _device_default_memory(a):
    a.memory = HANDLES.get(a.device, Device).memory


@impl("PJRT_Device_GetAttributes", "device", "attributes", "num_attributes", "device_attributes",
      "attributes_deleter")
def _device_attributes(a):
    # jaxlib aborts the process if this fails: the attributes are the description's, owned
    # by the plugin, so the deleter it gets back does nothing.
    d = HANDLES.get(a.device, Device)
    attrs = HANDLES.get(d.description, DeviceDescription).attributes
    a.attributes, a.num_attributes = attrs.ptr, attrs.count
    a.device_attributes = None
    a.attributes_deleter = destroy_queue.noop_deleter()


@impl("PJRT_Device_MemoryStats", "device", "bytes_in_use")
def _device_memory_stats(a):
    HANDLES.get(a.device, Device)
    # Only bytes_in_use (the live buffers' arrays) is known: every other figure is zeroed
    # and marked unset, as far as the caller's struct reaches (newer ones are longer).
    for name, ctype in type(a)._fields_[3:]:
        field = getattr(type(a), name)
        if field.offset + field.size <= a.struct_size:
            setattr(a, name, ctype(0).value)
    a.bytes_in_use = sum(b.nbytes for b in HANDLES.live(Buffer))


@impl("PJRT_Memory_Id", "memory", "id")
def _memory_id(a):
    a.id = HANDLES.get(a.memory, Memory).id


@impl("PJRT_Memory_Kind", "memory", "kind", "kind_size")
def _memory_kind(a):
    m = HANDLES.get(a.memory, Memory)
    a.kind, a.kind_size = m.kind.ptr, m.kind.size


@impl("PJRT_Memory_Kind_Id", "memory", "kind_id")
def _memory_kind_id(a):
    a.kind_id = HANDLES.get(a.memory, Memory).kind_id


@impl("PJRT_Memory_DebugString", "memory", "debug_string", "debug_string_size")
def _memory_debug(a):
    m = HANDLES.get(a.memory, Memory)
    a.debug_string, a.debug_string_size = m.debug_string.ptr, m.debug_string.size


@impl("PJRT_Memory_ToString", "memory", "to_string", "to_string_size")
def _memory_to_string(a):
    m = HANDLES.get(a.memory, Memory)
    a.to_string, a.to_string_size = m.to_string.ptr, m.to_string.size


@impl("PJRT_Memory_AddressableByDevices", "memory", "devices", "num_devices")
def _memory_devices(a):
    m = HANDLES.get(a.memory, Memory)
    a.devices, a.num_devices = ctypes.addressof(m.device_handles), 1


# -- executables -------------------------------------------------------------------------

@impl("PJRT_Executable_Name", "executable", "executable_name", "executable_name_size")
def _exe_name(a):
    e = HANDLES.get(a.executable, Executable)
    a.executable_name, a.executable_name_size = e.name.ptr, e.name.size


@impl("PJRT_Executable_NumReplicas", "executable", "num_replicas")
def _exe_replicas(a):
    HANDLES.get(a.executable, Executable)
    a.num_replicas = 1


@impl("PJRT_Executable_NumPartitions", "executable", "num_partitions")
def _exe_partitions(a):
    HANDLES.get(a.executable, Executable)
    a.num_partitions = 1


@impl("PJRT_Executable_NumOutputs", "executable", "num_outputs")
def _exe_num_outputs(a):
    a.num_outputs = HANDLES.get(a.executable, Executable).num_outputs


@impl("PJRT_Executable_SizeOfGeneratedCodeInBytes", "executable", "size_in_bytes")
def _exe_code_size(a):
    a.size_in_bytes = HANDLES.get(a.executable, Executable).generated_code_bytes


@impl("PJRT_Executable_GetCostAnalysis", "executable", "num_properties", "properties")
def _exe_cost(a):
    HANDLES.get(a.executable, Executable)
    a.num_properties, a.properties = 0, None


@impl("PJRT_Executable_OutputElementTypes", "executable", "output_types", "num_output_types")
def _exe_output_types(a):
    e = HANDLES.get(a.executable, Executable)
    a.output_types, a.num_output_types = ctypes.addressof(e.output_types), e.num_outputs


@impl("PJRT_Executable_OutputDimensions", "executable", "num_outputs", "dims", "dim_sizes")
def _exe_output_dims(a):
    e = HANDLES.get(a.executable, Executable)
    a.num_outputs = e.num_outputs
    a.dims, a.dim_sizes = ctypes.addressof(e.output_dims), ctypes.addressof(e.output_ranks)


@impl("PJRT_Executable_OutputMemoryKinds", "executable", "num_outputs", "memory_kinds", "memory_kind_sizes")
def _exe_output_memory_kinds(a):
    e = HANDLES.get(a.executable, Executable)
    a.num_outputs = e.num_outputs
    a.memory_kinds, a.memory_kind_sizes = ctypes.addressof(e.memory_kinds), ctypes.addressof(e.memory_kind_sizes)


@impl("PJRT_Executable_ParameterMemoryKinds", "executable", "num_parameters", "memory_kinds",
      "memory_kind_sizes")
def _exe_parameter_memory_kinds(a):
    e = HANDLES.get(a.executable, Executable)
    a.num_parameters = len(e.in_types)
    a.memory_kinds, a.memory_kind_sizes = ctypes.addressof(e.memory_kinds), ctypes.addressof(e.memory_kind_sizes)


@impl("PJRT_Executable_Fingerprint", "executable", "executable_fingerprint", "executable_fingerprint_size")
def _exe_fingerprint(a):
    e = HANDLES.get(a.executable, Executable)
    a.executable_fingerprint, a.executable_fingerprint_size = e.fingerprint.ptr, e.fingerprint.size


@impl("PJRT_LoadedExecutable_GetExecutable", "loaded_executable", "executable")
def _loaded_get_executable(a):
    # The caller destroys what it gets: a new handle to the shared executable each time.
    a.executable = HANDLES.add(HANDLES.get(a.loaded_executable, LoadedExecutable).executable)


@impl("PJRT_LoadedExecutable_AddressableDevices", "executable", "addressable_devices", "num_addressable_devices")
def _loaded_devices(a):
    c = HANDLES.get(a.executable, LoadedExecutable).client
    a.addressable_devices, a.num_addressable_devices = ctypes.addressof(c.device_handles), 1


@impl("PJRT_LoadedExecutable_Fingerprint", "executable", "executable_fingerprint", "executable_fingerprint_size")
def _loaded_fingerprint(a):
    e = HANDLES.get(a.executable, LoadedExecutable).executable
    a.executable_fingerprint, a.executable_fingerprint_size = e.fingerprint.ptr, e.fingerprint.size


@impl("PJRT_LoadedExecutable_Delete", "executable")
def _loaded_delete(a):
    HANDLES.get(a.executable, LoadedExecutable).deleted = True


@impl("PJRT_LoadedExecutable_IsDeleted", "executable", "is_deleted")
def _loaded_is_deleted(a):
    a.is_deleted = HANDLES.get(a.executable, LoadedExecutable).deleted


_LOGICAL_IDS = (abi.LogicalDeviceIds * 1)()   # replica 0, partition 0
# DeviceAssignmentProto{replica_count: 1, computation_count: 1,
#                       computation_devices: [{replica_device_ids: [0]}]}
_DEVICE_ASSIGNMENT = ctypes.create_string_buffer(bytes.fromhex("080110011a030a0100"), 9)


@impl("PJRT_LoadedExecutable_AddressableDeviceLogicalIds", "executable", "addressable_device_logical_ids",
      "num_addressable_device_logical_ids")
def _loaded_logical_ids(a):
    # jaxlib aborts the process if this fails.
    HANDLES.get(a.executable, LoadedExecutable)
    a.addressable_device_logical_ids, a.num_addressable_device_logical_ids = ctypes.addressof(_LOGICAL_IDS), 1


@impl("PJRT_LoadedExecutable_GetDeviceAssignment", "executable", "serialized_bytes", "serialized_bytes_size",
      "serialized_device_assignment", "serialized_device_assignment_deleter")
def _loaded_device_assignment(a):
    # jaxlib aborts the process if this fails. The bytes are a constant: nothing to delete.
    HANDLES.get(a.executable, LoadedExecutable)
    a.serialized_bytes, a.serialized_bytes_size = ctypes.addressof(_DEVICE_ASSIGNMENT), 9
    a.serialized_device_assignment = None
    a.serialized_device_assignment_deleter = destroy_queue.noop_deleter()


@impl("PJRT_LoadedExecutable_Execute", "executable", "options", "argument_lists", "num_devices", "num_args",
      "output_lists", "device_complete_events", "execute_device")
def _loaded_execute(a):
    destroy_queue.drain()
    loaded = HANDLES.get(a.executable, LoadedExecutable)
    if loaded.deleted:
        raise PjrtError(Code.FAILED_PRECONDITION, "the executable was deleted")
    if a.num_devices != 1:
        raise PjrtError(Code.INVALID_ARGUMENT, f"xchip executes on one device, asked for {a.num_devices}")
    loaded.client.check_device(a.execute_device)
    exe = loaded.executable
    n = a.num_args
    handles = (ctypes.c_void_p * n).from_address(ctypes.c_void_p.from_address(a.argument_lists).value) if n else ()
    arrays = [HANDLES.get(h, Buffer).live_array() for h in handles]
    outs = exe.run(arrays)
    out_list = (ctypes.c_void_p * len(outs)).from_address(ctypes.c_void_p.from_address(a.output_lists).value)
    client = loaded.client
    for i, array in enumerate(outs):
        out_list[i] = HANDLES.add(Buffer(array, client))
    if a.device_complete_events:
        ctypes.c_void_p.from_address(a.device_complete_events).value = HANDLES.add(READY)


# -- buffers -----------------------------------------------------------------------------

@impl("PJRT_Buffer_ElementType", "buffer", "type")
def _buffer_type(a):
    a.type = HANDLES.get(a.buffer, Buffer).type


@impl("PJRT_Buffer_Dimensions", "buffer", "dims", "num_dims")
def _buffer_dims(a):
    b = HANDLES.get(a.buffer, Buffer)
    a.dims, a.num_dims = ctypes.addressof(b.dims), len(b.shape)


@impl("PJRT_Buffer_UnpaddedDimensions", "buffer", "unpadded_dims", "num_dims")
def _buffer_unpadded_dims(a):
    b = HANDLES.get(a.buffer, Buffer)
    a.unpadded_dims, a.num_dims = ctypes.addressof(b.dims), len(b.shape)


@impl("PJRT_Buffer_DynamicDimensionIndices", "buffer", "dynamic_dim_indices", "num_dynamic_dims")
def _buffer_dynamic_dims(a):
    HANDLES.get(a.buffer, Buffer)
    a.dynamic_dim_indices, a.num_dynamic_dims = None, 0


@impl("PJRT_Buffer_GetMemoryLayout", "buffer", "layout")
def _buffer_layout(a):
    HANDLES.get(a.buffer, Buffer).fill_layout(a.layout)


@impl("PJRT_Buffer_OnDeviceSizeInBytes", "buffer", "on_device_size_in_bytes")
def _buffer_size(a):
    a.on_device_size_in_bytes = HANDLES.get(a.buffer, Buffer).live_array().nbytes


@impl("PJRT_Buffer_Device", "buffer", "device")
def _buffer_device(a):
    a.device = HANDLES.get(a.buffer, Buffer).client.device_handle


@impl("PJRT_Buffer_Memory", "buffer", "memory")
def _buffer_memory(a):
    a.memory = HANDLES.get(a.buffer, Buffer).client.memory_handle


@impl("PJRT_Buffer_Delete", "buffer")
def _buffer_delete(a):
    HANDLES.get(a.buffer, Buffer).delete()


@impl("PJRT_Buffer_IsDeleted", "buffer", "is_deleted")
def _buffer_is_deleted(a):
    a.is_deleted = HANDLES.get(a.buffer, Buffer).deleted


@impl("PJRT_Buffer_IsOnCpu", "buffer", "is_on_cpu")
def _buffer_is_on_cpu(a):
    # The data is in host memory, but "on CPU" would let jaxlib hand out zero-copy views
    # (external references) that outlive PJRT_Buffer_Destroy; reading through
    # PJRT_Buffer_ToHostBuffer (a copy) keeps ownership simple.
    HANDLES.get(a.buffer, Buffer)
    a.is_on_cpu = False


@impl("PJRT_Buffer_ReadyEvent", "buffer", "event")
def _buffer_ready_event(a):
    HANDLES.get(a.buffer, Buffer)
    a.event = HANDLES.add(READY)


def _copy(buffer_handle: int, client: Client) -> int:
    b = HANDLES.get(buffer_handle, Buffer)
    # arrays are never written after creation: the copy shares it
    return HANDLES.add(Buffer(b.live_array(), client, b.type))


@impl("PJRT_Buffer_CopyToDevice", "buffer", "dst_device", "dst_buffer")
def _buffer_copy_to_device(a):
    destroy_queue.drain()
    client = HANDLES.get(a.buffer, Buffer).client
    client.check_device(a.dst_device)
    a.dst_buffer = _copy(a.buffer, client)


@impl("PJRT_Buffer_CopyToMemory", "buffer", "dst_memory", "dst_buffer")
def _buffer_copy_to_memory(a):
    destroy_queue.drain()
    client = HANDLES.get(a.buffer, Buffer).client
    client.check_memory(a.dst_memory)
    a.dst_buffer = _copy(a.buffer, client)


@impl("PJRT_Buffer_ToHostBuffer", "src", "host_layout", "dst", "dst_size", "event")
def _buffer_to_host(a):
    b = HANDLES.get(a.src, Buffer)
    need = buffers.to_host(b, a.dst, a.dst_size, a.host_layout)
    if not a.dst:
        a.dst_size = need
        return
    a.event = HANDLES.add(READY)


# -- the table ---------------------------------------------------------------------------

def _entry(name: str, body: Callable, cls: type, need: int) -> Callable:
    prefix = f"xchip PJRT plugin, {name}"
    from_address = cls.from_address
    void = name in _VOID

    def entry(p):
        try:
            if not p:
                raise PjrtError(Code.INVALID_ARGUMENT, f"{prefix}: null args")
            a = from_address(p)
            if a.struct_size < need:
                raise PjrtError(Code.INVALID_ARGUMENT, f"{prefix}: the caller's args struct has {a.struct_size} "
                                                       f"bytes, the plugin uses {need} (a PJRT version mismatch)")
            return body(a)
        except PjrtError as e:
            if void:
                return None
            return new_error(e.code, e.message if e.message.startswith("xchip") else f"{prefix}: {e.message}",
                             e.payloads)
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into C++
            if void:
                return None
            return new_error(Code.INTERNAL, f"{prefix} failed: {type(e).__name__}: {e}")

    if not _TRACE:
        return entry

    def traced(p):
        print(f"xchip PJRT: {name}", file=sys.stderr, flush=True)
        return entry(p)
    return traced


def _unimplemented(name: str) -> Callable:
    message = f"{name} is not implemented by the xchip PJRT plugin"

    def entry(p):
        try:
            if _TRACE:
                print(f"xchip PJRT: {name} (unimplemented)", file=sys.stderr, flush=True)
            return new_error(Code.UNIMPLEMENTED, message)
        except BaseException:  # noqa: BLE001
            return None
    return entry


IMPLEMENTED = tuple(sorted(_IMPLS))
NATIVE = tuple(sorted(n for n in abi.FUNCTIONS if n.endswith("_Destroy")))
UNIMPLEMENTED = tuple(sorted(set(abi.FUNCTIONS) - set(IMPLEMENTED) - set(NATIVE)))

_TABLE: dict = {}   # everything the C side points into, kept alive for the life of the process


def capsule():
    """The `PJRT_Api*` as a PyCapsule named "pjrt_c_api" (what `register_plugin` takes),
    built once per process."""
    if "capsule" in _TABLE:
        return _TABLE["capsule"]
    api = abi.PJRT_Api()
    api.struct_size = ctypes.sizeof(abi.PJRT_Api)
    api.extension_start = None
    api.pjrt_api_version.struct_size = ctypes.sizeof(abi.ApiVersion)
    api.pjrt_api_version.major_version = abi.API_MAJOR
    api.pjrt_api_version.minor_version = abi.API_MINOR
    callbacks = []
    destroy = destroy_queue.destroy_entry()
    for name in abi.FUNCTIONS:
        if name in NATIVE:
            setattr(api, name, destroy)
            continue
        fn = _entry(name, *_IMPLS[name]) if name in _IMPLS else _unimplemented(name)
        cb = _ENTRY(fn)
        callbacks.append(cb)
        setattr(api, name, ctypes.cast(cb, ctypes.c_void_p).value)
    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype = ctypes.py_object
    new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    _TABLE.update(api=api, callbacks=callbacks,
                  capsule=new_capsule(ctypes.addressof(api), b"pjrt_c_api", None))
    return _TABLE["capsule"]
