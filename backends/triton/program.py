"""A kernel graph compiled for one GPU-family target: every group Triton can express, as
machine code for the target's architecture; the others listed with why.

    result = compile_graph(kernel_graph, "h800")     # ProgramArtifacts
    result.write(directory)                          # .ptx/.cubin (or .amdgcn/.hsaco) + manifest.json

Targets and the Triton backend they compile through: a800 / a100 sm_80, l20 / l2 sm_89,
h800-sxm / h800-pcie / h20 / h100-sxm / h200 sm_90 (cubin, Triton's bundled ptxas),
dcu-z100 gfx906 (hsaco, Triton's AMD backend, wavefront 64). dcu-k100 (gfx926) and
dcu-k100-ai (gfx928) need Hygon's own toolchain (upstream Triton fails for gfx926/928/936):
their kernels are written as Triton source only, level *emitted*, and the manifest says
whether Hygon's DTK was found. Matmul tiles come from the tuning database's modeled results
for the target (`xchip autotune --target`) when it has them, else from the cost model over
the tile space (`backends/tile_knobs.py`), so targets with different numbers (the H20's low
compute and high bandwidth, the H800's) can get different tiles. A kernel that the compiler
reports spilling registers is compiled again with a smaller tile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from xchip.errors import UnsupportedOpError

from .kernels import generate
from .runtime import Artifact, compile_for

# canonical target name -> (Triton backend, architecture, threads per warp/wavefront)
GPU_TARGETS = {
    "a800": ("cuda", 80, 32),
    "a100": ("cuda", 80, 32),
    "l20": ("cuda", 89, 32),
    "l2": ("cuda", 89, 32),
    "h800-sxm": ("cuda", 90, 32),
    "h800-pcie": ("cuda", 90, 32),
    "h20": ("cuda", 90, 32),
    "h100-sxm": ("cuda", 90, 32),
    "h200": ("cuda", 90, 32),
    "dcu-z100": ("hip", "gfx906", 64),
}


# canonical target name -> architecture; compiled only by Hygon's toolchain
HYGON_TARGETS = {"dcu-k100": "gfx926", "dcu-k100-ai": "gfx928"}


def supports(name: str) -> bool:
    """Whether the Triton backend writes kernels for this target (compiled or emitted)."""
    return name in GPU_TARGETS or name in HYGON_TARGETS


def hygon_toolchain() -> str | None:
    """Where Hygon's DTK is, if this machine has it (its hipcc knows the gfx92x DCUs)."""
    import os
    import shutil
    for var in ("DTK_HOME", "ROCM_PATH"):
        root = os.environ.get(var)
        if root and os.path.exists(os.path.join(root, "bin", "hipcc")) and "dtk" in root.lower():
            return root
    hipcc = shutil.which("hipcc")
    return os.path.dirname(os.path.dirname(hipcc)) if hipcc and "dtk" in hipcc.lower() else None


def gpu_target(name: str):
    """Triton's GPUTarget for a canonical target name, or None."""
    if name not in GPU_TARGETS:
        return None
    from triton.backends.compiler import GPUTarget
    return GPUTarget(*GPU_TARGETS[name])


@dataclass
class KernelArtifact:
    group: str
    kind: str
    status: str                        # "compiled" | "not generated" | "failed"
    reason: str = ""
    config: dict = field(default_factory=dict)
    tiles_from: str = ""               # "tuning database (modeled)" | "cost model" | "default"
    artifact: Artifact | None = None
    source: str = ""                   # the Triton source, kept when nothing compiled it (emitted)
    parts: list[KernelArtifact] = field(default_factory=list)   # a loop's condition and body kernels


@dataclass
class ProgramArtifacts:
    target: str
    arch: str
    kernels: list[KernelArtifact]

    def write(self, directory) -> Path:
        """Text stages and binaries per kernel, and manifest.json describing them."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        manifest = {"target": self.target, "arch": self.arch, "kernels": [self._entry(k, d) for k in self.kernels],
                    "compiled": sum(k.status == "compiled" for k in self.kernels), "total": len(self.kernels)}
        path = d / "manifest.json"
        path.write_text(json.dumps(manifest, indent=1))
        return path

    def _entry(self, k: KernelArtifact, d: Path) -> dict:
        entry = {"kernel": k.group, "kind": k.kind, "status": k.status, "reason": k.reason,
                 "config": k.config, "tiles_from": k.tiles_from}
        a = k.artifact
        if a is not None:
            text = "ptx" if a.binary_kind == "cubin" else "amdgcn"
            (d / f"{k.group}.{text}").write_text(a.text[text])
            (d / f"{k.group}.{a.binary_kind}").write_bytes(a.binary)
            entry.update(files=[f"{k.group}.{text}", f"{k.group}.{a.binary_kind}"], arch=a.arch,
                         binary_arch=a.elf_arch, registers=a.registers, spill_bytes=a.spills,
                         shared_bytes=a.shared_bytes, num_warps=a.num_warps, num_stages=a.num_stages,
                         verification="compiled")
        elif k.source:
            (d / f"{k.group}.py").write_text(k.source)
            entry.update(files=[f"{k.group}.py"], arch=self.arch, verification="emitted")
        if k.parts:
            entry["parts"] = [self._entry(p, d) for p in k.parts]
        return entry

    def summary(self) -> str:
        done = sum(k.status == "compiled" for k in self.kernels)
        emitted = sum(k.status == "emitted" for k in self.kernels)
        if emitted:
            return f"{emitted} of {len(self.kernels)} kernels emitted as Triton source for {self.target} ({self.arch})"
        return f"{done} of {len(self.kernels)} kernels compiled for {self.target} ({self.arch})"


def _tiles(group, target_name: str, db_configs: dict) -> tuple[dict, str]:
    if group.name in db_configs:
        return db_configs[group.name], "tuning database (modeled)"
    if group.kind == "attention":
        from .attention import default_config
        return default_config(group), "default"
    if group.kind != "matmul":
        return {}, "default"
    from xchip.backends.tile_knobs import preferred, tile_space
    from xchip.targets import get
    from xchip.targets.cost_model import estimate_kernel
    target = get(target_name)
    space = tile_space(group, target, modeled=True)
    best = preferred([(c, estimate_kernel(group, target, c).time_s) for c in space or ()])
    return (best[0], "cost model") if best is not None else ({}, "default")


def tile_configs(kernel_graph, target_name: str) -> dict[str, tuple[dict, str]]:
    """Per group: (tile config, where it came from) — what `compile_graph` compiles with and
    `Compiled.estimate` models with, so the two agree."""
    from xchip.autotune.modeled import modeled_configs
    db_configs = modeled_configs(kernel_graph, target_name)
    return {g.name: _tiles(g, target_name, db_configs) for g in kernel_graph.groups}


def compile_graph(kernel_graph, target_name: str) -> ProgramArtifacts:
    """Every group's kernel for `target_name`: compiled, or (Hygon DCUs) written as source; a
    while loop as the kernels of its condition and body (`loops.py`)."""
    hygon = target_name in HYGON_TARGETS
    gpu = None if hygon else gpu_target(target_name)
    if gpu is None and not hygon:
        raise UnsupportedOpError("program", None, target_name, "no Triton backend for this target")
    why = _hygon_reason(HYGON_TARGETS[target_name]) if hygon else ""
    kernels = _compile_groups(kernel_graph, target_name, gpu, why, "")
    if hygon:
        arch = HYGON_TARGETS[target_name]
    else:
        arch = f"sm_{gpu.arch}" if gpu.backend == "cuda" else str(gpu.arch)
    return ProgramArtifacts(target_name, arch, kernels)


def _compile_groups(kernel_graph, target_name: str, gpu, hygon_why: str, prefix: str) -> list[KernelArtifact]:
    from .loops import loop_op, regions
    tiles = tile_configs(kernel_graph, target_name)
    kernels = []
    for group in kernel_graph.groups:
        name = prefix + group.name
        if loop_op(group) is not None:
            loop = regions(group)
            cond = _compile_groups(loop.cond, target_name, gpu, hygon_why, f"{name}.cond.")
            body = _compile_groups(loop.body, target_name, gpu, hygon_why, f"{name}.body.")
            parts = cond + body
            status = "emitted" if hygon_why else "compiled"
            done = all(k.status == status for k in parts)
            reason = (f"a loop run from the host: {len(body)} body kernels per iteration, "
                      "the condition read back each iteration")
            kernels.append(KernelArtifact(name, "loop", status if done else "partly generated", reason, parts=parts))
            continue
        config, source = tiles[group.name]
        try:
            ks = generate(group, config, target_name)
        except UnsupportedOpError as e:
            kernels.append(KernelArtifact(name, group.kind, "not generated", str(e)))
            continue
        if hygon_why:
            kernels.append(KernelArtifact(name, group.kind, "emitted", f"source only, nothing checked it: {hygon_why}",
                                          config, source, source=ks.source))
            continue
        try:
            art, config, note = _compile_without_spills(group, ks, config, gpu, target_name)
        except Exception as e:  # noqa: BLE001 - Triton's compile errors come as many types
            lines = str(e).strip().splitlines()
            kernels.append(KernelArtifact(name, group.kind, "failed", f"{type(e).__name__}: "
                                          f"{lines[-1] if lines else ''}", config, source))
            continue
        kernels.append(KernelArtifact(name, group.kind, "compiled", note, config, source, art))
    return kernels


def launch_options(config: dict) -> dict:
    """Triton's launch options for a config (what compiled kernels were built with)."""
    return {"num_warps": int(config.get("num_warps", 4)), "num_stages": int(config.get("stages", 3))}


def _smaller(config: dict, kind: str) -> dict | None:
    """The config with its largest tile halved (not below tl.dot's 16), or None."""
    keys = {"attention": ("tile_k", "tile_q"), "matmul": ("tile_n", "tile_m", "tile_k")}.get(kind, ())
    sized = [(int(config[k]), k) for k in keys if int(config.get(k, 0)) > 16]
    if not sized:
        return None
    _, key = max(sized, key=lambda t: (t[0], -keys.index(t[1])))     # ties: the first in `keys`
    return dict(config, **{key: int(config[key]) // 2})


def _compile_without_spills(group, ks, config: dict, gpu, target_name: str, tries: int = 3):
    """Compile; while the compiler reports register spills, retry with a smaller tile (what
    spills depends on the architecture's register allocation: a 64x64 bf16 attention tile
    fits on sm_89/sm_90 and spills 812 bytes on sm_80). Returns the artifact without spills,
    or the one with the fewest, its config and a note saying what was tried."""
    art = current = compile_for(ks, gpu, **launch_options(config))
    tried, trying = [], config
    while art.spills and tries > 0 and (smaller := _smaller(trying, group.kind)) is not None:
        tried.append(f"{tile_text(trying)} spilled {current.spills} bytes")
        trying, tries = smaller, tries - 1
        current = compile_for(generate(group, trying, target_name), gpu, **launch_options(trying))
        if current.spills is not None and current.spills < art.spills:
            art, config = current, trying
    note = f"tiles {tile_text(config)} ({'; '.join(tried)})" if tried else ""
    return art, config, note


def tile_text(config: dict) -> str:
    keys = ("tile_q", "tile_k") if "tile_q" in config else ("tile_m", "tile_n", "tile_k")
    tiles = [str(config[k]) for k in keys if k in config]
    return "x".join(tiles) or "default tiles"


def _hygon_reason(arch: str) -> str:
    dtk = hygon_toolchain()
    if dtk:
        return f"{arch} needs Hygon's toolchain; found at {dtk}, but compiling through it is not wired up yet"
    return (f"{arch} needs Hygon's toolchain (DTK) and none was found (no DTK_HOME, no Hygon hipcc); "
            "upstream Triton fails for gfx926/928/936")
