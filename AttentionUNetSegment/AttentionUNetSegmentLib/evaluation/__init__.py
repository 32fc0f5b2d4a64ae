"""Evaluation: metrics in millimetres, the `evaluate` logic and paired model comparison."""
