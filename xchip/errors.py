"""The errors xchip raises. Every message names what is wrong and where."""

from __future__ import annotations


class XchipError(Exception):
    """Base class of every error xchip raises on purpose."""


class UnsupportedOpError(XchipError):
    """An op (or dtype, or attribute) that a stage of the pipeline cannot handle."""

    def __init__(self, op: str, loc: object = None, target: str | None = None, detail: str = ""):
        self.op = op
        self.loc = loc
        self.target = target
        parts = [f"unsupported op '{op}'"]
        if loc:
            parts.append(f"at {loc}")
        if target:
            parts.append(f"for target '{target}'")
        message = " ".join(parts)
        if detail:
            message += f": {detail}"
        super().__init__(message)


class ArgumentError(XchipError, TypeError):
    """Wrong number, shape or dtype of arguments."""


class ParseError(XchipError):
    """Malformed input text (xchip IR, StableHLO, an --args spec)."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        self.line = line
        self.col = col
        if line is not None:
            message = f"line {line}, column {col}: {message}"
        super().__init__(message)


class VerificationError(XchipError):
    """IR that breaks an op's rules."""


class TargetError(XchipError):
    """Unknown target, or a target that cannot do what was asked."""


class FallbackWarning(UserWarning):
    """Some kernel groups run on the reference executor instead of compiled code (the CPU's
    TVM kernels or the GPUs' Triton kernels)."""
