"""What a segment is (label value, name, colour, standard terminology: SNOMED CT), and which
values of a labelmap count as which class: the one label syntax of every command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .errors import InputError


@dataclass(frozen=True)
class LabelInfo:
    """One segment: label value in the labelmap, display name, colour (0..1 RGB), terminology.

    `terminology` is Slicer's terminology entry string
    ``"context~category~type~typeModifier~anatomicContext~region~regionModifier"`` where each
    code is ``scheme^value^meaning`` (e.g. ``SCT^15776009^Pancreas``); empty means none.
    Frozen so that shared constants such as `PANCREAS` cannot be modified by accident.
    """

    value: int
    name: str
    color: tuple[float, float, float]
    terminology: str = ""

    def __post_init__(self) -> None:
        value = int(self.value)
        if not 1 <= value <= 255:
            raise ValueError(f"label value must be 1..255 (0 is background), got {self.value!r}")
        color = tuple(float(c) for c in self.color)
        if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
            raise ValueError(f"color must be three floats in 0..1, got {self.color!r}")
        name = str(self.name).strip()
        if not name:
            raise ValueError("label name must not be empty")
        for text in (name, str(self.terminology)):
            if any(ch in text for ch in "\r\n|"):
                # These characters end a NRRD header line or separate Slicer tags.
                raise ValueError(f"label name/terminology must not contain '|' or line breaks: {text!r}")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "color", color)
        object.__setattr__(self, "terminology", str(self.terminology))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (also safe for ``torch.load(weights_only=True)``)."""
        return {"value": self.value, "name": self.name, "color": list(self.color),
                "terminology": self.terminology}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LabelInfo":
        unknown = set(data) - {"value", "name", "color", "terminology"}
        if unknown:
            raise ValueError(f"unknown LabelInfo keys: {sorted(unknown)}")
        return cls(value=data["value"], name=data["name"], color=tuple(data["color"]),
                   terminology=data.get("terminology", ""))


#: Pancreas with Slicer's recommended colour and SNOMED CT codes (General Anatomy list).
PANCREAS = LabelInfo(
    1,
    "Pancreas",
    (249 / 255, 180 / 255, 111 / 255),
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^123037004^Anatomical Structure~SCT^15776009^Pancreas~^^"
    "~Anatomic codes - DICOM master list~^^~^^",
)


# --------------------------------------------------------------------------- which labels count

#: The one label syntax of every command (train --labels, evaluate --pred-label/--truth-label,
#: figure --truth-label), shown in their help and errors.
LABELS_SYNTAX = "merge, N[,N...] or SOURCE:CLASS[,...] such as 1:1,2:1"


def _pairs(items: list[str]) -> dict[int, int]:
    if all(":" in item for item in items):
        return {int(source): int(target) for source, target in (item.split(":") for item in items)}
    if any(":" in item for item in items):
        raise ValueError("mixed forms")
    values = {int(item): 1 for item in items}
    if any(value <= 0 for value in values):
        raise ValueError("0 is background")
    return values


def parse_label_map(text: Optional[str], option: str = "--labels") -> Optional[dict[int, int]]:
    """Which values of a labelmap count, and as which class:

    - ``merge`` (or None) -> None: every value > 0 is class 1 (Task07's tumour into the pancreas);
    - ``7`` or ``1,2`` -> {7: 1} or {1: 1, 2: 1}: these values are class 1, the rest background;
    - ``1:1,2:2`` -> SOURCE:CLASS pairs, classes 1..K without gaps; unlisted values are background.

    InputError (one line naming `option`) for anything else.
    """
    if text is None or str(text).strip().lower() == "merge":
        return None
    items = [item for item in str(text).replace(" ", "").split(",") if item]
    try:
        if not items:
            raise ValueError("empty")
        mapping = _pairs(items)
    except ValueError:
        raise InputError(None, f"{option} {text!r}: expected {LABELS_SYNTAX}") from None
    classes = sorted(set(mapping.values()) - {0})
    if any(value < 0 for value in mapping) or classes != list(range(1, len(classes) + 1)):
        raise InputError(None, f"{option} {text!r}: classes must be 1..K with no gaps")
    return mapping
