"""Training end to end on tiny sphere phantoms (CPU): outputs, bit-exact resume, the CLI, and
two-process DistributedDataParallel (gloo) keeping the weights identical on both ranks.

Everything is tiny (widths 4..64, 32^3 patches, 2 iterations per epoch) so the file runs in
well under a minute on two shared cores; learning quality is not measured here.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from AttentionUNetSegmentLib.cli.train import config_from_args, register_cli
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.files.modelfile import load_model
from AttentionUNetSegmentLib.training.checkpoints import CHECKPOINT_FILE, read_checkpoint
from AttentionUNetSegmentLib.training.config import TrainConfig
from AttentionUNetSegmentLib.training.data import find_cases, split_cases
from AttentionUNetSegmentLib.training.trainer import train

TINY = TrainConfig(epochs=2, iterations_per_epoch=2, patch_size_zyx=(32, 32, 32), batch_size=2,
                   widths=(4, 8, 16, 32, 64), num_workers=0, device="cpu",
                   val_cases=("pancreas_003",))


def _write_dataset(root: Path, n: int = 3) -> Path:
    """Decathlon layout: a bright sphere (label 1, with a label-2 core) in -100 HU noise."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(n):
        rng = np.random.default_rng(i)
        zz, yy, xx = np.mgrid[:24, :36, :40]
        r2 = (zz - 12) ** 2 + (yy - 18 - i) ** 2 + (xx - 20 + i) ** 2
        label = (r2 < 36).astype(np.uint8)
        label[r2 < 4] = 2
        hu = np.where(label > 0, 80.0, -100.0) + rng.normal(0, 10, label.shape)
        name = f"pancreas_{i + 1:03d}"
        for array, folder in ((hu.astype(np.int16), "imagesTr"), (label, "labelsTr")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((2.0, 2.0, 2.0))
            sitk.WriteImage(image, str(root / folder / f"{name}.nii.gz"))
        training.append({"image": f"./imagesTr/{name}.nii.gz",
                         "label": f"./labelsTr/{name}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({
        "name": "SpherePhantoms", "description": "synthetic test spheres",
        "labels": {"0": "background", "1": "pancreas", "2": "cancer"}, "training": training}))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("spheres"))


@pytest.fixture(scope="module")
def two_epochs(dataset, tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by the tests that inspect its outputs."""
    out = tmp_path_factory.mktemp("run") / "model"
    return out, train(replace(TINY), dataset, out, progress=False)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_writes_a_loadable_model_folder(two_epochs):
    out, result = two_epochs
    model, spec = load_model(out)                    # a folder means <folder>/model.pt
    assert spec.architecture == "attention_unet3d" and spec.patch_size_zyx == (32, 32, 32)
    assert list(spec.network_args["widths"]) == [4, 8, 16, 32, 64]
    assert [label.name for label in spec.labels] == ["Pancreas"]
    assert spec.training["synthetic"] is True and "SYNTHETIC" in spec.description
    assert spec.training["val_case_ids"] == ["pancreas_003"]
    assert spec.training["best_val_dice"] == result.best_val_dice
    # The best model's bf16/fp32 CPU agreement is measured and recorded (precision.py).
    from AttentionUNetSegmentLib.core.devices import CPU_BF16_KEY, cpu_has_native_bf16
    if cpu_has_native_bf16():
        assert 0.0 <= spec.training[CPU_BF16_KEY] <= 1.0
    else:
        assert CPU_BF16_KEY not in spec.training
    with torch.no_grad():                             # the loaded model runs
        assert model(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)

    rows = list(csv.DictReader((out / "training_log.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "train_loss", "val_dice", "lr", "seconds", "patches_per_s"}
    assert all(np.isfinite(float(row["train_loss"])) and 0 <= float(row["val_dice"]) <= 1
               for row in rows)
    assert (out / "last.pt").exists()
    state = read_checkpoint(out / CHECKPOINT_FILE)   # loads with weights_only=True
    assert state["epoch"] == 2 and len(state["history"]) == 2
    if importlib.util.find_spec("AttentionUNetSegmentLib.reports.figures") is not None:
        assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temporary leftovers


def test_resume_reproduces_an_uninterrupted_run(dataset, two_epochs, tmp_path):
    _, uninterrupted = two_epochs
    out = tmp_path / "model"
    messages = []
    train(replace(TINY, epochs=1), dataset, out,                      # "killed" after epoch 1
          progress=lambda fraction, message: messages.append((fraction, message)))
    assert any("loss" in m and "patch/s" in m for _, m in messages)   # the bar's content
    assert messages[-1][0] == 1.0
    assert read_checkpoint(out / CHECKPOINT_FILE)["epoch"] == 1
    resumed = train(replace(TINY), dataset, out, resume=True, progress=False)
    # Patches and augmentations are seeded by (seed, rank, epoch, index) and the optimizer
    # state is restored, so epoch 2 is replayed bit for bit.
    assert _same_weights(resumed.model.state_dict(), uninterrupted.model.state_dict())
    columns = ("epoch", "train_loss", "val_dice", "lr")
    assert [[row[c] for c in columns] for row in resumed.history] == \
        [[row[c] for c in columns] for row in uninterrupted.history]

    # Resuming with settings that define another model is refused.
    with pytest.raises(InputError, match="arch"):
        train(replace(TINY, arch="unet3d", epochs=3), dataset, out, resume=True, progress=False)


def test_model_file_records_every_learning_rate_phase(dataset, tmp_path):
    # The bundled recipe trains in phases (--resume with a lower --lr); the model file must say
    # so, not just carry the last --lr.
    out = tmp_path / "model"
    train(replace(TINY, epochs=1, lr=5e-4), dataset, out, progress=False)
    train(replace(TINY, epochs=2, lr=1e-4), dataset, out, resume=True, progress=False)
    _, spec = load_model(out / "last.pt")
    assert spec.training["lr"] == 1e-4
    assert spec.training["lr_schedule"] == [
        {"epochs": "1-1", "schedule": "constant", "lr": 5e-4},
        {"epochs": "2-2", "schedule": "constant", "lr": 1e-4}]

    # A checkpoint from before phases were stored: they are rebuilt from its per-epoch log.
    state = read_checkpoint(out / CHECKPOINT_FILE)
    del state["lr_phases"]
    torch.save(state, out / CHECKPOINT_FILE)
    train(replace(TINY, epochs=3, lr=2e-5), dataset, out, resume=True, progress=False)
    _, spec = load_model(out / "last.pt")
    assert [(p["epochs"], p["lr"]) for p in spec.training["lr_schedule"]] == \
        [("1-1", 5e-4), ("2-2", 1e-4), ("3-3", 2e-5)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attention-unet-segment")
    register_cli(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("old, new, field, value", [
    (["--arch", "unet"], ["--arch", "unet3d"], "arch", "unet3d"),
    (["--arch", "attention"], ["--arch", "attention_unet3d"], "arch", "attention_unet3d"),
    (["--label-map", "7"], ["--labels", "7"], "labels", "7"),
    (["--domain-randomization"], ["--domain-randomisation"], "domain_randomisation", True),
    (["--no-domain-randomization"], ["--no-domain-randomisation"], "domain_randomisation", False),
])
def test_old_train_spellings_work_with_one_warning(old, new, field, value, capsys):
    parsed_old = _parser().parse_args(["train", "data", "-o", "m", *old])
    warning = capsys.readouterr().err
    parsed_new = _parser().parse_args(["train", "data", "-o", "m", *new])
    assert getattr(parsed_old, field) == getattr(parsed_new, field) == value
    assert warning.count("\n") == 1 and "deprecated" in warning and new[0] in warning
    assert capsys.readouterr().err == ""
    config = config_from_args(parsed_old)
    assert {"arch": config.arch, "labels": config.labels,
            "domain_randomisation": config.randomisation.enabled}[field] == value


def test_checkpoints_of_the_old_arch_names_resume_under_the_new_ones():
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "arch": "unet"}).arch == "unet3d"
    assert TrainConfig().arch == "attention_unet3d"


@pytest.mark.parametrize("kind", ["bar", "json", "none"])
def test_train_progress_takes_the_choices_of_segment(kind, monkeypatch):
    from AttentionUNetSegmentLib.cli import train as train_command
    from AttentionUNetSegmentLib.service.contract import JsonProgress

    given = {}

    def fake_train(*args, progress, **kwargs):
        given["progress"] = progress
        return types.SimpleNamespace(model_path="m/model.pt")

    monkeypatch.setattr(train_command, "train", fake_train)
    args = _parser().parse_args(["train", "data", "-o", "m", "--progress", kind])
    assert args.func(args) == 0
    expected = {"bar": lambda p: p is True, "json": lambda p: isinstance(p, JsonProgress),
                "none": lambda p: p is None}[kind]
    assert expected(given["progress"])


def test_cli_refuses_to_overwrite_and_parses_paper_patch_order(dataset, two_epochs):
    out, _ = two_epochs
    before = (out / "model.pt").stat().st_mtime_ns
    parser = _parser()
    args = parser.parse_args(["train", str(dataset), "-o", str(out), "--epochs", "1"])
    with pytest.raises(InputError, match="--overwrite"):
        args.func(args)               # cli.main prints this one line and exits with 2
    assert (out / "model.pt").stat().st_mtime_ns == before

    args = parser.parse_args(["train", str(dataset), "-o", "m", "--patch", "160,160,96",
                              "--spacing", "2", "--labels", "1:1,2:1", "--arch", "unet3d",
                              "--flip-axes", "x"])
    config = config_from_args(args)
    assert config.patch_size_zyx == (96, 160, 160)          # x,y,z on the line, z,y,x inside
    assert config.spacing_zyx == (2.0, 2.0, 2.0) and config.arch == "unet3d"
    assert config.labels == "1:1,2:1" and config.augmentation.flip_axes == ("x",)
    assert config.epochs == TrainConfig().epochs             # untouched options keep defaults
    args = parser.parse_args(["train", str(dataset), "-o", "m", "--patch", "100,100,100"])
    with pytest.raises(InputError, match="multiple of 16"):
        config_from_args(args).validate()


def test_validation_split_is_seeded_and_explicit_ids_win(dataset):
    cases = find_cases(dataset)
    train_a, val_a = split_cases(cases, 0.34, (), seed=0)
    assert len(val_a) == 1 and len(train_a) == 2
    assert split_cases(cases, 0.34, (), seed=0) == (train_a, val_a)
    train_b, val_b = split_cases(cases, 0.34, ("pancreas_001",), seed=0)
    assert [c.id for c in val_b] == ["pancreas_001"]
    with pytest.raises(InputError, match="not in the dataset"):
        split_cases(cases, 0.2, ("nope",), seed=0)


_DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from dataclasses import replace
    from AttentionUNetSegmentLib.training.config import TrainConfig
    from AttentionUNetSegmentLib.training.trainer import train
    config = TrainConfig(**{config})
    result = train(config, sys.argv[1], sys.argv[2], progress=False)
    rank = os.environ["RANK"]
    os.makedirs(sys.argv[3], exist_ok=True)
    torch.save(result.model.state_dict(), os.path.join(sys.argv[3], f"rank{{rank}}.pt"))
""")


def _run_until_exit(command: list[str], out: Path, timeout: float = 240
                    ) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `command`; -> (result, seconds from the first model.pt to the exit, seconds from the
    last file written in `out` to the exit)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(out.parent / "log.txt", "w+") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        first_model, deadline = None, time.monotonic() + timeout
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if first_model is None and (out / "model.pt").exists():
                    first_model = time.monotonic()
                time.sleep(0.05)
            exited, exited_wall = time.monotonic(), time.time()
        finally:
            if process.poll() is None:
                process.kill()
        process.wait()
        log.seek(0)
        result = subprocess.CompletedProcess(command, process.returncode, log.read(), "")
    last_write = max((p.stat().st_mtime for p in out.rglob("*") if p.is_file()), default=0.0)
    return result, exited - (first_model or exited), exited_wall - last_write


def test_one_process_torchrun_exits_promptly_after_writing_the_model(dataset, tmp_path):
    # The case: `torchrun --nproc-per-node 1 -m AttentionUNetSegmentLib train ...` wrote
    # model.pt and then spent minutes on one thread measuring CPU bf16 agreement on whole
    # validation volumes. With DataLoader workers, as the command line uses by default.
    out = tmp_path / "model"
    run, after_model, after_last_write = _run_until_exit(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
         "-m", "AttentionUNetSegmentLib", "train", str(dataset), "-o", str(out), "--epochs", "1",
         "--iterations-per-epoch", "2", "--patch", "32,32,32", "--batch-size", "1",
         "--widths", "4,8,16,32,64", "--workers", "2", "--device", "cpu",
         "--val-cases", "pancreas_003", "--progress", "none"], out)
    assert run.returncode == 0, run.stdout[-3000:]
    load_model(out)
    # Bounds for two shared cores: the process and torchrun's agent are gone a few seconds
    # after the last write; the whole tail (bf16 check included) is bounded too.
    assert after_last_write < 15, f"exited {after_last_write:.1f} s after its last write"
    assert after_model < 45, f"exited {after_model:.1f} s after model.pt first appeared"


def test_two_process_ddp_keeps_ranks_identical_and_exits(dataset, tmp_path):
    config = {"epochs": 1, "iterations_per_epoch": 2, "patch_size_zyx": (32, 32, 32),
              "batch_size": 1, "widths": (4, 8, 16, 32, 64), "num_workers": 1,
              "device": "cpu", "val_cases": ("pancreas_002", "pancreas_003")}
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT.format(config=repr(config)))
    run, after_model, after_last_write = _run_until_exit(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(dataset), str(tmp_path / "model"), str(tmp_path / "ranks")],
        tmp_path / "model")
    assert run.returncode == 0, run.stdout[-3000:]
    # Both ranks left the process group and ended: the run is over soon after its last file.
    assert after_last_write < 15, f"exited {after_last_write:.1f} s after its last write"
    assert after_model < 45, f"exited {after_model:.1f} s after model.pt first appeared"
    rank0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    assert _same_weights(rank0, rank1)
    saved, _ = load_model(tmp_path / "model")                       # written by rank 0 only
    assert _same_weights(saved.state_dict(), rank0)
    from AttentionUNetSegmentLib.core.network import build_network
    torch.manual_seed(0)
    initial = build_network("attention_unet3d", in_channels=1, n_classes=2,
                            widths=[4, 8, 16, 32, 64]).state_dict()
    assert not _same_weights(initial, rank0)                         # it did train
    assert read_checkpoint(tmp_path / "model" / CHECKPOINT_FILE)["config"]["seed"] == 0


_LONG_RUN_SCRIPT = textwrap.dedent("""
    import sys
    from AttentionUNetSegmentLib.training.config import TrainConfig
    from AttentionUNetSegmentLib.training.trainer import train
    config = TrainConfig(**{config})
    train(config, sys.argv[1], sys.argv[2], progress=True)
""")


def test_kill_9_loses_at_most_the_epoch_in_progress(dataset, tmp_path):
    config = {"epochs": 200, "iterations_per_epoch": 1, "patch_size_zyx": (32, 32, 32),
              "batch_size": 1, "widths": (4, 8, 16, 32, 64), "num_workers": 0,
              "device": "cpu", "val_fraction": 0.0}
    script = tmp_path / "long_train.py"
    script.write_text(_LONG_RUN_SCRIPT.format(config=repr(config)))
    out = tmp_path / "model"
    log = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen([sys.executable, str(script), str(dataset), str(out)],
                               stderr=log, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            # Kill once two epochs were reported (the checkpoint is written before the epoch's
            # line, so waiting for the file alone could kill between the two).
            if re.search(r"^epoch [2-9]\d*/200", (tmp_path / "stderr.txt").read_text(), re.M):
                break
            time.sleep(0.05)
        assert process.poll() is None, "training ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    printed = [int(m) for m in re.findall(r"^epoch (\d+)/200", (tmp_path / "stderr.txt")
                                                                     .read_text(), re.M)]
    saved = read_checkpoint(out / CHECKPOINT_FILE)        # intact despite the kill
    # Every epoch that was reported finished is in the checkpoint: at most the one in
    # progress at the kill is lost.
    assert saved["epoch"] >= max(printed) >= 2
    load_model(out)
    resumed = train(replace(TINY, epochs=saved["epoch"] + 1, val_cases=(), val_fraction=0.0,
                            batch_size=1, iterations_per_epoch=1),
                    dataset, out, resume=True, progress=False)
    assert [row["epoch"] for row in resumed.history] == list(range(1, saved["epoch"] + 2))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # stale temporaries gone


def test_patch_and_spacing_options_are_xyz_and_reject_bad_values():
    from AttentionUNetSegmentLib.cli.train import _parse_spacing, _parse_xyz_ints
    assert _parse_xyz_ints("160,160,96") == (96, 160, 160)          # x, y, z -> z, y, x
    assert _parse_xyz_ints("64") == (64, 64, 64)
    assert _parse_spacing("0.8,0.8,2.5") == (2.5, 0.8, 0.8)
    assert _parse_spacing("2") == (2.0, 2.0, 2.0)
    for bad in ("160,160", "160,0,96", "a,b,c", "1.5,2,3", ""):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=re.escape(f"expected X,Y,Z voxels such as 160,160,96; got {bad!r}")):
            _parse_xyz_ints(bad)
    for bad in ("0", "1,2", "-1,1,1", "x"):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=re.escape(f"expected MM or X,Y,Z in mm; got {bad!r}")):
            _parse_spacing(bad)


def _write_flat_real_like(root: Path) -> Path:
    """A flat `<case>_ct` / `<case>_label` folder whose pancreas is label 7 (TotalSegmentator's
    numbering) beside another organ (label 3), like the real cases the recipe mixes in."""
    root.mkdir()
    for i, name in enumerate(("s0001", "s0002")):
        zz, yy, xx = np.mgrid[:24, :36, :40]
        r2 = (zz - 12) ** 2 + (yy - 16) ** 2 + (xx - 22 + 2 * i) ** 2
        label = np.where(r2 < 30, 7, 0).astype(np.uint8)
        label[(xx < 6) & (yy > 20)] = 3
        hu = np.where(label == 7, -5.0, np.where(label == 3, 60.0, -100.0))    # fatty pancreas
        hu = hu + np.random.default_rng(10 + i).normal(0, 10, label.shape)
        for array, suffix in ((hu.astype(np.int16), "ct"), (label, "label")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((2.0, 2.0, 2.0))
            sitk.WriteImage(image, str(root / f"{name}_{suffix}.nii.gz"))
    return root


def test_mixed_datasets_fine_tuning_and_randomisation_are_recorded(dataset, two_epochs, tmp_path):
    init_model, _ = two_epochs
    real = _write_flat_real_like(tmp_path / "real")
    out = tmp_path / "model"
    args = _parser().parse_args([
        "train", str(dataset), "-o", str(out), "--extra-dataset", f"{real}:0.5:7:1",
        "--init-from", str(init_model / "model.pt"), "--domain-randomisation", "--epochs", "1",
        "--iterations-per-epoch", "2", "--patch", "32,32,32", "--batch-size", "2",
        "--workers", "0", "--device", "cpu", "--val-cases", "pancreas_003", "--progress", "none"])
    config = config_from_args(args)
    assert config.widths == (4, 8, 16, 32, 64)          # taken over from the --init-from model
    assert config.randomisation.enabled and config.extra_datasets[0]["labels"] == "7:1"
    bare = config_from_args(_parser().parse_args(["train", str(dataset), "-o", "m", "--init-from",
                                                  str(init_model / "model.pt")]))
    assert bare.patch_size_zyx == (32, 32, 32) and bare.widths == (4, 8, 16, 32, 64)
    assert not bare.randomisation.enabled and bare.extra_datasets == ()
    train(config, dataset, out, progress=False)
    _, spec = load_model(out)
    summary = spec.training
    assert [(s["dataset"], s["labels"], s["case_ids"]) for s in summary["trained_on"]] == [
        ("SpherePhantoms", "merge", ["pancreas_001", "pancreas_002"]),
        ("real", "7:1", ["s0001", "s0002"])]
    assert [s["patch_share"] for s in summary["trained_on"]] == pytest.approx([0.5, 0.5])
    assert summary["trained_on"][1]["label_files"] == [
        str((real / f"{c}_label.nii.gz").resolve()) for c in ("s0001", "s0002")]
    from AttentionUNetSegmentLib.evaluation.provenance import seen_in_training
    assert seen_in_training(real / "s0001_label.nii.gz", summary) is True
    assert seen_in_training(dataset / "labelsTr" / "pancreas_003.nii.gz", summary) is False
    assert summary["val_case_ids"] == ["pancreas_003"] and summary["train_cases"] == 4
    assert summary["synthetic"] is False and "Partly synthetic" in spec.description
    assert summary["initialised_from"]["file"] == "model.pt"
    assert summary["domain_randomisation"]["enabled"] is True
    assert summary["augmentation"]["enabled"] is True

    # --resume keeps the mix; another mix is a different run and is refused.
    resumed = train(replace(config, epochs=2), dataset, out, resume=True, progress=False)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert load_model(out / "last.pt")[1].training["trained_on"] == summary["trained_on"]
    with pytest.raises(InputError, match="extra_datasets"):
        train(replace(config, epochs=3, extra_datasets=()), dataset, out, resume=True,
              progress=False)


def test_init_from_needs_the_same_network(dataset, two_epochs, tmp_path):
    init_model, _ = two_epochs
    config = replace(TINY, epochs=1, widths=(8, 16, 32, 64, 128),
                     init_from=str(init_model / "model.pt"))
    with pytest.raises(InputError, match="same network"):
        train(config, dataset, tmp_path / "model", progress=False)


def test_weights_bf16_halves_the_model_file_and_loads_as_float32(dataset, two_epochs, tmp_path):
    fp32_out, _ = two_epochs
    out = tmp_path / "model"
    train(replace(TINY, weights_bf16=True), dataset, out, progress=False)
    payload = torch.load(out / "last.pt", weights_only=True)
    floats = [v for v in payload["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.bfloat16 for v in floats)
    assert (out / "last.pt").stat().st_size < 0.6 * (fp32_out / "last.pt").stat().st_size
    model, spec = load_model(out / "last.pt")
    assert spec.training["weights_dtype"] == "bfloat16"
    trained = read_checkpoint(out / CHECKPOINT_FILE)["model"]       # float32 for --resume
    for key, value in model.state_dict().items():
        expected = trained[key].to(torch.bfloat16).to(value.dtype) if value.is_floating_point() \
            else trained[key]
        assert value.dtype == trained[key].dtype and torch.equal(value, expected), key
    # model.pt rewritten with the bf16 agreement (where the CPU has bf16) stays bf16.
    best = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.bfloat16 for v in best.values() if v.is_floating_point())


def test_context_classes_are_trained_but_only_the_pancreas_is_output(dataset, tmp_path):
    # The spheres' label-2 core stands in for an organ trained as context (the liver, ...).
    out = tmp_path / "model"
    result = train(replace(TINY, epochs=1, labels="1:1,2:2", context_classes=True), dataset, out,
                   progress=False)
    model, spec = load_model(out)
    assert [label.name for label in spec.labels] == ["Pancreas"]
    assert [label.name for label in spec.context_labels] == ["Cancer"]
    assert spec.network_args["n_classes"] == 3 == spec.n_network_classes
    assert 0.0 <= result.best_val_dice <= 1.0
    args = config_from_args(_parser().parse_args(
        ["train", str(dataset), "-o", str(tmp_path / "m2"), "--labels", "1:1,2:2", "--context-classes",
         "--lr-schedule", "poly"]))
    assert args.context_classes and args.schedule == "poly"
