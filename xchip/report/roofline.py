"""How far a kernel is from what the chip allows.

A kernel's roofline time is the cost model's ideal one: its FLOPs at the target's peak for
each class of work (matrix work at the matrix peak of its dtype, the rest at the vector
peak) and its bytes at the memory bandwidth, whichever takes longer, with no launch cost,
no tiling loss and no efficiency factor. `percent` is that time over the kernel's own time
(measured or modeled), so 100 means the kernel runs at its roof.

The bound says what limits the kernel: `compute` or `memory` (the larger of the two ideal
terms), `latency` when the kernel is so small that fixed costs dominate (its roofline is
under a fifth of its time and the time is under 20 us: launch, loop set-up, Python dispatch
on the host), `unknown` when the target's descriptor lacks the peak or bandwidth to tell.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..targets.cost_model import estimate_kernel

LATENCY_TIME_S = 20e-6
LATENCY_FRACTION = 0.2


@dataclass(frozen=True)
class Roofline:
    seconds: float | None        # the ideal time; None when neither term is known
    compute_s: float | None
    memory_s: float | None
    lower_bound: bool            # a term is missing or partial: the true roof is lower still

    def percent(self, time_s: float | None) -> float | None:
        if self.seconds is None or not time_s:
            return None
        return 100.0 * self.seconds / time_s

    def bound(self, time_s: float | None) -> str:
        if self.compute_s is None or self.memory_s is None:
            return "unknown"
        if (time_s is not None and time_s < LATENCY_TIME_S and self.seconds is not None
                and self.seconds < LATENCY_FRACTION * time_s):
            return "latency"
        return "compute" if self.compute_s >= self.memory_s else "memory"


def roofline(group, target) -> Roofline:
    ideal = estimate_kernel(group, target, None)
    known = [t for t in (ideal.compute_s, ideal.memory_s) if t is not None]
    return Roofline(max(known) if known else None, ideal.compute_s, ideal.memory_s,
                    ideal.lower_bound or len(known) < 2)


def peaks(target) -> dict:
    """The numbers a roofline plot is drawn from: TFLOP/s per matrix dtype and for the
    vector units, GB/s of memory bandwidth (None where the descriptor does not say)."""
    matrix = {key: q.value for key, q in target.peak_tflops.items() if q.known and q.path == "matrix"}
    vector = {key: q.value for key, q in target.peak_tflops.items() if q.known and q.path == "vector"}
    bw = target.memory_bandwidth_gbs
    return {"matrix_tflops": matrix, "vector_tflops": vector, "bandwidth_gbs": bw.value if bw.known else None}
