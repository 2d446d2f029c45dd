"""What a report says, gathered into one JSON-able dict (the schema is `schema.json`).

Each program is compiled for each target the way `xchip.jit` compiles it. Then:
- on the host CPU every kernel is timed inside the compiled program and the whole program
  is timed end to end (source `measured`, with the device, date and versions), and its
  results are checked against `jax.jit`;
- on a GPU-family target every kernel is compiled to machine code by Triton (registers,
  shared memory and spills as the compiler reports them) and its time is the cost model's
  for the tile it was compiled with (source `modeled`: nothing runs on the chip here);
- on other targets the time is the cost model's (source `modeled`).
The renderers, the plots and `--diff` read only this dict, so a report.json can be
re-rendered or compared later without compiling anything.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .roofline import peaks, roofline

SCHEMA_ID = "xchip-report/1"
MEASURE_SECONDS = 0.2        # per whole program on the host, after one warm-up call


@dataclass(frozen=True)
class Program:
    """A function and arguments to report on. Arguments are pytrees of arrays; leaves given
    as `jax.ShapeDtypeStruct` become fresh random arrays (seeded by `seed`)."""
    name: str                   # "transformer (f32)"
    fn: Callable
    args: tuple
    kwargs: dict = field(default_factory=dict)
    static_argnums: tuple = ()
    static_argnames: tuple = ()
    source: str = ""            # "examples/transformer.py:transformer_block"
    rtol: float | None = None   # for the check against jax.jit (None: by dtype)
    atol: float | None = None
    seed: int = 0
    jit_options: dict = field(default_factory=dict)    # opt_level, fast_math, precision for xchip.jit

    def concrete(self) -> "Program":
        import jax

        from ..argspec import random_array
        from ..ir import TensorType, dtypes
        rng = np.random.default_rng(self.seed)

        def leaf(x):
            if isinstance(x, jax.ShapeDtypeStruct):
                return random_array(TensorType(tuple(x.shape), dtypes.from_numpy(x.dtype)), rng)
            return x
        args, kwargs = jax.tree_util.tree_map(leaf, (self.args, self.kwargs))
        return dataclasses.replace(self, args=tuple(args), kwargs=kwargs)

    def dynamic(self) -> tuple:
        """(args, kwargs) without the static arguments: what the compiled program takes."""
        return self.jit("cpu")._statics(self.args, self.kwargs)[:2]

    def jit(self, target: str):
        import xchip
        return xchip.jit(self.fn, target=target, static_argnums=self.static_argnums,
                         static_argnames=self.static_argnames, **self.jit_options)


def collect(programs: Iterable[Program], target_names: Iterable[str], *,
            progress: Callable[[str], None] | None = None) -> dict:
    """The report for every program on every target (names or aliases). Tuned configs and
    tuning histories come from the tuning database `xchip.jit` reads."""
    from .. import targets

    names = [targets.resolve_name(t) for t in target_names]
    out = {"schema": SCHEMA_ID, "created": _now(), "environment": _environment(), "programs": []}
    host = targets.get("cpu")
    measured_on = {"device": f"{host.full_name} ({host.host.logical_cpus} logical CPUs, {host.isa})",
                   "date": out["created"], "versions": out["environment"]}
    for p in programs:
        p = p.concrete()
        entry = {"name": p.name, "source": p.source, "arguments": _argument_types(p.dynamic()), "targets": []}
        for name in names:
            if progress:
                progress(f"{p.name} on {name}")
            entry["targets"].append(_target_entry(p, name, measured_on))
        out["programs"].append(entry)
    return out


# ---- one program on one target ------------------------------------------------------------

def _target_entry(p: Program, name: str, measured_on: dict) -> dict:
    from .. import targets

    target = targets.get(name)
    compiled = p.jit(name).lower(*p.args, **p.kwargs).compile()
    groups = compiled.kernel_graph.groups
    entry = {"target": name, "full_name": target.full_name, "vendor": target.vendor, "arch": target.arch_label,
             "verification_level": compiled.verification_level, "peaks": peaks(target), "notes": []}
    if compiled.runner == "compiled":
        kernels, whole, check = _measure_on_host(p, compiled, target, measured_on)
        entry.update(runs_on="host CPU: TVM/LLVM kernels (measured here)", check=check)
    else:
        kernels = _modeled_kernels(compiled, target, entry["notes"])
        whole = None
        entry["runs_on"] = ("Triton kernels compiled to machine code; times modeled" if compiled.artifacts is not None
                            else "kernel graph only; times modeled")
    entry["kernels"] = kernels
    entry["time"] = whole or _sum_time(kernels)
    entry["furthest"] = _furthest(kernels)
    entry["tuning"] = _tuning_history(groups, name)
    entry["tuning_note"] = ("" if name == "cpu" else
                            "tuned by the cost model, which ranks every legal tile at once (`xchip autotune "
                            "--target`): there is no search to converge")
    return entry


def _kernel_entry(group, record, target, seconds: float | None, source: str, lower_bound: bool = False,
                  samples: list[float] | None = None) -> dict:
    roof = roofline(group, target)
    pct = roof.percent(seconds)
    return {
        "name": group.name, "kind": group.kind, "pattern": record.pattern,
        "ops": [op for op in record.ops if op != "constant"],
        "inputs": [str(t) for t in record.inputs], "outputs": [str(t) for t in record.outputs],
        "dtypes": sorted({t.dtype.name for t in (*record.inputs, *record.outputs)}),
        "flops": int(record.flops), "bytes": int(record.bytes), "backend": record.backend,
        "location": str(record.loc) if record.loc else "",
        "config": None, "config_source": "",
        "time": {"seconds": seconds, "source": source, "lower_bound": lower_bound,
                 "repeats": len(samples) if samples else 0,
                 "spread": _spread(samples) if samples else None},
        "tflops": group.flops / seconds / 1e12 if seconds else None,
        "gbps": group.bytes / seconds / 1e9 if seconds else None,
        "roofline": {"seconds": roof.seconds, "percent": pct, "lower_bound": roof.lower_bound},
        "bound": roof.bound(seconds),
        "gpu": None,
    }


def _measure_on_host(p: Program, compiled, target, measured_on: dict):
    import jax

    from ..numerics import compare

    flat = compiled._flat_inputs(jax.tree_util.tree_leaves(p.dynamic()))
    program = compiled._program
    times = program.profile(flat)
    kernels = []
    for group, record, k in zip(compiled.kernel_graph.groups, compiled.kernels, program.kernels):
        samples = times[group.name]
        e = _kernel_entry(group, record, target, statistics.median(samples), "measured", samples=samples)
        e["config"] = dict(k.config) if k.config else None
        e["config_source"] = "tuning database (measured)" if k.config else "default schedule"
        kernels.append(e)
    program(flat)    # warm-up
    samples, start = [], time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - start < MEASURE_SECONDS:
        t0 = time.perf_counter()
        program(flat)
        samples.append(time.perf_counter() - t0)
    whole = {"seconds": statistics.median(samples), "source": "measured", "lower_bound": False,
             "repeats": len(samples), "spread": _spread(samples), "measured_on": measured_on}
    got = jax.tree_util.tree_leaves(compiled._call_flat(flat))
    want = jax.tree_util.tree_leaves(jax.jit(p.fn, static_argnums=p.static_argnums,
                                             static_argnames=p.static_argnames)(*p.args, **p.kwargs))
    checks = [compare(np.asarray(g), np.asarray(w), p.rtol, p.atol) for g, w in zip(got, want)]
    worst = max(checks, key=lambda c: c.max_abs_error) if checks else None
    check = {"against": f"jax.jit on the CPU (jax {jax.__version__})",
             "ok": len(got) == len(want) and all(c.ok for c in checks),
             "max_abs_error": float(worst.max_abs_error) if worst else 0.0}
    return kernels, whole, check


def _modeled_kernels(compiled, target, notes: list[str]) -> list[dict]:
    from ..autotune.modeled import modeled_configs
    from ..targets.cost_model import estimate_kernel

    artifacts = compiled.artifacts
    by_group = {k.group: k for k in artifacts.kernels} if artifacts is not None else {}
    tuned = modeled_configs(compiled.kernel_graph, target.name) if artifacts is None else {}
    kernels = []
    for group, record in zip(compiled.kernel_graph.groups, compiled.kernels):
        art = by_group.get(group.name)
        if art is not None:
            config, source = (dict(art.config) or None), art.tiles_from
        else:
            config = tuned.get(group.name)
            source = "tuning database (modeled)" if config else ""
        est = estimate_kernel(group, target, config)
        for n in est.notes:
            if n not in notes:
                notes.append(n)
        e = _kernel_entry(group, record, target, est.time_s, "modeled", est.lower_bound or est.time_s is None)
        if est.bound == "launch":
            e["bound"] = "latency"
        e["config"], e["config_source"] = config, source
        if art is not None:
            e["backend"] = "triton"
            e["gpu"] = _gpu_entry(art)
        kernels.append(e)
    return kernels


def _gpu_entry(art) -> dict:
    parts = [art] if art.artifact is not None or not art.parts else art.parts
    compiled = [k.artifact for k in parts if k.artifact is not None]

    def largest(attr):
        values = [getattr(a, attr) for a in compiled if getattr(a, attr) is not None]
        return max(values) if values else None

    return {"status": art.status, "reason": art.reason, "kernels": len(parts),
            "arch": compiled[0].elf_arch if compiled else "",
            "registers": largest("registers"), "shared_bytes": largest("shared_bytes"),
            "spill_bytes": sum(a.spills or 0 for a in compiled) if compiled else None,
            "num_warps": largest("num_warps"), "num_stages": largest("num_stages")}


# ---- whole-program figures ---------------------------------------------------------------

def _sum_time(kernels: list[dict]) -> dict:
    times = [k["time"]["seconds"] for k in kernels]
    known = [t for t in times if t is not None]
    return {"seconds": sum(known) if known else None, "source": "modeled",
            "lower_bound": any(t is None or k["time"]["lower_bound"] for t, k in zip(times, kernels)),
            "repeats": 0, "spread": None, "measured_on": None}


def _furthest(kernels: list[dict]) -> dict | None:
    """The kernel that loses the most time to its roofline: where the target is furthest
    from what the chip allows, weighted by what it costs."""
    lost = [(k["time"]["seconds"] - k["roofline"]["seconds"], k) for k in kernels
            if k["time"]["seconds"] and k["roofline"]["seconds"] is not None]
    lost = [(s, k) for s, k in lost if s > 0]
    if not lost:
        return None
    seconds, k = max(lost, key=lambda x: x[0])
    return {"kernel": k["name"], "lost_seconds": seconds, "percent": k["roofline"]["percent"], "bound": k["bound"]}


def _tuning_history(groups, target_name: str) -> list[dict]:
    """Per kernel, its measured trials in the order first tried (the database's history of
    it on this host with this toolchain): what a convergence curve is drawn from. Groups
    that are the same kernel (same structure, shapes and dtypes) share one history."""
    if target_name != "cpu":
        return []      # other targets are tuned by the cost model: an exhaustive ranking, not a search
    from ..autotune.db import TuningDB, default_path
    from ..autotune.tune import host_identity, kernel_key

    if not default_path().exists():
        return []
    db = TuningDB(create=False)
    sku, versions = host_identity()
    names: dict = {}
    for group in groups:
        names.setdefault(kernel_key(group), []).append(group.name)
    out = []
    for key, same in names.items():
        records = db.history(key, sku, versions, source="measured")
        if records:
            out.append({"kernel": " = ".join(same), "source": "measured",
                        "trials": [r.stats.median_s if r.status == "ok" and r.stats else None for r in records]})
    return out


# ---- provenance --------------------------------------------------------------------------

def _spread(samples: list[float]) -> dict:
    q = np.quantile(samples, [0.1, 0.9])
    return {"min": float(min(samples)), "p10": float(q[0]), "p90": float(q[1])}


def _argument_types(args) -> list[str]:
    import jax

    from ..ir import dtypes
    out = []
    for leaf in jax.tree_util.tree_leaves(args):
        a = np.asarray(leaf)
        out.append(f"{dtypes.from_numpy(a.dtype).name}[{','.join(map(str, a.shape))}]")
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _environment() -> dict:
    import importlib.metadata as md

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    import xchip
    return {"xchip": xchip.__version__, "python": platform.python_version(), "jax": version("jax"),
            "jaxlib": version("jaxlib"), "numpy": version("numpy"), "tvm": version("apache-tvm"),
            "triton": version("triton"), "platform": platform.platform()}
