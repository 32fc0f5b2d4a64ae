"""The click worker behind Slicer's click mode: the protocol round trip in process, then the real
process driven by the module's client (no Qt), with a tiny click-conditioned model."""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from AttentionUNetSegmentLib.core.options import Click
from AttentionUNetSegmentLib.service.click_worker import serve
from AttentionUNetSegmentLib.service.contract import (
    LABELS_FILE, clicks_from_payload, clicks_payload, read_response, request_line)

LIVER, SPLEEN = (98.0, 164.3, 151.3), (-112.0, 110.3, 157.3)


def test_clicks_round_trip_through_the_protocol():
    clicks = (Click(LIVER, True), Click((-1.5, 2, -3), False))
    assert clicks_from_payload(json.loads(json.dumps(clicks_payload(clicks)))) == clicks
    assert read_response('{"id": 3, "ok": true}') == {"id": 3, "ok": True}
    assert read_response("warning: something") is None and read_response('{"fraction": 0.5}') is None


def _serve(requests) -> list[dict]:
    stdin = io.StringIO("".join(line + "\n" for line in requests))
    stdout = io.StringIO()
    assert serve(stdin, stdout) == 0
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def test_the_worker_answers_open_clicks_undo_and_bad_requests(tmp_path, real_ct_path, tiny_click_model_path):
    work = tmp_path / "work"
    answers = _serve([
        request_line(1, "clicks", clicks=clicks_payload([(LIVER, True)])),        # nothing open yet
        request_line(2, "open", ct=str(real_ct_path), model=str(tiny_click_model_path), device="cpu",
                     work_dir=str(work)),
        request_line(3, "clicks", clicks=clicks_payload([(LIVER, True)])),
        request_line(4, "clicks", clicks=clicks_payload([(LIVER, True), (SPLEEN, False)])),
        request_line(5, "clicks", clicks=clicks_payload([(LIVER, True)])),          # undo
        request_line(6, "clicks", clicks=clicks_payload([(LIVER, True), ((5000.0, 0, 0), True)])),
        request_line(7, "clicks", clicks=[]),                                          # reset
        "not json",
        request_line(8, "quit"),
    ])
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5, 6, 7, None, 8]
    assert not answers[0]["ok"] and "no CT is open" in answers[0]["error"]
    assert answers[1]["ok"] and set(answers[1]["seconds"]) == {"model", "read", "preprocess"}
    assert all(answer["ok"] for answer in answers[2:5])
    assert (work / "result-4" / LABELS_FILE).exists() and (work / "result-5" / LABELS_FILE).exists()
    assert answers[3]["clicks"] == 2 and answers[4]["clicks"] == 1
    assert not (work / "result-3").exists()          # only the newest results are kept
    undo = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "result-5" / LABELS_FILE)))
    first = answers[2]["volume_ml"]
    assert answers[4]["volume_ml"] == first and undo.shape == (30, 101, 122)
    assert not answers[5]["ok"] and "outside the CT" in answers[5]["error"]
    assert answers[6] == {"id": 7, "op": "clicks", "ok": True, "result_dir": None, "clicks": 0, "empty": True}
    assert not answers[7]["ok"]


def test_the_module_client_drives_the_real_worker_process(tmp_path, real_ct_path, tiny_click_model_path):
    from AttentionUNetSegmentLib.scene.click_worker import ClickWorkerClient

    repo_lib = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        sys.modules["AttentionUNetSegmentLib"].__file__))))
    client = ClickWorkerClient(python_executable=sys.executable, work_root=str(tmp_path),
                               env={**os.environ, "PYTHONPATH": repo_lib}).start()
    try:
        ct = sitk.ReadImage(str(real_ct_path))
        opened = client.wait_for(client.open(ct, str(tiny_click_model_path), "cpu"))
        assert opened["ok"], opened
        answer = client.wait_for(client.send_clicks([(LIVER, True)]))
        output = client.result(answer)
        assert output.labelmap.GetSize() == ct.GetSize() and output.summary["gates"] == ["gate2", "gate3", "gate4"]
        edited = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
        edited.CopyInformation(ct)
        edited[40:60, 40:60, 10:20] = 1
        answer = client.wait_for(client.send_clicks([(SPLEEN, False)], start_segment=edited))
        assert answer["ok"], answer
    finally:
        client.stop()
    assert not client.alive and not client.work_dir.exists()
