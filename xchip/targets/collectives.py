"""Modeled time of collectives over a link: latency x steps + bytes / bandwidth.

With n devices, a buffer of S bytes, per-direction bandwidth B per device and latency a per
step (the alpha-beta model):

    ring  all-reduce       2(n-1) a + 2 (n-1)/n S/B      (reduce-scatter, then all-gather)
    ring  all-gather         (n-1) a +   (n-1)/n S/B      S = the gathered (output) size
    ring  reduce-scatter     (n-1) a +   (n-1)/n S/B      S = the input size
    pairwise all-to-all      (n-1) a +   (n-1)/n S/B      S = what one device sends in total
    tree  all-reduce       2 ceil(log2 n) (a + S/B)       (binary-tree reduce, then broadcast)
    tree  all-gather / reduce-scatter
                           ceil(log2 n) a + (n-1)/n S/B   (recursive doubling / halving)

B is the link's *effective* bandwidth where the descriptor has one (for the H800: ~160 GB/s
NVLink and ~50 GB/s InfiniBand per GPU, measured in the DeepSeek-V3 report), otherwise the
nominal figure per direction (bidirectional figures are halved; figures whose direction the
source does not state are taken as bidirectional, the convention of chips.md) with a note
that the time is a lower bound. An unknown latency leaves the latency term out, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .descriptor import Target
from .quantity import Quantity

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all")
ALGORITHMS = ("ring", "tree")


@dataclass(frozen=True)
class LinkModel:
    """The numbers a collective needs: per-direction bandwidth per device, latency per step."""

    name: str
    bandwidth_gbs: float | None
    latency_us: float | None
    basis: str = ""                       # where the bandwidth comes from
    notes: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass
class CollectiveEstimate:
    kind: str
    algorithm: str
    n_devices: int
    nbytes: int
    link: str
    time_s: float | None
    latency_s: float | None
    transfer_s: float | None
    lower_bound: bool
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _per_direction(q: Quantity) -> tuple[float, str]:
    if q.direction == "unidirectional":
        return q.value, ""
    note = "" if q.direction == "bidirectional" else " (direction not stated; taken as bidirectional)"
    return q.value / 2, note


def link_model(target: Target, scope: str = "intra-node") -> LinkModel:
    """The link a collective uses on `target`: `intra-node` (NVLink, HCCS, ...) or `inter-node`."""
    if scope not in ("intra-node", "inter-node"):
        raise ValueError(f"scope must be 'intra-node' or 'inter-node', got {scope!r}")
    link = target.interconnect if scope == "intra-node" else target.scale_out
    where = "interconnect" if scope == "intra-node" else "scale_out"
    if link is None:
        return LinkModel(f"{target.name} {scope}", None, None, notes=(
            f"{target.name}: no {scope} link in the descriptor; collective not modeled",), missing=(where,))
    notes, missing = [], []
    bandwidth, basis = None, ""
    if link.effective_gbs.known:
        bandwidth, extra = _per_direction(link.effective_gbs)
        basis = f"effective {link.effective_gbs.text()} GB/s{extra}"
    elif link.nominal_gbs.known:
        bandwidth, extra = _per_direction(link.nominal_gbs)
        basis = f"nominal {link.nominal_gbs.text()} GB/s{extra}"
        missing.append(f"{where}.effective_gbs")
        notes.append(f"{target.name}: {where}.effective_gbs is unknown; nominal {link.nominal_gbs.text()} GB/s"
                     f"{extra} used ({bandwidth:g} GB/s per direction): the time is a lower bound")
    else:
        q = link.nominal_gbs
        missing.append(f"{where}.nominal_gbs")
        why = q.note or "unknown"
        notes.append(f"{target.name}: {where} ({link.name}) has no bandwidth ({why}); collective not modeled")
    latency = link.latency_us.value if link.latency_us.known else None
    if latency is None and link.latency_us.status == "unknown":
        missing.append(f"{where}.latency_us")
        notes.append(f"{target.name}: {where}.latency_us is unknown; latency term left out (time is a lower bound)")
    return LinkModel(link.name or where, bandwidth, latency, basis, tuple(notes), tuple(missing))


def collective_time(kind: str, nbytes: int, n_devices: int, link: LinkModel | Target,
                    algorithm: str = "ring", scope: str = "intra-node") -> CollectiveEstimate:
    """Time of one collective over `link` (a `LinkModel`, or a target whose link is looked up
    for `scope`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if kind == "all-to-all" and algorithm == "tree":
        raise ValueError("all-to-all has no tree algorithm: every device sends to every other")
    if n_devices < 1 or nbytes < 0:
        raise ValueError("need n_devices >= 1 and nbytes >= 0")
    notes: list[str] = []
    if isinstance(link, Target):
        target = link
        link = link_model(target, scope)
        per_node = target.devices_per_node
        if scope == "intra-node" and per_node.known and n_devices > per_node.value:
            notes.append(f"{target.name}: {n_devices} devices exceed the {per_node.text()} per node; "
                         f"use scope='inter-node'")
    notes += link.notes
    n = n_devices
    if n == 1:
        return CollectiveEstimate(kind, algorithm, n, nbytes, link.name, 0.0, 0.0, 0.0, False, notes,
                                  list(link.missing))
    frac = (n - 1) / n
    log_n = math.ceil(math.log2(n))
    if algorithm == "ring" and kind == "all-reduce":
        steps, volume = 2 * (n - 1), 2 * frac * nbytes
    elif algorithm == "ring":
        steps, volume = n - 1, frac * nbytes
    elif kind == "all-reduce":
        steps, volume = 2 * log_n, 2 * log_n * nbytes
    else:
        steps, volume = log_n, frac * nbytes
    transfer = volume / (link.bandwidth_gbs * 1e9) if link.bandwidth_gbs else None
    latency = steps * link.latency_us * 1e-6 if link.latency_us is not None else None
    time_s = transfer + (latency or 0.0) if transfer is not None else None
    lower = transfer is None or latency is None or any("effective_gbs" in m for m in link.missing)
    return CollectiveEstimate(kind, algorithm, n, nbytes, link.name, time_s, latency, transfer, lower, notes,
                              list(link.missing))
