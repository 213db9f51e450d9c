"""Datasets, the built-in synthetic benchmark and clip transforms.

API
---
``build_dataset(name, root, split, num_segments=8, *, transform=None, **options)``
    ``name``: "synthetic", "jester", "ssv2", "egogesture", "framelist", "videolist";
    ``split``: "train", "val", "test" (where the dataset has it). Returns a
    :class:`VideoDataset`: ``len(ds)``, ``ds.classes`` (index -> name), ``ds.labels``, and
    ``ds[i] -> (clip, label)`` with ``clip`` uint8 ``(T, 3, H, W)`` (or what ``transform`` makes
    of it, e.g. float ``(T, 3, 224, 224)``). Common options: ``num_clips=K`` (K evenly offset clips
    -> ``(K, T, 3, H, W)``), ``random_sampling`` (default: ``split == "train"``),
    ``skip_corrupt=True`` (replace unreadable videos by the next one, count them in
    ``ds.skipped``; ``ds.log_skip_summary()``). Per-reader options (file names, folders, frame
    name templates) are listed in each reader's docstring in ``actionlib/data/datasets.py``.

``ds.get(i, with_masks=True)`` -> dict with ``frames`` (raw uint8 ``(T, 3, H, W)``), ``indices``
    (0-based frame indices, int64 ``(T,)``), ``clip`` (transformed), ``label``, ``id`` and
    ``masks`` (bool ``(T, H, W)``, ground truth of the moving object; synthetic data only).
    ``ds.sample_indices(i)``, ``ds.load_frames(i, indices)`` and ``ds.masks(i, indices)`` are the
    pieces. In "val"/"test" sampling is deterministic (middle frame of each segment).
    ``ds[i]`` goes through ``ds.load_clip(i, indices)``: with JPEG frames and a cropping transform
    it draws the crop first and decodes only that box of each frame (libjpeg-turbo, compiled on
    first use; the same pixels as a full decode, ``ACTIONLIB_NO_CPP=1`` decodes whole frames).

``build_transform(train, size=224, backbone="resnet50", scale_size=256, *, scales=(1, .875, .75, .66),
    test_crop="center", normalize=True)``
    callable uint8 ``(T, 3, H, W)`` (or ``(K, T, 3, H, W)``) -> float32 ``(T, 3, size, size)``:
    train = TSN multi-scale corner/centre crop, val = short side to ``scale_size`` + centre crop;
    one crop for all frames; ImageNet mean/std, or for ``backbone="bninception"`` BGR 0-255 minus
    (104, 117, 128). ``t(clip, masks=m)`` crops bool masks with the same box -> ``(clip, masks)``.
    For 64x64 synthetic frames use e.g. ``build_transform(True, size=56, scale_size=64)`` or
    ``build_transform(False, size=64, scale_size=64)``.

``generate_synthetic(out, clips=2000, frames=16, size=64, seed=0, *, num_classes=10)``
    (also ``actionlib synth --out DIR [--clips N --frames F --size S --seed K]``) writes the
    synthetic benchmark in the Jester layout (+ ``masks/<id>/00001.png``).
    ``build_dataset("synthetic", root, split, clips=..., frames=..., size=..., seed=..., num_classes=...)``
    generates it in ``root`` on first use (``root=None``: ``$ACTIONLIB_DATA`` or
    ``~/.cache/actionlib``, one folder per parameter set) and reads it with the Jester reader.
    Classes (10 by default) are time-mirrored pairs: ``classes[2p + 1]`` is ``classes[2p]``
    played backwards (Move right/left, Move down/up, Rotate clockwise/counter-clockwise,
    Grow/Shrink, Fade in/out, then Move diagonally, Orbit).

Example::

    import torch
    from actionlib.data import build_dataset, build_transform

    train = build_dataset("synthetic", "runs/synth", "train", num_segments=8,
                          transform=build_transform(True, size=56, scale_size=64))
    val = build_dataset("synthetic", "runs/synth", "val", num_segments=8,
                        transform=build_transform(False, size=64, scale_size=64))
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, num_workers=2)
    clips, labels = next(iter(loader))        # (16, 8, 3, 56, 56) float32, (16,) int64
    item = val.get(0, with_masks=True)         # frames uint8 (8,3,64,64), masks bool (8,64,64)
    print(val.classes, item["indices"])       # [...], [ 1  3  5  7  9 11 13 15]
"""

from .datasets import VideoDataset, VideoRecord, build_dataset
from .sampling import sample_indices
from .synthetic import class_names, generate_synthetic
from .transforms import ClipNormalize, ClipTransform, build_transform

__all__ = [
    "ClipNormalize",
    "ClipTransform",
    "VideoDataset",
    "VideoRecord",
    "build_dataset",
    "build_transform",
    "class_names",
    "generate_synthetic",
    "sample_indices",
]
