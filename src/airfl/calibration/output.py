"""Where a procedure leaves its evidence: SigMF captures, PNG figures, a text and JSON report.

Every capture a procedure measures from is saved as a SigMF recording (radio/recording.py, the
`sigmf` package) with the sample rate, carrier, hardware and annotations for preambles, pilots and
tones, so the numbers in a report can be re-derived from the samples. The report is a table (one row
per radio or per setting), headline figures and notes, written as report.txt (readable) and
report.json (for scripts) beside the captures and plots:

    OUT/NAME/report.txt, report.json, *.png, captures/*.sigmf-meta + *.sigmf-data
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from airfl.calibration.bench import Bench, Capture
from airfl.radio.recording import Annotation, Recording, write_recording


@dataclass
class ProcedureResult:
    """What a procedure found.

    rows: the report table, one dict per radio or setting (column name -> value; units in the
        column names). summary: headline figures (JSON-ready). profile: radio URI -> profile
        fields to set (calibration/profile.py, RadioCalibration). notes: sentences for the reader.
    """

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    captures: list[str] = field(default_factory=list)


class ProcedureOutput:
    """The directory of one procedure run; saves captures and figures and remembers them."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.captures: list[str] = []
        self.figures: list[str] = []

    def save_capture(
        self,
        name: str,
        capture: Capture | np.ndarray,
        bench: Bench,
        *,
        description: str = "",
        annotations: Sequence[Annotation] = (),
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write `capture` as captures/NAME.sigmf-{meta,data}; returns the .sigmf-meta path."""
        samples = capture.samples if isinstance(capture, Capture) else np.asarray(capture)
        info: dict[str, Any] = {"receiver": bench.receiver_uri, "transmitters": bench.transmitter_uris}
        if isinstance(capture, Capture):
            info["start_sample"] = int(capture.start)
            if capture.period is not None:
                info["period_samples"] = int(capture.period)
        info.update(extra or {})
        rec = Recording(
            samples=samples,
            sample_rate_hz=bench.sample_rate_hz,
            center_freq_hz=bench.center_freq_hz,
            description=description or name,
            hardware=bench.hardware(bench.receiver),
            annotations=list(annotations),
            extra=info,
        )
        path = write_recording(self.directory / "captures" / name, rec)
        self.captures.append(str(path.relative_to(self.directory)))
        return path

    def figure_path(self, name: str) -> Path:
        """The path to save figure NAME.png at (recorded in the report)."""
        path = self.directory / f"{name}.png"
        self.figures.append(path.name)
        return path


def format_value(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def render_table(title: str, rows: Sequence[dict[str, Any]]) -> Table:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(format_value(row.get(c)) for c in columns))
    return table


def write_report(result: ProcedureResult, out: ProcedureOutput) -> Path:
    """Write report.txt and report.json for `result`; returns the text report's path."""
    result.figures = list(out.figures)
    result.captures = list(out.captures)
    console = Console(record=True, width=160, file=io.StringIO())  # recorded, not shown
    console.print(render_table(f"airfl calibrate {result.name}", result.rows))
    for key, value in result.summary.items():
        console.print(f"{key}: {format_value(value)}")
    for note in result.notes:
        console.print(f"note: {note}")
    if result.figures:
        console.print("figures: " + ", ".join(result.figures))
    if result.captures:
        console.print("captures: " + ", ".join(result.captures))
    text = console.export_text()
    path = out.directory / "report.txt"
    path.write_text(text)
    data = {
        "procedure": result.name,
        "rows": result.rows,
        "summary": result.summary,
        "profile": result.profile,
        "notes": result.notes,
        "figures": result.figures,
        "captures": result.captures,
    }
    (out.directory / "report.json").write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, complex):
        return [value.real, value.imag]
    return value
