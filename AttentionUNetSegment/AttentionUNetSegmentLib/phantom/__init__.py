"""Synthetic abdominal CT phantoms with organ labels (Decathlon layout)."""
