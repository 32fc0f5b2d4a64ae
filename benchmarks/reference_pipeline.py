#!/usr/bin/env python
"""A plain reference pipeline for the same job as `segment` without attention maps.

What a competent user would write with SimpleITK and MONAI, and nothing more:
    SimpleITK read -> orient to LPS (sitk.DICOMOrient, the orientation the model was trained
    in; without it a RAS-stored CT is seen mirrored and nothing is found) -> resample to the
    model spacing (linear, same direction) -> HU window and
    standardise -> MONAI sliding_window_inference with OUR network from the model file
    (Gaussian blending, same patch, overlap and batch) -> argmax on the model grid -> resample
    the labels back onto the CT grid (nearest neighbour) -> write the labelmap (.nii.gz).
No anti-aliasing, no clean-up, no attention maps, no checks.

The network runs at the precision `segment` would choose (bf16 autocast on a CPU with native
bf16 when the model file validated it, bf16/fp16 on CUDA), so that the comparison is about the
pipeline, not the arithmetic; `--precision` overrides it. Prints one JSON line with per-stage
seconds (and writes it to --json). MONAI is the `benchmark` extra (pip install monai).

    python benchmarks/reference_pipeline.py CT OUT.nii.gz [--model MODEL] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

START = time.perf_counter()

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from monai.inferers import sliding_window_inference  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AttentionUNetSegment"))
from AttentionUNetSegmentLib.core.devices import (  # noqa: E402
    model_allows_cpu_bf16,
    resolve_device,
    resolve_precision,
)
from AttentionUNetSegmentLib.files.modelfile import default_model_path, load_model  # noqa: E402

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resample_to_spacing(image: sitk.Image, spacing_xyz) -> sitk.Image:
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing_xyz)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing_xyz,
                         image.GetDirection(), -1024.0, sitk.sitkFloat32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("ct")
    parser.add_argument("output")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seconds = {"imports": time.perf_counter() - START}

    t = time.perf_counter()
    ct = sitk.ReadImage(args.ct)
    seconds["read"] = time.perf_counter() - t

    t = time.perf_counter()
    model, spec = load_model(args.model or default_model_path())
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device, model_allows_cpu_bf16(spec.training))
    model = model.to(device).eval()
    seconds["load_model"] = time.perf_counter() - t

    t = time.perf_counter()
    on_model_grid = resample_to_spacing(sitk.DICOMOrient(ct, "LPS"), tuple(reversed(spec.spacing_zyx)))
    low, high = spec.intensity.window_hu
    array = np.clip(sitk.GetArrayViewFromImage(on_model_grid), low, high)
    array = ((array - spec.intensity.mean) / spec.intensity.std).astype(np.float32)
    seconds["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    inputs = torch.from_numpy(array)[None, None].to(device)  # (1, 1, z, y, x)
    autocast = (torch.autocast(device.type, dtype=AUTOCAST[precision]) if precision in AUTOCAST
                else torch.autocast(device.type, enabled=False))
    with torch.inference_mode(), autocast:
        logits = sliding_window_inference(inputs, roi_size=tuple(spec.patch_size_zyx), sw_batch_size=args.batch_size,
                                          predictor=model, overlap=args.overlap, mode="gaussian")
    labels = logits[0].argmax(0).to(torch.uint8).cpu().numpy()  # (z, y, x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds["inference"] = time.perf_counter() - t

    t = time.perf_counter()
    labels_image = sitk.GetImageFromArray(labels)
    labels_image.CopyInformation(on_model_grid)
    restored = sitk.Resample(labels_image, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    seconds["restore"] = time.perf_counter() - t

    t = time.perf_counter()
    sitk.WriteImage(restored, args.output, True)
    seconds["write"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - START
    report = {"seconds": seconds, "device": str(device), "precision": precision,
              "foreground_voxels": int(sitk.GetArrayViewFromImage(restored).astype(bool).sum())}
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
