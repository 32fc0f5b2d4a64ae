"""Training: dataset discovery, patch sampling and augmentation, losses, the training loop
(single process or DDP under torchrun) and the bf16 agreement check recorded in model files."""
