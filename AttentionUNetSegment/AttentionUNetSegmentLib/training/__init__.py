"""Training: dataset discovery and mixing, patch sampling, augmentation and domain
randomisation, losses, the training loop (single process or DDP under torchrun), fine-tuning
from a model file, and the bf16 agreement check recorded in model files. `trainer.train` is the
entry point; docs/training.md maps the files."""
