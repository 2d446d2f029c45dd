"""Target descriptors, capabilities and the cost model.

    from xchip import targets
    t = targets.get("h800")                 # aliases and any case; the host is "cpu"
    t.peak("bf16").value, t.capabilities, t.verification_level
    targets.estimate_kernel_graph(kernel_graph, "h20")

Descriptors are data (`data/*.toml`, one per SKU, every number with its source); the host
CPU is detected and measured (`host.py`). This package is data and arithmetic: it imports
the IR, never passes or backends.
"""

from .capabilities import HOST_REFERENCE, Capabilities
from .collectives import CollectiveEstimate, LinkModel, collective_time, link_model
from .cost_model import KernelEstimate, estimate_kernel, work_classes
from .descriptor import PEAK_KEYS, VERIFICATION_LEVELS, Target
from .estimate import ModelEstimate, estimate_kernel_graph, format_estimate
from .loader import DescriptorError, names, resolve_name
from .quantity import Link, Quantity
from .registry import all_targets, capabilities_of, get

__all__ = [
    "Capabilities", "CollectiveEstimate", "DescriptorError", "HOST_REFERENCE", "KernelEstimate", "Link",
    "LinkModel", "ModelEstimate", "PEAK_KEYS", "Quantity", "Target", "VERIFICATION_LEVELS", "all_targets",
    "capabilities_of", "collective_time", "estimate_kernel", "estimate_kernel_graph", "format_estimate", "get",
    "link_model", "names", "resolve_name", "work_classes",
]
