#!/usr/bin/env bash
# Every GPU figure of issue 11 and the CUDA tests, in under 8 minutes on one GPU; JSON out.
#
# Where it runs: a machine with Python >= 3.11, a CUDA build of torch, and numpy, but possibly
# without SimpleITK, MONAI, pytest or this package. The package comes with the working tree
# (PYTHONPATH); the rest is carried as wheels and installed into a private folder, offline:
#
#   here, once:   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl \
#                     "SimpleITK==2.5.*" monai pytest pluggy iniconfig packaging pygments
#                 (~54 MB; .whl/ is git-ignored; SimpleITK's cp311-abi3 wheel suits Python >= 3.11)
#   device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# Usage:  bash benchmarks/gpu_check.sh [OUT_DIR] [--cpu-smoke]
#   OUT_DIR  default: $OUT (the device tool's result folder), else ./gpu-check-out
#   --cpu-smoke  the same steps on the CPU with small volumes (proves the script runs; ~10 min on 2 cores)
#
# Steps (each bounded by `timeout`, a failed step is recorded and the next one runs):
#   1. tests      CUDA variants (autocast agreement, capped-memory OOM fallback, stitching on the GPU)
#                 and the files that failed on the GPU machine before (explicit devices now)
#   2. inference  ours vs MONAI and the gates' overhead (plain U-Net), bundled widths (trained
#                 weights, 64x96x96 windows) and paper widths (16..256, 96x160x160), each in the
#                 default layout and in channels-last-3d
#   3. end to end single case incl. process start, the plain reference pipeline, cohort cases/min
# Output: OUT_DIR/gpu_check.json (every figure), per-step logs, tests.xml (junit).

set -u
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-./gpu-check-out}"
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) SMOKE=1 ;;
    *) OUT_DIR="$arg" ;;
  esac
done
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ "$SMOKE" = 1 ] && PY=.venv/bin/python
STARTED=$(date +%s)
BUDGET=450   # seconds for all steps (the device allows 8 minutes a command; keep a margin)
log() { echo "[gpu_check $(( $(date +%s) - STARTED ))s] $*" >&2; }
# limit N: N seconds, or what is left of the budget if less (at least 1)
limit() { local left=$(( BUDGET - ($(date +%s) - STARTED) )); [ "$left" -lt 1 ] && left=1; [ "$1" -lt "$left" ] && left=$1; echo "$left"; }

# --- 0. dependencies: what is missing comes from the carried wheels, unpacked into a private
# folder (a wheel is a zip archive; no pip, no network, nothing installed system-wide)
SITE="${TMPDIR:-/tmp}/gpu-check-site"
CACHE="${TMPDIR:-/tmp}/gpu-check-cache"   # the generated test volumes, shared by every step
mkdir -p "$SITE" "$CACHE"
export PYTHONPATH="$PWD/AttentionUNetSegment:$SITE${PYTHONPATH:+:$PYTHONPATH}"
for module in SimpleITK:simpleitk monai:monai pytest:"pytest pluggy iniconfig packaging pygments"; do
  name="${module%%:*}"; wheels="${module#*:}"
  if ! "$PY" -c "import $name" 2>/dev/null; then
    for wheel in $wheels; do
      found=$(ls .whl/"$wheel"-*.whl 2>/dev/null | head -1)
      if [ -z "$found" ]; then log "no wheel for $wheel in .whl/ (see the comments at the top)"; continue; fi
      log "unpacking $(basename "$found")"
      "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$found" "$SITE"
    done
  fi
done
"$PY" - > "$OUT_DIR/machine.json" <<'EOF'
import json, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "gpu": torch.cuda.get_device_name(0) if cuda else None, "cuda_available": cuda,
                  "cpus": __import__("os").cpu_count()}))
EOF
log "machine: $(cat "$OUT_DIR/machine.json")"

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; TEST_LIMIT=300; INF_LIMIT=300; E2E_LIMIT=600; BUDGET=3000
  BUNDLED=(--size 64,96,96 --repeats 1 --threads 2)
  PAPER=(--random --widths 4,8,16,32,64 --size 64,96,96 --patch 32,48,48 --repeats 1 --threads 2)
  E2E=(--smoke)
else
  DEVICE=cuda; TEST_LIMIT=120; INF_LIMIT=80; E2E_LIMIT=180
  BUNDLED=(--size 160,256,256 --repeats 3)
  PAPER=(--random --size 160,256,256 --repeats 3)
  E2E=(--cases 8)
fi

# --- 1. tests
log "tests"
timeout "$(limit "$TEST_LIMIT")" "$PY" -m pytest -q -p no:cacheprovider -o addopts="" --junitxml "$OUT_DIR/tests.xml" \
  Testing/Python/core/test_inference.py Testing/Python/core/test_devices.py Testing/Python/files/test_modelfile.py \
  Testing/Python/core/test_pipeline.py -k "not model_grid_maps" \
  "Testing/Python/scene/test_extension_files.py::test_cmake_extension_metadata_and_self_test" \
  > "$OUT_DIR/tests.log" 2>&1
echo $? > "$OUT_DIR/tests.rc"
log "tests: $(tail -1 "$OUT_DIR/tests.log")"

# --- 2. inference: ours vs MONAI vs the plain U-Net, both widths, both layouts
for widths in bundled paper; do
  for layout in auto channels_last; do
    if [ "$widths" = bundled ]; then flags=("${BUNDLED[@]}"); else flags=("${PAPER[@]}"); fi
    methods=ours,monai,unet
    [ "$layout" = channels_last ] && methods=ours,unet   # MONAI's run does not depend on our layout
    log "inference $widths $layout"
    timeout "$(limit "$INF_LIMIT")" "$PY" benchmarks/benchmark_inference.py --device "$DEVICE" "${flags[@]}" \
      --methods "$methods" --memory-format "$layout" --cache-dir "$CACHE" --json "$OUT_DIR/inference-$widths-$layout.json" \
      > "$OUT_DIR/inference-$widths-$layout.log" 2>&1 || log "inference $widths $layout failed (see its log)"
  done
done

# --- 3. end to end: single case, reference pipeline, cohort
log "end to end"
timeout "$(limit "$E2E_LIMIT")" "$PY" benchmarks/gpu_figures.py "$OUT_DIR" --device "$DEVICE" "${E2E[@]}" \
  > "$OUT_DIR/e2e.log" 2>&1 || log "end to end failed (see e2e.log)"

# --- 3b. a click through the click worker (issue 18's GPU target: <= 0.3 s a warm click)
log "clicks"
CLICKS=(--clicks 10); [ "$SMOKE" = 1 ] && CLICKS=(--clicks 3)
timeout "$(limit 90)" "$PY" benchmarks/benchmark_clicks.py --device "$DEVICE" "${CLICKS[@]}" --work "$CACHE" \
  --json "$OUT_DIR/clicks.json" > "$OUT_DIR/clicks.log" 2>&1 || log "clicks failed (see clicks.log)"

# --- 4. one JSON with everything
"$PY" - "$OUT_DIR" "$SMOKE" <<'EOF'
import glob, json, os, sys
out, smoke = sys.argv[1], sys.argv[2] == "1"
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None
figures = {"smoke": smoke, "machine": load("machine.json"), "tests_exit_code": int(open(os.path.join(out, "tests.rc")).read()),
           "tests_summary": open(os.path.join(out, "tests.log")).read().strip().splitlines()[-1:],
           "inference": {}, "end_to_end": load("e2e.json"), "clicks": load("clicks.json")}
for path in sorted(glob.glob(os.path.join(out, "inference-*.json"))):
    data = json.load(open(path))
    key = os.path.basename(path)[len("inference-"):-len(".json")]
    r = data["results"]
    figures["inference"][key] = {
        "seconds": {m: r[m]["seconds"] for m in r}, "windows": r[next(iter(r))]["windows"],
        "ratio_ours_over_monai": data.get("ratio_ours_over_monai"), "gate_overhead": data.get("gate_overhead"),
        "dice_ours_vs_monai": data.get("dice_ours_vs_monai"), "peak_memory_mb": {m: r[m]["peak_memory_mb"] for m in r},
        "precision": r[next(iter(r))]["precision"], "patch_zyx": data.get("patch_zyx"), "size_zyx": data.get("size_zyx"),
    }
for key, row in figures["inference"].items():  # channels-last runs: against the same widths' MONAI run
    base = figures["inference"].get(key.replace("channels_last", "auto"))
    if key.endswith("channels_last") and base and "monai" in base["seconds"]:
        row["ratio_ours_over_monai"] = row["seconds"]["ours"] / base["seconds"]["monai"]
json.dump(figures, open(os.path.join(out, "gpu_check.json"), "w"), indent=2)
print(json.dumps(figures, indent=2))
EOF
log "done: $OUT_DIR/gpu_check.json"
