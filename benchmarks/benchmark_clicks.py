"""Time per click of Slicer's click mode: the click worker with the bundled click model on the CPU,
driven through the module's client (scene/click_worker.py), clicks inside a labelled pancreas.
The figures in docs/slicer.md ("What a click costs") come from this script:

    .venv/bin/python benchmarks/benchmark_clicks.py CT LABELS LABEL_VALUE
    e.g. ../shared/data/nih-pancreas-ct-0001/ct.nii.gz ../shared/data/nih-pancreas-ct-0001/pancreas.nii.gz 1
"""
import os
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, "AttentionUNetSegment")
from AttentionUNetSegmentLib.scene.click_worker import ClickWorkerClient
from AttentionUNetSegmentLib.files.resources import default_model_path

ct_path, lab_path, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
ct = sitk.ReadImage(ct_path)
lab = sitk.ReadImage(lab_path)
arr = sitk.GetArrayFromImage(lab) == value
zyx = np.argwhere(arr)


def ras(idx_zyx):
    """A voxel (z, y, x) of the label image as Slicer's RAS point."""
    p = lab.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx_zyx[::-1]])
    return (-p[0], -p[1], p[2])
c, c2, c3 = zyx[len(zyx) // 2], zyx[len(zyx) // 5], zyx[4 * len(zyx) // 5]
client = ClickWorkerClient(python_executable=sys.executable, work_root=tempfile.gettempdir(),
                           env={**os.environ, "PYTHONPATH": os.path.abspath("AttentionUNetSegment"), "OMP_NUM_THREADS": "2"}).start()


def timed(label, rid):
    t = time.perf_counter()
    a = client.wait_for(rid, 600)
    dt = time.perf_counter() - t
    print(f"{label}: {dt:.2f} s ok={a['ok']} {a.get('volume_ml', a.get('error', ''))} {a.get('seconds','')}", flush=True)
    return a


try:
    timed("open (model + read + preprocess)", client.open(ct, str(default_model_path(clicks=True)), "cpu"))
    k1, k2, k3 = (ras(c), True), (ras(c2), True), (ras(c3), True)
    timed("click 1", client.send_clicks([k1]))
    timed("click 2", client.send_clicks([k1, k2]))
    timed("click 3", client.send_clicks([k1, k2, k3]))
    timed("undo", client.send_clicks([k1, k2]))
    moved = ((k1[0][0] + 3, k1[0][1], k1[0][2]), True)
    timed("move click 1 (replays 2)", client.send_clicks([moved, k2]))
finally:
    client.stop()
