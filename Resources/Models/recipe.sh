#!/usr/bin/env bash
# Reproduces the bundled default model and its README figures (CPU, 2 cores: about 3 hours of
# training, both networks side by side, then about 40 minutes of evaluation).
#   bash Resources/Models/recipe.sh [WORK_DIR]
# Phantoms and real cases, leave-one-out, with domain randomisation (see real_phases below):
#   bash Resources/Models/recipe.sh WORK_DIR real-cpu     fine-tunes the bundled model (CPU)
#   bash Resources/Models/recipe.sh WORK_DIR real-gpu     paper widths, ~9 min per model (H200)
# Issue 12 experiment 2: from scratch on varied phantoms with every organ as a context class and
# domain randomisation; no real case in training, so every real case is scored held out:
#   bash Resources/Models/recipe.sh WORK_DIR context-cpu  widths 8..128, ~100 min on 2 cores (56 epochs)
#   bash Resources/Models/recipe.sh WORK_DIR context-gpu  paper widths, ~9 min per model (H200)
# 1. 40 training phantoms (seed 0) and 80 held-out phantoms (10 with seed 5000, 20 with seed
#    6000, 20 with seed 7000, 30 with seed 8000: derived case seeds never overlap the training
#    ones), 2. the Attention U-Net and the plain U-Net with the same recipe (the paper's
#    ablation): Adam at 5e-4 for epochs 1-48, 1e-4 for epochs 49-72, 2e-5 for epochs 73-84,
#    3. both segment the held-out phantoms and the real CT, 4. evaluate, 5. paired comparison
#    per test set and pooled.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$here/recipe-work}
aus="$here/.venv/bin/attention-unet-segment"
mkdir -p "$work"
run_aus() {
  if [ -n "${RECIPE_DRY_RUN:-}" ]; then echo "attention-unet-segment $*"; else "$aus" "$@"; fi
}
network() {  # the folder names attention / unet -> train --arch, as model files name the networks
  case "$1" in attention) echo attention_unet3d ;; unet) echo unet3d ;; *) echo "$1" ;; esac
}
case "${2:-}" in
  ""|real-cpu|real-gpu|context-cpu|context-gpu|clicks-cpu|clicks-gpu) ;;
  *) echo "recipe.sh: unknown phase set '$2' (use real-cpu, real-gpu, context-cpu, context-gpu, clicks-cpu or clicks-gpu)" >&2
     exit 2 ;;
esac

# ---------------------------------------------------------------------------------------------
# The three real cases of ../shared/data, named once: real_case NAME sets case_ct, case_truth and
# case_label (the truth's pancreas value) for nih0001, s0009 or tsexample.
REAL_CASES=(nih0001 s0009 tsexample)
real_case() {
  local data="$here/../shared/data"
  case $1 in
    nih0001) case_ct=$data/nih-pancreas-ct-0001/ct.nii.gz; case_truth=$data/nih-pancreas-ct-0001/pancreas.nii.gz; case_label=1 ;;
    s0009) case_ct=$data/totalsegmentator-s0009/ct.nii.gz; case_truth=$data/totalsegmentator-s0009/organs.nii.gz; case_label=7 ;;
    tsexample) case_ct=$data/totalsegmentator-example/ct.nii.gz
               case_truth=$data/totalsegmentator-example/totalsegmentator_labels.nii.gz; case_label=7 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# The click-conditioned model (issue 18, docs/experiments/issue18-click-model-2026-12-05.md):
# class-agnostic, every labelled structure a target: 32 all-organ phantoms (seed 4242, domain
# randomisation, 30 % of their samples on the pancreas) and the organ labels of the two
# TotalSegmentator scans with their pancreas (label 7) held out, half the samples each; a
# simulated user; validation on 4 all-organ phantoms (seed 9100). Then the final check: the
# simulated-user protocol (10 clicks) on the three real cases, none of whose pancreas was
# trained on, and 4 fresh phantoms (seed 9300), beside the automatic model and the cube.
# cpu: widths 8..128, 64^3 patches, 5000 steps (~3 h on 2 idle cores); gpu: the paper's widths,
# 96^3 patches, 6000 steps (dry-run tested only: no GPU was lent). Resumable.
clicks_phases() {  # cpu | gpu
  local mode=$1 model="$work/models_clicks/$1"
  [ -f "$work/phantom_clicks/dataset.json" ] || run_aus phantom -o "$work/phantom_clicks" --cases 32 --seed 4242 --all-organs
  [ -f "$work/phantom_clicks_val/dataset.json" ] || run_aus phantom -o "$work/phantom_clicks_val" --cases 4 --seed 9100 --all-organs
  [ -f "$work/phantom_clicks_test/dataset.json" ] || run_aus phantom -o "$work/phantom_clicks_test" --cases 4 --seed 9300 --all-organs
  mkdir -p "$work/real_organs"
  for case in s0009 tsexample; do   # their organs (the pancreas held out below): NIH 0001 labels only the pancreas
    real_case "$case"
    ln -sf "$case_ct" "$work/real_organs/${case}_ct.nii.gz"
    ln -sf "$case_truth" "$work/real_organs/${case}_label.nii.gz"
  done
  local settings=(--widths 8,16,32,64,128 --patch 64,64,64 --steps 5000 --device cpu)
  [ "$mode" = gpu ] && settings=(--widths 16,32,64,128,256 --patch 96,96,96 --steps 6000 --device cuda)
  local resume=(); [ -f "$model/checkpoint.pt" ] && resume=(--resume)
  run_aus train-clicks -o "$model" --synthetic "$work/phantom_clicks:1:1" --source "$work/real_organs:1:7" \
    --val "$work/phantom_clicks_val" --val-label 1 --encoding gaussian --radius 3 --window 96,96,64 \
    --init-from bundled --seed 0 --cache "$work/cache_clicks" "${settings[@]}" "${resume[@]}"
  local out="$work/eval_clicks/$mode"
  mkdir -p "$out"
  for case in "${REAL_CASES[@]}"; do
    real_case "$case"
    run_aus evaluate-clicks "$case_ct" "$case_truth" --truth-label "$case_label" --clicks 10 --model "$model/best.pt" --hd95 \
      -o "$out/$case.csv" --figure "$out/$case.png"
  done
  for image in "$work/phantom_clicks_test"/imagesTr/*_0000.nii.gz; do
    local name; name=$(basename "$image" _0000.nii.gz)
    run_aus evaluate-clicks "$image" "$work/phantom_clicks_test/labelsTr/$name.nii.gz" --truth-label 1 --clicks 10 \
      --model "$model/best.pt" --hd95 -o "$out/$name.csv" --figure "$out/$name.png"
  done
}
if [[ "${2:-}" == clicks-* ]]; then
  clicks_phases "${2#clicks-}"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Context model (docs/experiments/issue12-context-model-2026-11-30.md): 52 varied phantoms with
# every organ labelled (seed 13, 4 validate), classes pancreas 1 and, as context only, liver,
# spleen, kidneys, stomach, duodenum, bowel, aorta + IVC, portal/splenic vein + visceral
# arteries, vertebrae (segment writes only the pancreas); Adam 5e-4 with polynomial decay. Then
# the real cases (none trained on) and 2 x 4 held-out pancreas-only phantoms (seed 9100, varied
# and not). ARCHS (default "attention unet": unet is the paper's ablation). Resumable.
CONTEXT_LABELS=1:1,2:2,3:3,4:4,5:4,6:5,7:6,8:7,9:7,11:8,12:8,13:9,14:9,16:10
context_phases() {  # cpu | gpu
  local mode=$1 out="$work/models_context"
  [ -f "$work/phantom_context/dataset.json" ] || run_aus phantom -o "$work/phantom_context" --cases 52 --seed 13 --all-organs
  [ -f "$work/phantom_test_vary/dataset.json" ] || run_aus phantom -o "$work/phantom_test_vary" --cases 4 --seed 9100
  [ -f "$work/phantom_test_novary/dataset.json" ] || run_aus phantom -o "$work/phantom_test_novary" --cases 4 --seed 9100 --no-variation
  local settings
  if [ "$mode" = gpu ]; then   # ~15 patches/s on an H200: 30 x 125 steps of batch 2 in ~8.5 min
    settings=(--patch 160,160,96 --epochs 30 --iterations-per-epoch 125 --val-every 5 --workers 8
              --cache --weights-bf16)
  else
    settings=(--widths 8,16,32,64,128 --patch 96,96,64 --epochs 56 --iterations-per-epoch 40
              --val-every 10 --workers 0)
  fi
  for arch in ${ARCHS:-attention unet}; do
    local model="$out/$arch" resume=() pred="$work/pred_context/$arch"
    [ -f "$model/checkpoint_last.pt" ] && resume=(--resume)
    run_aus train "$work/phantom_context" -o "$model" --arch "$(network "$arch")" "${resume[@]}" \
      --labels "$CONTEXT_LABELS" --context-classes --domain-randomisation "${settings[@]}" \
      --spacing 2 --batch-size 2 --optimizer adam --lr 5e-4 --lr-schedule poly --seed 0 \
      --val-cases phantom_048,phantom_049,phantom_050,phantom_051 --progress none
    mkdir -p "$pred"
    for case in "${REAL_CASES[@]}"; do
      real_case "$case"
      run_aus segment "$case_ct" -o "$pred/$case.nii.gz" --model "$model" --progress none
      run_aus evaluate "$pred/$case.nii.gz" "$case_truth" --truth-label "$case_label" --model "$model" \
        -o "$work/eval_context_${case}_$arch.csv"
    done
    for test_set in phantom_test_vary phantom_test_novary; do
      mkdir -p "$pred/$test_set"
      for image in "$work/$test_set"/imagesTr/*_0000.nii.gz; do
        run_aus segment "$image" -o "$pred/$test_set/$(basename "$image" _0000.nii.gz).nii.gz" \
          --model "$model" --progress none
      done
      run_aus evaluate "$pred/$test_set" "$work/$test_set/labelsTr" -o "$work/eval_context_${test_set}_$arch.csv"
    done
  done
}
if [[ "${2:-}" == context-* ]]; then
  context_phases "${2#context-}"
  exit 0
fi

[ -f "$work/phantom_train/dataset.json" ] || run_aus phantom -o "$work/phantom_train" --cases 40 --seed 0 --no-variation
[ -f "$work/phantom_test/dataset.json" ] || run_aus phantom -o "$work/phantom_test" --cases 10 --seed 5000 --no-variation
[ -f "$work/phantom_test2/dataset.json" ] || run_aus phantom -o "$work/phantom_test2" --cases 20 --seed 6000 --no-variation
[ -f "$work/phantom_test3/dataset.json" ] || run_aus phantom -o "$work/phantom_test3" --cases 20 --seed 7000 --no-variation
[ -f "$work/phantom_test4/dataset.json" ] || run_aus phantom -o "$work/phantom_test4" --cases 30 --seed 8000 --no-variation

# ---------------------------------------------------------------------------------------------
# Phantoms + real cases (issue 12). Each real case is its own one-case dataset (a flat folder of
# links) with its own label map, mixed into the phantoms with --extra-dataset at a fixed share of
# the patches. Leave-one-out: model loo_<case> trains on the phantoms and the OTHER real cases
# and is scored on <case>, which it never saw (its model file lists what it trained on under
# training.trained_on); model "all" trains on every real case and is the candidate bundled
# model, scored on the held-out phantoms only. Every training phase resumes where it stopped.
# Settings (environment): MODELS (default "loo_nih0001 loo_s0009 loo_tsexample all"),
# ARCHS (default "attention unet": unet is the paper's ablation), REAL_SHARE (share of the
# patches per real case, default 0.15), RECIPE_DRY_RUN=1 prints the commands instead.
# Binary pancreas labels everywhere: phantom --all-organs would teach the real cases' unlabelled
# organs as background (NIH 0001 labels only the pancreas).
real_phases() {  # cpu | gpu
  local mode=$1 out="$work/models_real"
  local cases=("${REAL_CASES[@]}")
  declare -A pancreas
  for c in "${cases[@]}"; do
    real_case "$c"
    pancreas[$c]=$case_label
    mkdir -p "$work/real/$c"
    ln -sf "$case_ct" "$work/real/$c/${c}_ct.nii.gz"
    ln -sf "$case_truth" "$work/real/$c/${c}_label.nii.gz"
  done
  local settings
  if [ "$mode" = gpu ]; then
    # The paper's widths (16..256, the default) and patch 160x160x96, bf16 autocast (on by
    # default on CUDA), batch 2: an H200 trains ~15 patches/s, so 30 epochs of 125 steps are
    # ~8.5 minutes. 6.2 M parameters: 25 MB in float32, so the model file stores bf16 (12.5 MB,
    # under the 16 MiB the bundle allows; loaded back into float32).
    settings=(--patch 160,160,96 --batch-size 2 --iterations-per-epoch 125 --val-every 5
              --val-fraction 0.1 --workers 8 --cache --seed 0 --weights-bf16)
  else
    # Fine-tune the bundled model (widths 8..128, 96x96x64) on one CPU thread per run.
    settings=(--init-from "$here/Resources/Models/pancreas_phantom_attention_unet.pt"
              --iterations-per-epoch 40 --val-every 3 --val-fraction 0.1 --workers 0 --cache
              --seed 0)
  fi
  local share=${REAL_SHARE:-0.15}
  train_real() {  # model arch lr epochs
    local held=${1#loo_} extras=() resume=() init=()
    for c in "${cases[@]}"; do
      [ "$c" = "$held" ] || extras+=(--extra-dataset "$work/real/$c:$share:${pancreas[$c]}:1")
    done
    [ -f "$out/$2/$1/checkpoint_last.pt" ] && resume=(--resume)
    if [ "$mode" = cpu ] && [ "$2" = unet ]; then   # the ablation starts from the phantom U-Net
      [ -f "$work/models/unet/model.pt" ] || { echo "skip $1 unet: run the phantom recipe first" >&2; return 0; }
      init=(--init-from "$work/models/unet/model.pt")
    fi
    run_aus train "$work/phantom_train" -o "$out/$2/$1" --arch "$(network "$2")" "${extras[@]}" \
      --domain-randomisation "${settings[@]}" "${init[@]}" "${resume[@]}" --lr "$3" \
      --epochs "$4" --progress none
  }
  local epochs=(20 30) lrs=(1e-4 2e-5)
  [ "$mode" = gpu ] && epochs=(24 30) lrs=(5e-4 1e-4)
  for arch in ${ARCHS:-attention unet}; do
    for model in ${MODELS:-loo_nih0001 loo_s0009 loo_tsexample all}; do
      train_real "$model" "$arch" "${lrs[0]}" "${epochs[0]}"
      train_real "$model" "$arch" "${lrs[1]}" "${epochs[1]}"
      if [ "$model" = all ]; then   # held-out phantoms (seed 8000), never trained on
        local pred="$work/pred_phantom_test4_all_$arch"
        mkdir -p "$pred"
        for image in "$work/phantom_test4"/imagesTr/*_0000.nii.gz; do
          run_aus segment "$image" -o "$pred/$(basename "$image" _0000.nii.gz).nii.gz" \
            --model "$out/$arch/all" --progress none
        done
        run_aus evaluate "$pred" "$work/phantom_test4/labelsTr" --model "$out/$arch/all" \
          -o "$work/eval_phantom_test4_all_$arch.csv"
        continue
      fi
      local held=${model#loo_} pred="$work/pred_real/$arch"
      mkdir -p "$pred"
      real_case "$held"
      run_aus segment "$case_ct" -o "$pred/$held.nii.gz" --model "$out/$arch/$model" --progress none
      # --model prints whether the model trained on this ground truth (it must say "unseen").
      run_aus evaluate "$pred/$held.nii.gz" "$case_truth" --truth-label "$case_label" \
        --model "$out/$arch/$model" -o "$work/eval_real_${held}_$arch.csv"
    done
  done
}

if [ -n "${2:-}" ]; then
  real_phases "${2#real-}"
  exit 0
fi

# Half the paper's widths and a 96x96x64 patch keep CPU training feasible; everything else
# (2 mm, HU window, Dice+CE, Adam, augmentation) is the default recipe. One thread per run, both
# runs side by side. Each phase resumes where an interrupted (or finished) run stopped; a phase
# that is already complete returns at once.
train_phase() {  # arch lr epochs
  local resume=(); [ -f "$work/models/$1/checkpoint_last.pt" ] && resume=(--resume)
  OMP_NUM_THREADS=1 "$aus" train "$work/phantom_train" -o "$work/models/$1" --arch "$(network "$1")" "${resume[@]}" \
    --patch 96,96,64 --widths 8,16,32,64,128 --lr "$2" --iterations-per-epoch 40 \
    --epochs "$3" --val-every 3 --val-fraction 0.1 --workers 0 --cache --seed 0 \
    --progress none >> "$work/train_$1.log" 2>&1
}
for arch in attention unet; do
  { train_phase "$arch" 5e-4 48 && train_phase "$arch" 1e-4 72 && train_phase "$arch" 2e-5 84; } &
done
wait

test_sets=(phantom_test phantom_test2 phantom_test3 phantom_test4)
for test_set in "${test_sets[@]}"; do
  for arch in attention unet; do
    pred="$work/pred_${test_set}_$arch"
    mkdir -p "$pred"
    for image in "$work/$test_set"/imagesTr/*_0000.nii.gz; do
      case_id=$(basename "$image" _0000.nii.gz)
      "$aus" segment "$image" -o "$pred/$case_id.nii.gz" --model "$work/models/$arch" --progress none
    done
    "$aus" evaluate "$pred" "$work/$test_set/labelsTr" -o "$work/eval_${test_set}_$arch.csv"
  done
  "$aus" compare "$work/eval_${test_set}_attention.csv" "$work/eval_${test_set}_unet.csv" --names attention,unet
done

# Pooled over all 80 held-out cases (case names prefixed by their set, which reuse phantom_000...).
for arch in attention unet; do
  { head -n 1 "$work/eval_phantom_test_$arch.csv"
    for test_set in "${test_sets[@]}"; do
      tail -n +2 "$work/eval_${test_set}_$arch.csv" | sed "s/^/${test_set}_/"
    done; } > "$work/eval_pooled_$arch.csv"
done
echo "pooled, 80 held-out phantoms:"
"$aus" compare "$work/eval_pooled_attention.csv" "$work/eval_pooled_unet.csv" --names attention,unet \
  --metric dice --metric hd95_mm --metric assd_mm --metric precision --metric recall

ct="$here/../shared/data/totalsegmentator-example"
if [ -d "$ct" ]; then
  for arch in attention unet; do
    "$aus" segment "$ct/ct.nii.gz" -o "$work/real_ct_$arch.nii.gz" --model "$work/models/$arch" --progress none
    "$aus" evaluate "$work/real_ct_$arch.nii.gz" "$ct/totalsegmentator_labels.nii.gz" --truth-label 7
  done
fi
