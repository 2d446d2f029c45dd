"""xchip IR: typed SSA graphs of StableHLO-like ops. Imports nothing else of xchip but errors."""

from . import dtypes, ops
from .dtypes import DType
from .graph import Graph, Location, Op, Region, Value
from .parser import parse_graph
from .printer import print_graph, print_op
from .types import TensorType, scalar
from .verifier import verify, verify_op

__all__ = [
    "DType", "Graph", "Location", "Op", "Region", "TensorType", "Value", "dtypes", "ops",
    "parse_graph", "print_graph", "print_op", "scalar", "verify", "verify_op",
]
