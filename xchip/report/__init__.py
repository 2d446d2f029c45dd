"""Kernel performance reports: where the time goes, on which chip, and how far each kernel
is from what the hardware allows.

    report = collect([Program("mlp", fn, args)], ["cpu", "h800", "ascend910b"])
    paths = write(report, "out/report")        # report.json, report.md, report.html

`collect` compiles and measures (collect.py); everything else reads the dict it returns,
whose JSON Schema is `schema.json` next to this file.
"""

from __future__ import annotations

import json
from pathlib import Path

from .collect import SCHEMA_ID, Program, collect
from .diff import diff, format_diff

SCHEMA_PATH = Path(__file__).with_name("schema.json")

__all__ = ["Program", "collect", "write", "load", "validate", "diff", "format_diff", "SCHEMA_ID", "SCHEMA_PATH"]


def validate(report: dict) -> None:
    """Raise jsonschema.ValidationError unless `report` follows the schema."""
    import jsonschema
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))


def load(path: str | Path) -> dict:
    from ..errors import XchipError
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise XchipError(f"cannot read report {path}: {e}") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA_ID:
        raise XchipError(f"{path} is not an xchip report ({SCHEMA_ID})")
    return report


def write(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """report.json, report.md and report.html (self-contained: plots inline) in `out_dir`."""
    from .render import html_page, markdown
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=1) + "\n")
    paths["md"].write_text(markdown(report))
    paths["html"].write_text(html_page(report))
    return paths
