"""User-visible text of the scene code: Slicer's `tr` inside Slicer (it takes the translation
context from the calling file, so importing it from here changes nothing), the English text
itself where slicer.i18n is missing (the slicer-core wheel, the tests)."""

from __future__ import annotations

try:
    from slicer.i18n import tr
except ImportError:
    def tr(text: str) -> str:
        return text
