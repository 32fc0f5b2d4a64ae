"""What the Slicer module and the engine agree on, written once and used by both sides.

- the background job: the files in its work folder and the `segment` flags that produce them
  (`JobSettings`, `segment_arguments`);
- the progress protocol: one JSON object `{"fraction": f, "message": m}` per line on stderr
  (`JsonProgress` writes it, `read_progress_line` reads it);
- the summary of a segmented case (`case_summary`, `read_summary`): the same keys from the
  command line, the cohort runner and the in-process path;
- the exit codes of the command line.

Torch-free: the Slicer module imports this at load.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TextIO

from ..core.errors import PathLike
from ..core.options import DEFAULT_OVERLAP, Point, RegionOptions, WindowOptions
from ..core.progress import TerminalProgress

# --------------------------------------------------------------------------- exit codes

EXIT_OK = 0
EXIT_BUG = 1               # an unexpected failure: the traceback is printed for a bug report
EXIT_BAD_INPUT = 2         # bad input or usage: one line "error: <file>: <problem>", nothing written
EXIT_CASES_FAILED = 3      # a cohort ran, but some cases failed (the others were written)
EXIT_CANCELLED = 130       # Ctrl+C or a cancel request: nothing (more) written
EXIT_CODES_TEXT = ("exit codes: 0 done; 1 unexpected failure (a bug: the traceback is printed); "
                   "2 bad input or usage (one line names the file and the problem; nothing is "
                   "written); 3 some cases of a cohort failed (the others were written); 130 cancelled")

# --------------------------------------------------------------------------- the background job

#: Files of one job inside its work folder.
INPUT_FILE = "input.nrrd"
LABELS_FILE = "labels.nrrd"
ATTENTION_DIR = "attention"
SUMMARY_FILE = "summary.json"
#: The maps a job writes: uncompressed NRRD, read back at once by the module.
JOB_MAP_FORMAT = "nrrd"
#: How the module starts the engine: `<python> -m AttentionUNetSegmentLib segment ...`.
ENGINE_MODULE = "AttentionUNetSegmentLib"


@dataclass(frozen=True)
class JobSettings:
    """What the Slicer module asks of a run; the same for the background job and in process."""

    model_path: Optional[str] = None        # None: the bundled default model
    device: str = "auto"
    overlap: float = DEFAULT_OVERLAP
    point_ras: Optional[Point] = None       # click-to-segment, in the CT volume's RAS

    def __post_init__(self) -> None:
        window = WindowOptions(overlap=self.overlap, device=self.device)   # the checks, once
        object.__setattr__(self, "overlap", window.overlap)
        object.__setattr__(self, "point_ras", RegionOptions(point_ras=self.point_ras).point_ras)
        if self.model_path is not None:
            object.__setattr__(self, "model_path", str(self.model_path))


def segment_arguments(work_dir: PathLike, settings: JobSettings) -> list[str]:
    """The `segment` command's arguments for a job whose files are in `work_dir`."""
    folder = Path(work_dir)
    args = [str(folder / INPUT_FILE), "-o", str(folder / LABELS_FILE),
            "--attention-dir", str(folder / ATTENTION_DIR), "--attention-format", JOB_MAP_FORMAT,
            "--device", settings.device, f"--overlap={settings.overlap:g}",
            "--progress", "json", "--summary-json", str(folder / SUMMARY_FILE)]
    if settings.model_path:
        args += ["--model", settings.model_path]
    if settings.point_ras is not None:
        # "--point=..." so that a negative first coordinate is never taken for an option.
        args.append("--point=" + ",".join(f"{v:.6g}" for v in settings.point_ras))
    return args


# --------------------------------------------------------------------------- progress

PROGRESS_KINDS = ("bar", "json", "none")


def progress_line(fraction: float, message: str) -> str:
    return json.dumps({"fraction": round(float(fraction), 4), "message": message})


def read_progress_line(line: str) -> Optional[tuple[float, str]]:
    """(fraction in 0..1, message) of a progress line; None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
        fraction = float(record["fraction"])
    except (ValueError, TypeError, KeyError):
        return None
    return min(max(fraction, 0.0), 1.0), str(record.get("message", ""))


class JsonProgress:
    """One progress line per update, flushed at once (the module reads them as they come)."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stderr

    def __call__(self, fraction: float, message: str) -> None:
        self.stream.write(progress_line(fraction, message) + "\n")
        self.stream.flush()


def make_progress(kind: str, stream: Optional[TextIO] = None):
    """`bar` (people), `json` (programs) or `none` (returns None: nothing is reported)."""
    if kind == "bar":
        return TerminalProgress(stream)
    if kind == "json":
        return JsonProgress(stream)
    return None


# --------------------------------------------------------------------------- the summary

#: Every key of a case's summary.
SUMMARY_KEYS = ("input", "labels", "volume_ml", "seconds", "device", "precision", "windows", "gates",
                "attention_grid", "model")


def _attention_grid(prediction) -> Optional[str]:
    maps = list(prediction.attention.values())
    if not maps:
        return None
    return "ct" if all(m.GetSize() == prediction.labelmap.GetSize() for m in maps) else "model"


def case_summary(input_path: Optional[PathLike], prediction, model_path: PathLike, spec,
                 seconds: dict[str, float], inference=None) -> dict[str, Any]:
    """The summary of one segmented case. `prediction`: a core.pipeline.Prediction (its volumes,
    labels and maps); `inference`: how it was computed (core.inference.InferenceResult; a
    SegmentationResult carries its own); `seconds`: per stage (read, preprocess, inference,
    restore, postprocess; export adds write and total)."""
    inference = inference or getattr(prediction, "inference", None)
    return {
        "input": None if input_path is None else str(input_path),
        "labels": [label.to_dict() for label in prediction.labels],
        "volume_ml": prediction.volume_ml(),
        "seconds": dict(seconds),
        "device": getattr(inference, "device", None),
        "precision": getattr(inference, "precision", None),
        "windows": getattr(inference, "windows", None),
        "gates": sorted(prediction.attention),
        "attention_grid": _attention_grid(prediction),
        "model": {"path": str(model_path), "architecture": spec.architecture,
                  "description": spec.description, "training": spec.training},
    }


def read_summary(path: PathLike) -> dict[str, Any]:
    """A summary written by `segment --summary-json` (an empty dict when there is none)."""
    path = Path(path)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the click worker
#
# Interactive click-to-segment runs in one long-lived process, `<python> -m AttentionUNetSegmentLib
# click-worker`, that loads the model once and keeps the preprocessed CT. The module writes one
# JSON request per line to its stdin and reads one JSON response per line from its stdout:
#
#   {"id": 1, "op": "open", "ct": PATH, "model": PATH|null, "device": "auto", "work_dir": DIR}
#   {"id": 2, "op": "clicks", "clicks": [{"point": [R, A, S], "include": true}, ...],
#    "start_labelmap": PATH|null}
#   {"id": 3, "op": "quit"}
#
# "clicks" always names the whole list (undo: the list without its last click; a moved point:
# the list with its new position; an edit in the Segment Editor: the labelmap to start from and
# the clicks made since): the answer depends on the list only. The response names a folder with
# the job's files (LABELS_FILE, ATTENTION_DIR, SUMMARY_FILE), or says "empty" for no clicks:
#
#   {"id": 2, "ok": true, "result_dir": DIR|null, "clicks": 3, "volume_ml": {...}, "seconds": {...}}
#   {"id": 2, "ok": false, "error": "<one line>"}

CLICK_WORKER_COMMAND = "click-worker"
OPEN, CLICKS, QUIT = "open", "clicks", "quit"
#: Result folders inside the worker's work folder: result-<request id>.
RESULT_PREFIX = "result-"
#: How many result folders the worker keeps (the module may still be reading the one before).
RESULTS_KEPT = 2


def request_line(request_id: int, op: str, **fields: Any) -> str:
    return json.dumps({"id": int(request_id), "op": op, **fields})


def clicks_payload(clicks) -> list[dict[str, Any]]:
    """core.options.Click objects (or (point, include) pairs) as the request carries them."""
    out = []
    for click in clicks:
        point, include = (click.point_ras, click.include) if hasattr(click, "point_ras") else click
        out.append({"point": [float(v) for v in point], "include": bool(include)})
    return out


def clicks_from_payload(items) -> tuple:
    """The clicks of a request, checked (core.options.Click raises InputError for a bad point)."""
    from ..core.options import Click

    try:
        return tuple(Click(tuple(item["point"]), bool(item.get("include", True))) for item in items)
    except (TypeError, KeyError) as error:
        from ..core.errors import InputError
        raise InputError(None, f"a click is {{'point': [R, A, S], 'include': true|false}}; got {items!r}") from error


def read_response(line: str) -> Optional[dict[str, Any]]:
    """A response of the worker; None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "id" in record and "ok" in record else None
