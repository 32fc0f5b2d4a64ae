"""A CT that is one frame of a 4D sequence (Sequences module: a browser node and its proxy volume)
is said to be one, on a real MRML scene."""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene import sequences  # noqa: E402
from mrml_helpers import DIRECTIONS, output_like, phantom_ct  # noqa: E402


def add_sequence(mrml, image, frames: int = 3, selected: int = 1):
    """A 4D CT as the Sequences module loads it: the frames in a sequence node, the one shown in a
    proxy volume node that a browser node keeps up to date."""
    mrml.scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    sequence = mrml.scene.AddNewNodeByClass("vtkMRMLSequenceNode", "CT phases")
    for index in range(frames):
        sequence.SetDataNodeAtValue(slicer.vtkMRMLScalarVolumeNode(), str(index))
    browser = mrml.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "CT phases browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    proxy = mrml.add_ct(image, name="CT phases")
    browser.AddProxyNode(proxy, sequence, False)
    browser.SetSelectedItemNumber(selected)
    return proxy


def test_a_frame_of_a_4d_sequence_is_said_to_be_one(mrml):
    """Issue 19, defect 8: a 4D CT was segmented as its current frame without a word."""
    image = phantom_ct(DIRECTIONS["oblique"])
    proxy = add_sequence(mrml, image)
    note = sequences.frame_note(proxy)
    assert note == ('CT phases: is frame 2 of 3 of the sequence "CT phases"; only this frame is segmented, '
                    "and a run on another frame replaces its result")
    applied = mrml.logic.apply_result(proxy, output_like(image))
    assert note in mrml.logic.result_text(proxy, applied, 1.0)
    plain = mrml.add_ct(image, name="CT")
    assert sequences.frame_note(plain) == ""
    assert "frame" not in mrml.logic.result_text(plain, mrml.logic.apply_result(plain, output_like(image)), 1.0)
