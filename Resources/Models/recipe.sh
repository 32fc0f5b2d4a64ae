#!/usr/bin/env bash
# Reproduces the bundled default model and its README figures (CPU, 2 cores: about 3 hours of
# training, both networks side by side, then about 40 minutes of evaluation).
#   bash Resources/Models/recipe.sh [WORK_DIR]
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

[ -f "$work/phantom_train/dataset.json" ] || "$aus" phantom "$work/phantom_train" --cases 40 --seed 0
[ -f "$work/phantom_test/dataset.json" ] || "$aus" phantom "$work/phantom_test" --cases 10 --seed 5000
[ -f "$work/phantom_test2/dataset.json" ] || "$aus" phantom "$work/phantom_test2" --cases 20 --seed 6000
[ -f "$work/phantom_test3/dataset.json" ] || "$aus" phantom "$work/phantom_test3" --cases 20 --seed 7000
[ -f "$work/phantom_test4/dataset.json" ] || "$aus" phantom "$work/phantom_test4" --cases 30 --seed 8000

# Half the paper's widths and a 96x96x64 patch keep CPU training feasible; everything else
# (2 mm, HU window, Dice+CE, Adam, augmentation) is the default recipe. One thread per run, both
# runs side by side. Each phase resumes where an interrupted (or finished) run stopped; a phase
# that is already complete returns at once.
train_phase() {  # arch lr epochs
  local resume=(); [ -f "$work/models/$1/checkpoint_last.pt" ] && resume=(--resume)
  OMP_NUM_THREADS=1 "$aus" train "$work/phantom_train" -o "$work/models/$1" --arch "$1" "${resume[@]}" \
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
    "$aus" evaluate "$pred" "$work/$test_set/labelsTr" --csv "$work/eval_${test_set}_$arch.csv"
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
    "$aus" evaluate "$work/real_ct_$arch.nii.gz" "$ct/totalsegmentator_labels.nii.gz" --gt-label 7
  done
fi
