"""Resources/Models/recipe.sh's phantoms + real cases phases (dry run: the commands it would run),
and that its real-case folders are datasets `train` accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from AttentionUNetSegmentLib.training.data import find_cases

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "Resources" / "Models" / "recipe.sh"
REAL = ("nih0001", "s0009", "tsexample")


def _dry_run(work: Path, mode: str, **env: str) -> list[list[str]]:
    run = subprocess.run(["bash", str(RECIPE), str(work), mode], capture_output=True, text=True,
                         env=dict(os.environ, RECIPE_DRY_RUN="1", **env), timeout=60)
    assert run.returncode == 0, run.stderr
    return [shlex.split(line)[1:] for line in run.stdout.splitlines()]


def _option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == option]


def test_leave_one_out_models_never_train_on_their_test_case(tmp_path):
    commands = _dry_run(tmp_path, "real-cpu", ARCHS="attention")
    trains = [c for c in commands if c[0] == "train"]
    models = {c[c.index("-o") + 1] for c in trains}
    assert models == {str(tmp_path / "models_real" / "attention" / m)
                      for m in ("loo_nih0001", "loo_s0009", "loo_tsexample", "all")}
    for command in trains:
        model = Path(command[command.index("-o") + 1]).name
        extras = {Path(e.split(":")[0]).name for e in _option_values(command, "--extra-dataset")}
        expected = set(REAL) - {model.removeprefix("loo_")}
        assert extras == expected, (model, extras)
        assert "--domain-randomisation" in command and command[1] == str(tmp_path / "phantom_train")
        assert _option_values(command, "--init-from")[0].endswith("pancreas_phantom_attention_unet.pt")
    # TotalSegmentator's pancreas is label 7, NIH's 1: each real case carries its own map.
    labels = {Path(e.split(":")[0]).name: e.split(":", 2)[2] for c in trains
              for e in _option_values(c, "--extra-dataset")}
    assert labels == {"nih0001": "1:1", "s0009": "7:1", "tsexample": "7:1"}
    # Two learning-rate phases per model, the second a --resume continuation when it exists.
    per_model = {}
    for command in trains:
        per_model.setdefault(command[command.index("-o") + 1], []).append(
            (_option_values(command, "--lr")[0], _option_values(command, "--epochs")[0]))
    assert all(phases == [("1e-4", "20"), ("2e-5", "30")] for phases in per_model.values())
    # Each real case is scored by the model that did not see it; "all" on held-out phantoms.
    evaluations = [c for c in commands if c[0] == "evaluate"]
    for case in REAL:
        segment = next(c for c in commands if c[0] == "segment" and f"{case}.nii.gz" in c[3])
        assert Path(_option_values(segment, "--model")[0]).name == f"loo_{case}"
        evaluation = next(c for c in evaluations if c[1] == segment[3])
        assert Path(_option_values(evaluation, "--model")[0]).name == f"loo_{case}"   # "unseen"
    assert any("phantom_test4" in c[2] for c in evaluations)
    assert {_option_values(c, "--truth-label")[0] for c in evaluations if "--truth-label" in c} == {"1", "7"}


def test_gpu_variant_uses_the_paper_network_and_patch(tmp_path):
    trains = [c for c in _dry_run(tmp_path, "real-gpu", ARCHS="attention unet", MODELS="all")
              if c[0] == "train"]
    assert {_option_values(c, "--arch")[0] for c in trains} == {"attention_unet3d", "unet3d"}
    for command in trains:
        assert _option_values(command, "--patch") == ["160,160,96"]
        assert "--widths" not in command and "--init-from" not in command   # default 16..256
        assert "--domain-randomisation" in command and "--weights-bf16" in command   # < 16 MiB
        epochs = int(_option_values(command, "--epochs")[0])
        steps = epochs * int(_option_values(command, "--iterations-per-epoch")[0])
        # ~15 patches/s on an H200 at batch 2: at most ~9 minutes of steps.
        assert steps * 2 / 15 <= 9 * 60


def test_unknown_phase_set_is_refused(tmp_path):
    run = subprocess.run(["bash", str(RECIPE), str(tmp_path), "real-tpu"], capture_output=True,
                         text=True, env=dict(os.environ, RECIPE_DRY_RUN="1"))
    assert run.returncode == 2 and re.search(r"unknown phase set 'real-tpu'", run.stderr)


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "nih-pancreas-ct-0001").is_dir(),
                    reason="the real CT of ../shared/data is not here")
def test_the_recipe_real_case_folders_are_valid_datasets(tmp_path):
    _dry_run(tmp_path, "real-cpu", ARCHS="attention", MODELS="all")
    for case in REAL:
        found = find_cases(tmp_path / "real" / case)      # labels on their CT's grid
        assert [c.id for c in found] == [case]


@pytest.mark.parametrize("mode", ["context-cpu", "context-gpu"])
def test_context_phases_train_on_phantoms_only_and_score_every_real_case(tmp_path, mode):
    commands = _dry_run(tmp_path, mode)
    phantoms = [c for c in commands if c[0] == "phantom"]
    assert [_option_values(c, "-o")[0] for c in phantoms] == [str(tmp_path / n) for n in
                                        ("phantom_context", "phantom_test_vary", "phantom_test_novary")]
    assert "--all-organs" in phantoms[0] and "--no-variation" not in phantoms[0]
    trains = [c for c in commands if c[0] == "train"]
    assert [_option_values(c, "--arch")[0] for c in trains] == ["attention_unet3d", "unet3d"]   # + ablation
    for command in trains:
        assert command[1] == str(tmp_path / "phantom_context")
        assert "--extra-dataset" not in command and "--init-from" not in command   # no real case
        assert "--context-classes" in command and "--domain-randomisation" in command
        assert _option_values(command, "--labels")[0].startswith("1:1,")           # pancreas is 1
        steps = int(_option_values(command, "--epochs")[0]) * int(
            _option_values(command, "--iterations-per-epoch")[0])
        if mode == "context-gpu":
            assert "--weights-bf16" in command and steps * 2 / 15 <= 9 * 60
    scored = [c for c in commands if c[0] == "evaluate" and "--truth-label" in c]
    assert len(scored) == 2 * len(REAL) and all("--model" in c for c in scored)
    assert {_option_values(c, "--truth-label")[0] for c in scored} == {"1", "7"}


def test_click_recipe_holds_out_the_real_pancreas_and_scores_every_real_case(tmp_path):
    commands = _dry_run(tmp_path, "clicks-cpu")
    train = next(c for c in commands if c[0] == "train-clicks")
    assert _option_values(train, "--source") == [f"{tmp_path / 'real_organs'}:1:7"]   # label 7 held out
    assert _option_values(train, "--synthetic") == [f"{tmp_path / 'phantom_clicks'}:1:1"]
    folder = tmp_path / "real_organs"
    assert {c.id for c in find_cases(folder)} == {"s0009", "tsexample"}   # the links make a dataset
    scored = [c for c in commands if c[0] == "evaluate-clicks"]
    assert {Path(c[2]).name for c in scored[:3]} == {"pancreas.nii.gz", "organs.nii.gz", "totalsegmentator_labels.nii.gz"}
    assert all(_option_values(c, "--model")[0].endswith("best.pt") for c in scored)
    # The test phantoms do not exist in a dry run: their loop shows its pattern once.
    assert len(scored) == 3 + 1 and "phantom_clicks_test" in scored[3][1]
