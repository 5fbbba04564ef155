"""IQ recordings as SigMF (the `sigmf` package): complex float32 samples plus metadata.

Every capture airfl writes (an encoded burst, a received superposition, a calibration capture) is
a pair NAME.sigmf-data / NAME.sigmf-meta that any SigMF tool opens. airfl's own fields live in the
global object under the "airfl:" namespace; annotations mark preambles, pilots and payloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import airfl

AIRFL_NAMESPACE = "airfl"


@dataclass(frozen=True)
class Annotation:
    """A labelled span of a recording (sample_start, sample_count in samples)."""

    sample_start: int
    sample_count: int
    label: str
    comment: str = ""


@dataclass
class Recording:
    """Samples with the metadata a reader needs (rates in Hz)."""

    samples: np.ndarray
    sample_rate_hz: float
    center_freq_hz: float | None = None
    description: str = ""
    hardware: str = ""
    annotations: list[Annotation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # airfl:... global fields (JSON-ready)


def _base(path: str | Path) -> Path:
    p = Path(path)
    for suffix in (".sigmf-data", ".sigmf-meta", ".sigmf"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def write_recording(path: str | Path, rec: Recording) -> Path:
    """Write PATH.sigmf-data and PATH.sigmf-meta (replacing an existing pair); returns the .sigmf-meta path."""
    import sigmf  # noqa: PLC0415 - keeps `import airfl.radio` light
    from sigmf import SigMFFile  # noqa: PLC0415

    base = _base(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    data_path = base.with_name(base.name + ".sigmf-data")
    np.asarray(rec.samples, dtype=np.complex64).tofile(data_path)
    global_info: dict[str, Any] = {
        sigmf.DATATYPE_KEY: "cf32_le",
        sigmf.SAMPLE_RATE_KEY: float(rec.sample_rate_hz),
        sigmf.VERSION_KEY: "1.2.0",
        sigmf.DESCRIPTION_KEY: rec.description,
        sigmf.RECORDER_KEY: f"airfl {airfl.__version__}",
    }
    if rec.hardware:
        global_info[sigmf.HW_KEY] = rec.hardware
    if rec.extra:
        global_info[sigmf.EXTENSIONS_KEY] = [{"name": AIRFL_NAMESPACE, "version": "1.0.0", "optional": True}]
        for key, value in rec.extra.items():
            global_info[f"{AIRFL_NAMESPACE}:{key}"] = json.loads(json.dumps(value))
    meta = SigMFFile(data_file=str(data_path), global_info=global_info)
    capture: dict[str, Any] = {}
    if rec.center_freq_hz is not None:
        capture[sigmf.FREQUENCY_KEY] = float(rec.center_freq_hz)
    meta.add_capture(0, metadata=capture)
    for a in rec.annotations:
        info: dict[str, Any] = {sigmf.LABEL_KEY: a.label}
        if a.comment:
            info[sigmf.COMMENT_KEY] = a.comment
        meta.add_annotation(int(a.sample_start), int(a.sample_count), metadata=info)
    meta.validate()
    meta_path = base.with_name(base.name + ".sigmf-meta")
    meta.tofile(str(meta_path), overwrite=True)  # the data file was just rewritten: keep the pair consistent
    return meta_path


def read_recording(path: str | Path) -> Recording:
    """Open a SigMF recording (either file of the pair, or the base name)."""
    import sigmf  # noqa: PLC0415
    from sigmf import sigmffile  # noqa: PLC0415

    base = _base(path)
    meta_path = base.with_name(base.name + ".sigmf-meta")
    if not meta_path.is_file():
        raise FileNotFoundError(f"no SigMF recording at {meta_path}")
    handle = sigmffile.fromfile(str(meta_path))
    info = handle.get_global_info()
    datatype = info.get(sigmf.DATATYPE_KEY, "")
    if not str(datatype).startswith("c"):
        raise ValueError(f"recording {meta_path} holds real samples ({datatype}); airfl needs complex IQ")
    samples = np.asarray(handle.read_samples(), dtype=np.complex128)
    captures = handle.get_captures()
    centre = captures[0].get(sigmf.FREQUENCY_KEY) if captures else None
    extra = {k.split(":", 1)[1]: v for k, v in info.items() if k.startswith(f"{AIRFL_NAMESPACE}:")}
    annotations = [
        Annotation(
            int(a[sigmf.SAMPLE_START_KEY]),
            int(a.get(sigmf.SAMPLE_COUNT_KEY, 0)),
            str(a.get(sigmf.LABEL_KEY, "")),
            str(a.get(sigmf.COMMENT_KEY, "")),
        )
        for a in handle.get_annotations()
    ]
    return Recording(
        samples=samples,
        sample_rate_hz=float(info[sigmf.SAMPLE_RATE_KEY]),
        center_freq_hz=float(centre) if centre is not None else None,
        description=str(info.get(sigmf.DESCRIPTION_KEY, "")),
        hardware=str(info.get(sigmf.HW_KEY, "")),
        annotations=annotations,
        extra=extra,
    )
