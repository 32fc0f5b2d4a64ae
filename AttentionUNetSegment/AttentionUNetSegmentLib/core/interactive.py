"""Interactive click-to-segment with a click-conditioned network: clicks in, a segment out.

    CT --preprocess once--> model grid (kept for the whole session)
    click k (include / exclude) + mask after click k-1
      -> region: every include click and the mask, plus context      (click_region.py)
      -> network on the region: CT, click channels, previous mask     (prompts.py, inference.py)
      -> keep the components the include clicks touch, fill holes     (postprocessing.py)
      -> object touches the region's side? grow it there and run again (AutoZoom)
      -> probability back onto the CT grid in the box it needs, > 0.5 (restore.py)

A session is a sequence of clicks: the result after click k depends only on clicks 1..k, so
replaying a list of clicks (the stateless command line) gives what clicking them one by one gave
(Slicer's worker). Undo returns to the state before the last click. Points are Slicer RAS (mm);
arrays (z, y, x); the previous mask lives on the model grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .click_merge import merge_click
from .click_region import Box, box_shape, box_slices, grown, region_for, touching_sides
from .devices import model_allows_cpu_bf16
from .errors import InputError
from .fusion import folded_for_inference
from .geometry import coarse_grid, ras_to_lps
from .inference import InferenceOptions, InferenceResult, sliding_window_predict
from .modelspec import ModelSpec
from .options import Click, ClickRegionOptions, MapOptions, WindowOptions
from .pipeline import SegmentationResult
from .postprocessing import components_at_points, components_overlapping, fill_holes
from .preprocessing import preprocess
from .prompts import ClickEncoding, network_input
from .restore import box_slices as ct_box_slices
from .restore import foreground_box, restore_box


@dataclass
class _State:
    """The session after one click: what the next click starts from."""

    clicks: tuple[Click, ...]
    mask: np.ndarray  # (z, y, x) bool on the model grid
    result: SegmentationResult
    region: Box


@dataclass
class _Prediction:
    probability: np.ndarray  # (z, y, x) float32 on the region
    attention: dict[str, np.ndarray]  # gate -> (z/s, y/s, x/s) on the region's coarse grid
    inference: InferenceResult
    windows: int = 0


class InteractiveSession:
    """One CT and one click-conditioned model; see the module docstring."""

    def __init__(self, image: sitk.Image, model: torch.nn.Module, spec: ModelSpec,
                 window: Optional[WindowOptions] = None, maps: Optional[MapOptions] = None,
                 region: Optional[ClickRegionOptions] = None):
        if not spec.interactive:
            raise InputError(None, "this model has no click channels; it segments without clicks")
        # Folded once here, not on every click (a copy: 0.17 s per click measured on the CPU).
        self.image, self.model, self.spec = image, folded_for_inference(model), spec
        self.window_options = window or WindowOptions()
        self.maps = maps or MapOptions()
        self.region_options = region or ClickRegionOptions()
        self.encoding = ClickEncoding.from_dict(spec.prompts)
        t0 = time.perf_counter()
        pre = preprocess(image, spec.spacing_zyx, spec.intensity)
        self.array, self.grid = pre.array, pre.grid  # (z, y, x) float32 on the model grid
        self.preprocess_seconds = time.perf_counter() - t0
        self.shape = tuple(self.array.shape)
        self.window = tuple(int(v) for v in spec.patch_size_zyx)
        self.cap = tuple(max(w, int(w * self.region_options.cap_windows)) for w in self.window)
        self.history: list[_State] = []
        self._start_mask: Optional[np.ndarray] = None

    # -- the click sequence ------------------------------------------------------------------
    @property
    def clicks(self) -> tuple[Click, ...]:
        return self.history[-1].clicks if self.history else ()

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The current mask on the model grid (None before the first click)."""
        return self.history[-1].mask if self.history else self._start_mask

    def add_click(self, point_ras: Sequence[float], include: bool = True) -> SegmentationResult:
        """Segment after one more click; InputError for a point outside the CT."""
        click = Click(tuple(point_ras), include)  # type: ignore[arg-type]
        self._model_index(click)  # checks that the point lies in the CT
        clicks = self.clicks + (click,)
        if not any(c.include for c in clicks) and self.mask is None:
            raise InputError(None, "the first click must be an include click (on the structure)")
        state = self._segment(clicks, self.mask)
        self.history.append(state)
        return state.result

    def replay(self, clicks: Sequence[Click]) -> SegmentationResult:
        """The result of clicking `clicks` in order from the session's start."""
        self.reset()
        result = None
        for click in clicks:
            result = self.add_click(click.point_ras, click.include)
        if result is None:
            raise InputError(None, "no clicks given")
        return result

    def set_clicks(self, clicks: Sequence[Click]) -> Optional[SegmentationResult]:
        """The result for exactly `clicks` from the session's start (None for no clicks). Clicks
        already answered that begin the list are reused: one more click costs one click, a moved
        or removed click replays from there on."""
        clicks = tuple(clicks)
        common = 0
        while (common < min(len(self.history), len(clicks))
               and self.history[common].clicks[-1] == clicks[common]):
            common += 1
        del self.history[common:]
        for click in clicks[common:]:
            self.add_click(click.point_ras, click.include)
        return self.history[-1].result if self.history else None

    def undo(self) -> Optional[SegmentationResult]:
        """Forget the last click; the result before it (None when no click is left)."""
        if self.history:
            self.history.pop()
        return self.history[-1].result if self.history else None

    def reset(self, start_mask: Optional[np.ndarray] = None) -> None:
        """Forget every click; `start_mask` (model grid) is where the next click refines from."""
        self.history.clear()
        self._start_mask = None if start_mask is None else np.asarray(start_mask, dtype=bool)

    def start_from_labelmap(self, labelmap: sitk.Image, value: int = 1) -> None:
        """Refine an existing segment (e.g. edited in Slicer's Segment Editor): it becomes the
        previous mask of the next click. `labelmap` may lie on any grid."""
        binary = sitk.Cast(labelmap == value, sitk.sitkFloat32)
        on_grid = sitk.Resample(binary, self.grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        self.reset(sitk.GetArrayViewFromImage(on_grid) > 0.5)

    # -- one step ----------------------------------------------------------------------------
    def _model_index(self, click: Click) -> np.ndarray:
        """The click's continuous (z, y, x) index on the model grid; InputError outside the CT."""
        lps = ras_to_lps(click.point_ras)
        inside = self.image.TransformPhysicalPointToContinuousIndex(lps)
        if any(not -0.5 <= i <= n - 0.5 for i, n in zip(inside, self.image.GetSize())):
            ras = ", ".join(f"{v:g}" for v in click.point_ras)
            raise InputError(None, f"point (R, A, S) = ({ras}) mm lies outside the CT volume")
        x, y, z = self.grid.TransformPhysicalPointToContinuousIndex(lps)
        return np.clip(np.array([z, y, x]), 0, np.asarray(self.shape) - 1)

    def _segment(self, clicks: tuple[Click, ...], previous: Optional[np.ndarray]) -> _State:
        t0 = time.perf_counter()
        include = [self._model_index(c) for c in clicks if c.include]
        exclude = [self._model_index(c) for c in clicks if not c.include]
        region = region_for(self.shape, self.window, include, previous, self.region_options.margin_voxels, self.cap)
        windows = 0
        for attempt in range(self.region_options.max_grow + 1):
            prediction = self._predict(region, include, exclude, previous)
            windows += prediction.inference.windows
            start = np.asarray(region[0])
            kept = self._kept(prediction.probability > 0.5, [p - start for p in include], region)
            sides = touching_sides(kept, region, self.shape)
            bigger = grown(region, sides, [w // 2 for w in self.window], self.shape, self.cap)
            if not sides or attempt == self.region_options.max_grow or bigger == region:
                break
            region = bigger
        network_seconds = time.perf_counter() - t0
        inside = box_slices(region)
        if previous is not None:  # a corrective click changes only what is connected to it
            newest = clicks[-1]
            kept = merge_click(previous[inside], kept, self._model_index(newest) - np.asarray(region[0]),
                               newest.include, self.encoding.radius_voxels)
        # Outside the region the previous mask stays as it was: a click edits where it lands.
        mask = np.zeros(self.shape, dtype=bool) if previous is None else previous.copy()
        probability = mask.astype(np.float32)
        mask[inside] = kept
        # Where the network agrees with the decision its probability shapes the boundary on the
        # CT grid; where the decision overrules it (components no click touched, changes the
        # click did not ask for) the voxel is 1 or 0.
        network_says = prediction.probability > 0.5
        probability[inside] = np.where(network_says == kept, prediction.probability, kept.astype(np.float32))
        t1 = time.perf_counter()
        labels = self._labels_on_ct(probability)
        seconds = {"preprocess": 0.0 if self.history else self.preprocess_seconds,
                   "inference": network_seconds, "restore": time.perf_counter() - t1}
        prediction.inference.windows = windows
        result = SegmentationResult(
            labelmap=labels, probabilities=self._probability_image(probability),
            attention=self._attention_images(prediction.attention, region), labels=list(self.spec.labels),
            inference=prediction.inference, seconds=seconds)
        seconds["total"] = sum(seconds.values())
        return _State(clicks, mask, result, region)

    def _kept(self, above: np.ndarray, include_in_region: list[np.ndarray], region: Box) -> np.ndarray:
        """The components of `above` the include clicks touch (nearest if none), and, when the
        session refines a given segment, every component overlapping it; holes filled."""
        start = None if self._start_mask is None else self._start_mask[box_slices(region)]
        if not include_in_region and start is None:
            return fill_holes(above)
        kept = np.zeros_like(above)
        if include_in_region:
            kept = components_at_points(above, include_in_region, self.spec.spacing_zyx)
        if start is not None and start.any():
            kept |= components_overlapping(above, start)
        return fill_holes(kept)

    def _predict(self, region: Box, include, exclude, previous) -> _Prediction:
        start = np.asarray(region[0])
        crop = self.array[box_slices(region)]
        previous_crop = None if previous is None else previous[box_slices(region)]
        inputs = network_input(crop, [p - start for p in include], [p - start for p in exclude],
                               previous_crop, self.encoding)  # (4, z, y, x)
        window = self.window_options
        options = InferenceOptions(
            patch_size_zyx=self.window, overlap=self.region_options.overlap, batch_size=window.batch_size,
            device=window.device, precision=window.precision, return_attention=self.maps.attention,
            cpu_bf16_validated=model_allows_cpu_bf16(self.spec.training))
        inferred = sliding_window_predict(self.model, inputs, options)
        logits = torch.from_numpy(inferred.logits)  # (2, z, y, x)
        probability = torch.sigmoid(logits[1] - logits[0]).numpy()
        attention, inferred.logits = inferred.attention, np.empty((0, 0, 0, 0), np.float32)
        return _Prediction(probability, attention, inferred)

    # -- results on the CT and on their own grids --------------------------------------------
    def _labels_on_ct(self, probability: np.ndarray) -> sitk.Image:
        """uint8 labels on the CT grid: the probability resampled in the box where it can
        exceed 0.5, thresholded, holes filled. Components were chosen on the model grid (the
        dropped ones are 0 in `probability`), so none can reappear here."""
        labels = np.zeros(tuple(reversed(self.image.GetSize())), dtype=np.uint8)
        box = foreground_box(probability, self.grid, self.image)
        if box is not None:
            block = restore_box(probability, self.grid, self.image, box) > 0.5
            labels[ct_box_slices(box)] = fill_holes(block) * int(self.spec.labels[0].value)
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(self.image)
        return image

    def _region_grid(self, region: Box) -> sitk.Image:
        """The model grid's sub-grid covering `region` (exact geometry, values unused)."""
        size_xyz = [int(n) for n in reversed(box_shape(region))]
        grid = sitk.Image(size_xyz, sitk.sitkUInt8)
        grid.SetSpacing(self.grid.GetSpacing())
        grid.SetDirection(self.grid.GetDirection())
        grid.SetOrigin(self.grid.TransformIndexToPhysicalPoint([int(v) for v in reversed(region[0])]))
        return grid

    def _attention_images(self, attention: dict[str, np.ndarray], region: Box) -> dict[str, sitk.Image]:
        scales = getattr(self.model, "gate_scales", {})
        region_grid = self._region_grid(region)
        images = {}
        for name, values in attention.items():
            image = sitk.GetImageFromArray(np.ascontiguousarray(values, dtype=np.float32))
            image.CopyInformation(coarse_grid(region_grid, int(scales[name])))
            images[name] = image
        return images

    def _probability_image(self, probability: np.ndarray) -> Optional[sitk.Image]:
        if not self.maps.probabilities:
            return None
        image = sitk.GetImageFromArray(probability)
        image.CopyInformation(self.grid)
        return image
