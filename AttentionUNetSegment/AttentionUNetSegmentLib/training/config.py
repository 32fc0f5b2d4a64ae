"""TrainConfig: everything that defines a training run (stored in the checkpoint for --resume)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..core.errors import InputError
from ..core.network import ARCHITECTURES
from ..core.options import DEFAULT_OVERLAP
from .augmentation import AugmentationConfig
from .data import parse_label_map
from .randomisation import DomainRandomisationConfig

#: The old `train --arch` names (and checkpoints written with them) -> the model files' names.
LEGACY_ARCH_NAMES = {"attention": "attention_unet3d", "unet": "unet3d"}
#: Changing these between a run and its --resume would train a different model.
FIXED_ON_RESUME = ("arch", "widths", "patch_size_zyx", "spacing_zyx", "labels", "optimizer",
                   "batch_size", "seed", "extra_datasets", "init_from", "context_classes")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint for --resume)."""

    arch: str = ARCHITECTURES[0]            # attention_unet3d | unet3d, as model files name them
    epochs: int = 300
    iterations_per_epoch: int = 250         # batches per epoch and rank
    patch_size_zyx: tuple[int, int, int] = (96, 160, 160)   # the paper's 160x160x96 (x, y, z)
    spacing_zyx: tuple[float, float, float] = (2.0, 2.0, 2.0)  # the paper: isotropic 2 mm
    batch_size: int = 2                     # per rank; the paper used 2-4
    optimizer: str = "adam"                 # adam | sgd
    lr: float | None = None                 # None: 1e-4 (adam, the paper) or 1e-2 (sgd)
    lr_schedule: str = "auto"               # auto (sgd: poly, adam: constant) | poly | constant
    weight_decay: float | None = None       # None: 0 (adam) or 3e-5 (sgd, nnU-Net)
    grad_clip: float = 12.0                 # max gradient norm (nnU-Net); 0 disables
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    labels: str = "merge"                   # merge | "1:1,2:1" (source value:class)
    foreground_probability: float = 0.33
    val_fraction: float = 0.2
    val_cases: tuple[str, ...] = ()         # explicit validation case ids (overrides fraction)
    val_every: int = 1
    val_overlap: float = DEFAULT_OVERLAP
    seed: int = 0
    num_workers: int = 2
    amp: bool | None = None                 # None: on for CUDA
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    device: str = "auto"                    # auto | cpu | cuda | mps
    cache: bool = False                     # preprocessed arrays as .npy under MODEL_DIR/cache
    sync_batchnorm: bool = False            # multi-GPU: BatchNorm statistics over all ranks
    # More datasets mixed into training (mixing.py): {"path", "weight", "labels"} each.
    extra_datasets: tuple[dict, ...] = ()
    init_from: str | None = None            # a model file whose weights start the run
    weights_bf16: bool = False              # model.pt/last.pt weights stored in bfloat16
    # Classes 2..K (liver, stomach, vessels...) trained as context only: validation scores the
    # pancreas, and the model file outputs only the pancreas (ModelSpec.context_labels).
    context_classes: bool = False
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    randomisation: DomainRandomisationConfig = field(default_factory=DomainRandomisationConfig)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.optimizer == "adam" else 1e-2)

    @property
    def schedule(self) -> str:
        if self.lr_schedule != "auto":
            return self.lr_schedule
        return "poly" if self.optimizer == "sgd" else "constant"

    def to_dict(self) -> dict:
        """Plain types only (safe for torch.load(weights_only=True))."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Inverse of to_dict; keys a checkpoint from an older version lacks take defaults
        (domain randomisation: off, as those runs trained without it)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "arch" in values:
            values["arch"] = LEGACY_ARCH_NAMES.get(values["arch"], values["arch"])
        values["augmentation"] = AugmentationConfig(**values.get("augmentation", {}))
        values["randomisation"] = DomainRandomisationConfig(**values.get("randomisation", {}))
        values["extra_datasets"] = tuple(dict(extra) for extra in values.get("extra_datasets", ()))
        return cls(**values)

    def validate(self) -> None:
        """InputError (one line) for settings no run can use."""
        def bad(problem: str) -> InputError:
            return InputError(None, problem)
        if self.arch not in ARCHITECTURES:
            raise bad(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise bad(f"--optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.lr_schedule not in ("auto", "poly", "constant"):
            raise bad(f"unknown lr schedule {self.lr_schedule!r}")
        divisor = 2 ** (len(self.widths) - 1)
        if len(self.patch_size_zyx) != 3 or any(p < divisor or p % divisor
                                                 for p in self.patch_size_zyx):
            x, y, z = self.patch_size_zyx[::-1]
            raise bad(f"--patch {x},{y},{z}: every size must be a multiple of {divisor}")
        if min(self.epochs, self.iterations_per_epoch, self.batch_size, self.val_every) < 1:
            raise bad("epochs, iterations per epoch, batch size and val-every must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if any(s <= 0 for s in self.spacing_zyx) or len(self.spacing_zyx) != 3:
            raise bad(f"--spacing must be positive, got {self.spacing_zyx}")
        parse_label_map(self.labels)
        for extra in self.extra_datasets:
            if extra.get("labels"):
                parse_label_map(extra["labels"])
        problems = self.randomisation.validate()
        if problems:
            raise bad("domain randomisation: " + "; ".join(problems))
