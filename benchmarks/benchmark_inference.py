#!/usr/bin/env python
"""Side-by-side inference benchmark: our sliding window vs MONAI's, and the cost of the gates.

One run, same weights (the bundled model's trained weights by default; --random for randomly
initialised paper-width weights), same CT-sized volume (a held-out phantom on the model grid,
centred in a 160x256x256 canvas of air), same overlap and Gaussian weighting:
  (a) ours   - inference.sliding_window_predict(AttentionUNet3D), logits + every attention map
  (b) monai  - monai.inferers.sliding_window_inference with the same network as predictor,
               returning (logits, gate2, gate3, gate4) so MONAI stitches the maps too
  (c) unet   - ours with the plain UNet3D backbone (no gates), for the gates' overhead
Each method runs in its own subprocess so that peak memory (RSS on CPU, allocator peak on CUDA)
is its own. Prints times, the ratio ours/MONAI, peak memory, windows/s, achieved GFLOP/s and the
Dice between our and MONAI's segmentations; `--json FILE` keeps the figures.

    python benchmarks/benchmark_inference.py                      # CT-sized: 160x256x256 (z, y, x)
    python benchmarks/benchmark_inference.py --random             # paper-width random weights, 160x160x96 windows
    python benchmarks/benchmark_inference.py --size 96,160,160    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError("expected z,y,x")
    return values  # type: ignore[return-value]


def _volume(size_zyx, spec, seed: int = 10000):
    """A held-out phantom, preprocessed exactly as `segment` does, centred in a canvas of air."""
    import numpy as np
    from AttentionUNetSegmentLib.phantom.generator import generate_case
    from AttentionUNetSegmentLib.core.preprocessing import AIR_HU, normalize_hu, preprocess

    case = preprocess(generate_case(seed).ct, spec.spacing_zyx, spec.intensity).array
    canvas = np.full(size_zyx, normalize_hu(np.array([AIR_HU], np.float32), spec.intensity)[0], np.float32)
    # Centre-crop or centre-pad every axis so the canvas is exactly size_zyx.
    src, dst = [], []
    for n, m in zip(case.shape, size_zyx):
        lo = abs(n - m) // 2
        src.append(slice(lo, lo + m) if n > m else slice(0, n))
        dst.append(slice(0, m) if n > m else slice(lo, lo + n))
    canvas[tuple(dst)] = case[tuple(src)]
    return canvas


def _cached_volume(size_zyx, spec, folder: str):
    """_volume, generated once per size, spacing and intensity window and kept in `folder` as .npy:
    every method's subprocess (and every run given the same --cache-dir) reuses it."""
    import hashlib

    import numpy as np

    key = hashlib.sha1(json.dumps([list(size_zyx), list(spec.spacing_zyx), spec.intensity.to_dict()]).encode())
    path = os.path.join(folder, f"volume-{key.hexdigest()[:12]}.npy")
    if not os.path.exists(path):
        np.save(path + ".tmp.npy", _volume(size_zyx, spec))
        os.replace(path + ".tmp.npy", path)
    return np.load(path)


def _model_and_spec(arch: str, args):
    """The bundled model's weights (or random paper-width ones); arch 'unet3d' gets the same
    widths, randomly initialised (only its speed is compared)."""
    import torch
    from AttentionUNetSegmentLib.files.modelfile import default_model_path, load_model, tiny_test_model
    from AttentionUNetSegmentLib.core.network import build_network

    if args.random:
        _, spec = tiny_test_model()
        widths, weights = tuple(args.widths), None
    else:
        model, spec = load_model(args.model or default_model_path())
        widths, weights = tuple(spec.network_args["widths"]), model.state_dict()
    torch.manual_seed(0)
    model = build_network(arch, in_channels=1, n_classes=2, widths=widths).eval()
    model.widths = list(widths)  # recorded in the figures
    if weights is not None and arch == spec.architecture:
        model.load_state_dict(weights)
    return model, spec


def _flops_per_window(model, patch_zyx, attention: bool) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, *patch_zyx), return_attention=attention) if attention else model(
            torch.zeros(1, 1, *patch_zyx))
    return float(counter.get_total_flops())


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in KiB on Linux: the peak resident memory of this (fresh) process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(method: str, args) -> dict:
    """Runs inside a fresh subprocess: one method, returns its figures."""
    import numpy as np
    import torch
    from AttentionUNetSegmentLib.core.inference import InferenceOptions, sliding_window_predict
    from AttentionUNetSegmentLib.core.devices import resolve_device, resolve_precision
    from AttentionUNetSegmentLib.core.devices import model_allows_cpu_bf16

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = resolve_device(args.device)
    arch = "unet3d" if method == "unet" else "attention_unet3d"
    model, spec = _model_and_spec(arch, args)
    volume = _cached_volume(args.size, spec, args.cache_dir or args.workdir)
    args.patch = args.patch or tuple(spec.patch_size_zyx if not args.random else (96, 160, 160))
    # Precision as `segment` decides it: "auto" may use bf16 on the CPU only for a model file that
    # records a measured bf16/fp32 agreement (precision.py). The U-Net timing run uses the same
    # precision as ours so that only the gates differ; "ours_fp32" forces fp32 for comparison.
    validated = not args.random and model_allows_cpu_bf16(spec.training)
    precision = "fp32" if method == "ours_fp32" else resolve_precision(args.precision, device, validated)
    options = InferenceOptions(patch_size_zyx=args.patch, overlap=args.overlap, batch_size=args.batch,
                               device=str(device), precision=precision, return_attention=arch != "unet3d",
                               memory_format=args.memory_format)
    # Warm-up on one patch-sized volume: kernels, allocator and thread pools, not timed.
    sliding_window_predict(model, volume[: args.patch[0], : args.patch[1], : args.patch[2]], options)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        if method == "monai":
            logits, attention, windows = _monai(model, volume, args, device)
        else:
            result = sliding_window_predict(model, volume, options)
            logits, attention, windows = result.logits, result.attention, result.windows
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)

    seconds = min(times)
    flops = _flops_per_window(model.cpu() if device.type != "cpu" else model, args.patch, arch != "unet3d")
    np.save(os.path.join(args.workdir, f"{method}_fg.npy"), (logits[1] > logits[0]))
    for name, values in attention.items():
        np.save(os.path.join(args.workdir, f"{method}_{name}.npy"), values)
    return {
        "method": method, "seconds": seconds, "all_seconds": times, "windows": windows,
        "windows_per_s": windows / seconds, "gflops_per_window": flops / 1e9,
        "achieved_gflop_s": flops * windows / seconds / 1e9,
        "peak_memory_mb": _peak_memory_mb(str(device)), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "precision": "fp32 (MONAI default)" if method == "monai" and device.type == "cpu" else precision,
        "threads": torch.get_num_threads(), "patch_zyx": list(args.patch),
        "weights": "random" if args.random else "trained",
        "widths": model.widths,
    }


def _monai(model, volume, args, device):
    """MONAI's sliding window with the same network, the same Gaussian (sigma = patch/8) and overlap."""
    import torch
    from monai.inferers import sliding_window_inference

    names = list(model.gate_names)
    use_amp = device.type == "cuda" and args.precision in ("auto", "bf16", "fp16")
    amp_dtype = torch.bfloat16 if args.precision in ("auto", "bf16") else torch.float16

    def predictor(x):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits, attention = model(x, return_attention=True)
        return (logits.float(), *[attention[n].float() for n in names])

    inputs = torch.from_numpy(volume)[None, None]
    # MONAI's divisor requirement: pad like ours does (to a multiple of 16) so the network accepts it.
    pad = [(-s) % model.divisor for s in volume.shape]
    inputs = torch.nn.functional.pad(inputs, (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
    with torch.inference_mode():
        outputs = sliding_window_inference(
            inputs, roi_size=args.patch, sw_batch_size=args.batch, predictor=predictor,
            overlap=args.overlap, mode="gaussian", sigma_scale=0.125, padding_mode="replicate",
            sw_device=device, device=device if device.type == "cuda" else torch.device("cpu"))
    z, y, x = volume.shape
    logits = outputs[0][0, :, :z, :y, :x].float().cpu().numpy()
    attention = {}
    for name, out in zip(names, outputs[1:]):
        s = model.gate_scales[name]
        attention[name] = out[0, 0, : -(-z // s), : -(-y // s), : -(-x // s)].float().cpu().numpy()
    # MONAI's window count: same scan rule as its _get_scan_interval (documented, not exposed).
    import math
    windows = 1
    for size, roi in zip(inputs.shape[2:], args.patch):
        step = max(int(roi * (1 - args.overlap)), 1)
        windows *= max(math.ceil((size - roi) / step), 0) + 1
    return logits, attention, windows


def _dice(a, b) -> float:
    import numpy as np

    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=_triple, default=(160, 256, 256), help="volume z,y,x after resampling")
    parser.add_argument("--patch", type=_triple, default=None,
                        help="window z,y,x (default: the model's; with --random the paper's 160x160x96)")
    parser.add_argument("--model", help="model file or folder (default: the bundled model)")
    parser.add_argument("--random", action="store_true",
                        help="randomly initialised network of --widths instead of trained weights")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--widths", type=lambda t: [int(v) for v in t.split(",")], default=[16, 32, 64, 128, 256],
                        help="with --random: channels per level (default: the paper's 16..256)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's default)")
    parser.add_argument("--methods", default="ours,monai,unet,ours_fp32")
    parser.add_argument("--memory-format", default="auto", choices=("auto", "channels_last", "contiguous"),
                        help="layout of our windows and weights (MONAI's run keeps the default layout)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help="keep the generated test volume here for later runs (default: a temporary folder)")
    args = parser.parse_args()

    if args.run:  # child process
        print(json.dumps(run_one(args.run, args)))
        return 0

    import tempfile

    import numpy as np

    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for method in args.methods.split(","):
            command = [sys.executable, __file__, "--run", method, "--workdir", workdir] + sys.argv[1:]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                raise SystemExit(f"{method} failed")
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[method]
            print(f"{method:6s} {r['seconds']:8.2f} s  {r['windows']:4d} windows  {r['windows_per_s']:6.2f} win/s  "
                  f"{r['achieved_gflop_s']:7.1f} GFLOP/s  peak {r['peak_memory_mb']:8.0f} MB  "
                  f"({r['device']}, {r['precision']}, {r['threads']} threads)", flush=True)
        summary = {"size_zyx": args.size, "patch_zyx": results[next(iter(results))].get("patch_zyx"), "overlap": args.overlap, "batch": args.batch, "memory_format": args.memory_format,
                   "widths": args.widths, "results": results}
        if "ours" in results and "monai" in results:
            ours_fg = np.load(os.path.join(workdir, "ours_fg.npy"))
            monai_fg = np.load(os.path.join(workdir, "monai_fg.npy"))
            summary["ratio_ours_over_monai"] = results["ours"]["seconds"] / results["monai"]["seconds"]
            summary["dice_ours_vs_monai"] = _dice(ours_fg, monai_fg)
            summary["attention_max_abs_diff"] = {
                name: float(np.abs(np.load(os.path.join(workdir, f"ours_{name}.npy"))
                                   - np.load(os.path.join(workdir, f"monai_{name}.npy"))).max())
                for name in ("gate2", "gate3", "gate4")
            }
            print(f"time ours / MONAI = {summary['ratio_ours_over_monai']:.3f} (target <= 0.5); "
                  f"Dice(ours, MONAI) = {summary['dice_ours_vs_monai']:.4f} (target >= 0.99); "
                  f"attention max |diff| = "
                  + ", ".join(f"{k} {v:.3g}" for k, v in summary["attention_max_abs_diff"].items()))
        if "ours_fp32" in results and "monai" in results:
            summary["ratio_ours_fp32_over_monai"] = results["ours_fp32"]["seconds"] / results["monai"]["seconds"]
            print(f"time ours (forced fp32) / MONAI = {summary['ratio_ours_fp32_over_monai']:.3f}")
        if "ours" in results and "unet" in results:
            summary["gate_overhead"] = results["ours"]["seconds"] / results["unet"]["seconds"] - 1
            print(f"gates' overhead over the plain U-Net backbone = {summary['gate_overhead'] * 100:+.1f} % "
                  f"(target <= +10 %, paper +7 %)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
