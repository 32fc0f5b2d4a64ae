"""A failed `segment` process gives the user one line, never a traceback."""

from AttentionUNetSegmentLib.scene.failures import describe_failure


def test_failure_messages_are_one_clear_line():
    assert "PyTorch is not installed" in describe_failure(
        1, ["Traceback (most recent call last):", '  File "x", line 1', "ModuleNotFoundError: No module named 'torch'"])
    assert "GPU ran out of memory" in describe_failure(
        1, ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"])
    assert "no usable CUDA GPU" in describe_failure(1, ["AssertionError: Torch not compiled with CUDA enabled"])
    assert describe_failure(2, ['{"fraction": 0.1, "message": "x"}', "error: /a/ct.nii: is not 3D"]) == \
        "/a/ct.nii: is not 3D"
    assert describe_failure(1, ["Traceback (most recent call last):", "ValueError: bad"]) == \
        "segmentation failed: ValueError: bad"
    assert "signal 9" in describe_failure(-9, [])
    assert describe_failure(3, []) == "the segmentation process failed (exit code 3)"
