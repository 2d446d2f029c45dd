"""Graph passes and the pass manager (imported as `xchip.passes`).

    from xchip.passes import optimize, PassOptions
    result = optimize(graph, PassOptions(level="O2"))
"""

from .manager import (LEVELS, PASSES, PassContext, PassOptions, PassStat, PipelineResult, format_stats,
                      optimize, pipeline, register)

__all__ = ["LEVELS", "PASSES", "PassContext", "PassOptions", "PassStat", "PipelineResult", "format_stats",
           "optimize", "pipeline", "register"]
