"""One fact about a chip: a number (or the reason there is none), its unit, where it comes
from and how sure we are.

A descriptor never holds a bare number. `status` separates the three kinds of "no number":
`unknown` (no usable source: null, never guessed), `unsupported` (the hardware lacks the
feature, which is itself a sourced fact) and `not_applicable` (the question does not apply,
e.g. warp width on a machine that is not SIMT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STATUSES = ("known", "unknown", "unsupported", "not_applicable")
CONFIDENCES = ("high", "medium", "low", "measured")
PATHS = ("vector", "matrix", "unstated")             # which unit a peak throughput is for
DIRECTIONS = ("bidirectional", "unidirectional", "unstated")   # for link bandwidths


@dataclass(frozen=True)
class Quantity:
    value: float | int | None
    unit: str = ""
    status: str = "known"
    sources: tuple[str, ...] = ()       # keys into the descriptor's [sources] table
    confidence: str | None = None
    note: str = ""
    derived: str | None = None          # the basis, when computed from other numbers (cores x clock)
    path: str | None = None             # peaks only: vector (CUDA cores, SIMD) or matrix (tensor/cube)
    direction: str | None = None        # link bandwidths only

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if (self.value is None) != (self.status != "known"):
            raise ValueError(f"a {self.status} quantity {'needs' if self.status == 'known' else 'has no'} value")

    @property
    def known(self) -> bool:
        return self.status == "known"

    @classmethod
    def unknown(cls, note: str = "", unit: str = "") -> "Quantity":
        return cls(None, unit, "unknown", note=note)

    @classmethod
    def measured(cls, value: float, unit: str, source: str, note: str = "", **kw) -> "Quantity":
        return cls(value, unit, "known", (source,), "measured", note, **kw)

    def text(self, digits: int = 6) -> str:
        """The value as a table cell: `148`, `?` (unknown), `n/s` (not supported), `n/a`."""
        if self.status == "unknown":
            return "?"
        if self.status == "unsupported":
            return "n/s"
        if self.status == "not_applicable":
            return "n/a"
        return format_number(self.value, digits)


def format_number(value: float | int, digits: int = 6) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    text = f"{value:.{digits}g}"
    return text if "e" not in text else f"{value:.3e}"


@dataclass(frozen=True)
class Link:
    """A device-to-device link as the descriptor states it."""

    name: str | None
    nominal_gbs: Quantity = field(default_factory=Quantity.unknown)
    effective_gbs: Quantity = field(default_factory=Quantity.unknown)
    latency_us: Quantity = field(default_factory=Quantity.unknown)

    def summary(self) -> str:
        if not self.name:
            return "?"
        out = self.name.split(" (")[0].split(" + ")[0]
        if self.nominal_gbs.known:
            out += f" {self.nominal_gbs.text()} GB/s"
        if self.effective_gbs.known:
            out += f" (eff. {self.effective_gbs.text()})"
        return out
