"""A CT that is one frame of a 4D sequence (Slicer's Sequences module), said in words.

The Sequences module shows a 4D CT (phases, time points) as one ordinary volume node, its
"proxy", whose voxels a browser node replaces by the selected frame. The module segments that
node like any CT, so it segments the frame shown, and the result belongs to the proxy node: a run
on another frame replaces it. That is said rather than done silently.
"""

from __future__ import annotations

from .roles import collection_items


def frame_of(volume_node):
    """(frame number from 1, number of frames, sequence name) when `volume_node` is a sequence's
    proxy node, else None."""
    scene = volume_node.GetScene() if volume_node is not None else None
    if scene is None:
        return None
    for browser in collection_items(scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")):
        sequence = browser.GetSequenceNode(volume_node)
        if sequence is not None and sequence.GetNumberOfDataNodes() > 1:
            return browser.GetSelectedItemNumber() + 1, sequence.GetNumberOfDataNodes(), sequence.GetName()
    return None


def frame_note(volume_node) -> str:
    """One line for the status and Result lines, or "" for a CT that is no sequence's frame."""
    frame = frame_of(volume_node)
    if frame is None:
        return ""
    number, count, name = frame
    return (f'{volume_node.GetName()}: is frame {number} of {count} of the sequence "{name}"; only this frame '
            "is segmented, and a run on another frame replaces its result")
