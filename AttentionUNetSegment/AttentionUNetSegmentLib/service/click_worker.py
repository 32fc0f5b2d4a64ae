"""The click worker: a long-lived engine process that answers clicks (service.contract has
the protocol). It loads each model once, reads and preprocesses the CT once per "open", and
for each "clicks" request computes only what the list of clicks changed (the session reuses
the clicks already answered), then exports the result as the background job would.

    stdin  --one JSON request per line-->  ClickWorker.handle  --one JSON response per line--> stdout
    stderr: progress lines and log text

Failures never end the worker: a request that fails answers {"ok": false, "error": one line}.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Optional, TextIO

import SimpleITK as sitk

from ..core.errors import InputError
from ..core.options import SegmentationOptions, WindowOptions
from .clicks import check_clicks_suit, new_session
from .contract import (
    ATTENTION_DIR,
    CLICKS,
    JOB_MAP_FORMAT,
    LABELS_FILE,
    OPEN,
    QUIT,
    RESULT_PREFIX,
    RESULTS_KEPT,
    SUMMARY_FILE,
    case_summary,
    clicks_from_payload,
)
from .export import OutputTargets, export_prediction
from .segmenter import LoadedModel, load_segmentation_model, read_case


class ClickWorker:
    """The state of one worker process: loaded models, the open CT's session, its results."""

    def __init__(self) -> None:
        self.models: dict[str, LoadedModel] = {}
        self.model: Optional[LoadedModel] = None
        self.session = None
        self.ct_path: Optional[Path] = None
        self.work_dir: Optional[Path] = None
        self.start_labelmap: Optional[str] = None
        self.results: list[Path] = []

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The response to one request; never raises."""
        answer: dict[str, Any] = {"id": request.get("id"), "op": request.get("op")}
        try:
            if request.get("op") == OPEN:
                answer.update(self.open(request))
            elif request.get("op") == CLICKS:
                answer.update(self.clicks(request))
            elif request.get("op") == QUIT:
                answer.update({"ok": True})
            else:
                raise InputError(None, f"unknown request {request.get('op')!r}")
        except InputError as error:
            answer.update({"ok": False, "error": str(error)})
        except Exception as error:  # noqa: BLE001 - a bug: answer in a line, traceback to stderr
            traceback.print_exc()
            answer.update({"ok": False, "error": f"unexpected failure ({type(error).__name__}: {error})"})
        return answer

    def open(self, request: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        key = str(request.get("model") or "")
        if key not in self.models:
            self.models[key] = load_segmentation_model(request.get("model") or None, clicks=True)
        model = self.models[key]
        if not model.spec.interactive:
            raise InputError(model.path, "this model has no click channels; choose a click-conditioned model")
        loaded = time.perf_counter()
        self.ct_path = Path(request["ct"])
        image, read_seconds = read_case(self.ct_path)
        options = SegmentationOptions(window=WindowOptions(device=request.get("device", "auto")))
        self.model, self.options = model, options
        self.session = new_session(image, model, options)
        self.work_dir = Path(request["work_dir"])
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.start_labelmap, self.results = None, []
        return {"ok": True, "model": str(model.path), "seconds": {
            "model": loaded - t0, "read": read_seconds, "preprocess": self.session.preprocess_seconds}}

    def clicks(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.session is None:
            raise InputError(None, "no CT is open; send 'open' first")
        clicks = clicks_from_payload(request.get("clicks", []))
        start = request.get("start_labelmap")
        if start != self.start_labelmap:  # a new starting segment: the clicks count from it
            self.session.reset()
            if start:
                self.session.start_from_labelmap(sitk.ReadImage(str(start)))
            self.start_labelmap = start
        if clicks and start is None:
            check_clicks_suit(self.model.spec, clicks)
        result = self.session.set_clicks(clicks)
        if result is None:
            return {"ok": True, "result_dir": None, "clicks": 0, "empty": True}
        folder = self._export(result, int(request.get("id", 0)))
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
        return {"ok": True, "result_dir": str(folder), "clicks": len(clicks),
                "volume_ml": summary["volume_ml"], "seconds": summary["seconds"]}

    def _export(self, result, request_id: int) -> Path:
        folder = self.work_dir / f"{RESULT_PREFIX}{request_id}"
        targets = OutputTargets(labels=folder / LABELS_FILE, attention_dir=folder / ATTENTION_DIR,
                                summary=folder / SUMMARY_FILE, map_format=JOB_MAP_FORMAT)
        folder.mkdir(parents=True, exist_ok=True)
        summary = case_summary(self.ct_path, result, self.model.path, self.model.spec,
                               {k: v for k, v in result.seconds.items() if k != "total"})
        export_prediction(result, targets, summary)
        self.results.append(folder)
        for old in self.results[:-RESULTS_KEPT]:  # the module has read those by now
            shutil.rmtree(old, ignore_errors=True)
        self.results = self.results[-RESULTS_KEPT:]
        return folder


def serve(stdin: TextIO, stdout: TextIO) -> int:
    """Answer requests until "quit" or the end of stdin (the module closed it or died)."""
    worker = ClickWorker()
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            request = {"op": None, "id": None}
        answer = worker.handle(request if isinstance(request, dict) else {"op": None})
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
        if request.get("op") == QUIT:
            break
    return 0
