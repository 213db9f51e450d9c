"""Datasets: one generic frame/video dataset and readers for the on-disk layouts of spec section 6."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import can_decode_regions, frame_size, read_frames, read_masks, read_video
from .sampling import sample_indices

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LOAD_ERRORS = (FileNotFoundError, ValueError, OSError)


@dataclass
class VideoRecord:
    """One video (or one annotated segment of a video) of a dataset.

    ``frames_dir`` + ``template`` (frame file names ``template.format(start + i)``) or
    ``video_path`` (decoded with PyAV); ``num_frames`` None means counted when first loaded.
    ``source`` says where the record came from (``file:line``) for error messages.
    """

    id: str
    label: int
    frames_dir: Path | None = None
    template: str = "{:05d}.jpg"
    num_frames: int | None = None
    start: int = 1
    video_path: Path | None = None
    masks_dir: Path | None = None
    mask_template: str | None = None
    source: str = ""


class AnnotationErrors:
    """Collects annotation errors: raise at once, or (skip_corrupt) count and log one summary."""

    def __init__(self, skip: bool, what: str):
        self.skip, self.what, self.errors = skip, what, []

    def __call__(self, exc: Exception) -> None:
        if not self.skip:
            raise exc
        self.errors.append(str(exc))

    def summary(self) -> None:
        if self.errors:
            log.warning(
                "%s: skipped %d bad annotation entr%s (skip_corrupt=True); first: %s",
                self.what, len(self.errors), "y" if len(self.errors) == 1 else "ies", self.errors[0],
            )  # fmt: skip


class VideoDataset(Dataset):
    """Clips of ``num_segments`` frames sampled per spec section 5, as ``(clip, label)``.

    ``clip`` is uint8 ``(T, 3, H, W)`` (``(K, T, 3, H, W)`` with ``num_clips=K``), or what
    ``transform`` makes of it. Sampling is random inside each segment when ``random_sampling``
    (default: ``split == "train"``), else the middle frame (K evenly offset clips).
    ``skip_corrupt=True`` replaces an unreadable video by the next readable one, remembers it in
    ``self.skipped`` ({id: error}) and logs the first one; ``log_skip_summary()`` logs the count.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        classes: Sequence[str],
        num_segments: int = 8,
        *,
        split: str = "train",
        transform: Callable | None = None,
        random_sampling: bool | None = None,
        num_clips: int = 1,
        skip_corrupt: bool = False,
        name: str = "video",
        source: str = "",
    ):
        if not records:
            raise ValueError(f"{name} dataset ({split}) from {source or '?'} has no videos")
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.records = list(records)
        self.classes = list(classes)
        self.num_segments = int(num_segments)
        self.split = split
        self.transform = transform
        self.random_sampling = (split == "train") if random_sampling is None else bool(random_sampling)
        self.num_clips = int(num_clips)
        self.skip_corrupt = skip_corrupt
        self.name = name
        self.source = source
        self.skipped: dict[str, str] = {}
        self._video_cache: tuple[int, torch.Tensor] | None = None

    # -- metadata -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, videos={len(self)}, "
            f"classes={len(self.classes)}, num_segments={self.num_segments}, num_clips={self.num_clips})"
        )

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def has_masks(self) -> bool:
        return all(r.masks_dir is not None for r in self.records)

    def num_frames(self, index: int) -> int:
        """Number of frames of video ``index`` (counted on disk / decoded once, then cached)."""
        rec = self.records[index]
        if rec.num_frames is None:
            if (rec.frames_dir is not None and rec.video_path is not None and not rec.frames_dir.is_dir()
                    and not rec.video_path.is_file()):
                raise FileNotFoundError(f"video {rec.id} ({rec.source}): neither the frame folder "
                                        f"{rec.frames_dir} nor the video file {rec.video_path} exists")
            if rec.frames_dir is not None and (rec.video_path is None or rec.frames_dir.is_dir()):
                rec.num_frames = _count_frames(rec)
            elif rec.video_path is not None:
                rec.num_frames = len(self._decode(index))
            else:
                raise ValueError(f"video {rec.id} ({rec.source}) has neither a frame folder nor a file")
        return rec.num_frames

    # -- sampling and loading -------------------------------------------------------------------
    def sample_indices(
        self, index: int, clip_index: int | None = None, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """0-based frame indices for video ``index``: ``(T,)``, or ``(K, T)`` with K clips."""
        return sample_indices(
            self.num_frames(index), self.num_segments, random=self.random_sampling,
            num_clips=self.num_clips, clip_index=clip_index, generator=generator,
        )  # fmt: skip

    def frame_paths(self, index: int, indices: np.ndarray) -> list[Path]:
        rec = self.records[index]
        if rec.frames_dir is None:
            raise ValueError(f"video {rec.id} ({rec.source}) is a video file, it has no frame files")
        return [rec.frames_dir / rec.template.format(rec.start + int(i)) for i in np.asarray(indices).reshape(-1)]

    def _decode(self, index: int) -> torch.Tensor:
        if self._video_cache is not None and self._video_cache[0] == index:
            return self._video_cache[1]
        video = read_video(self.records[index].video_path)
        self._video_cache = (index, video)
        return video

    def _has_frame_files(self, index: int) -> bool:
        rec = self.records[index]
        return rec.frames_dir is not None and (rec.video_path is None or rec.frames_dir.is_dir())

    def _check_indices(self, index: int, indices: np.ndarray) -> None:
        n = self.num_frames(index)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"frame indices {indices.tolist()} out of range for video {self.records[index].id} "
                             f"with {n} frames")  # fmt: skip

    def load_frames(self, index: int, indices: np.ndarray) -> torch.Tensor:
        """Raw uint8 frames of video ``index`` at ``indices`` -> ``(*indices.shape, 3, H, W)``."""
        indices = np.asarray(indices)
        self._check_indices(index, indices)
        if self._has_frame_files(index):
            frames = read_frames(self.frame_paths(index, indices))
        else:
            frames = self._decode(index)[torch.from_numpy(indices.reshape(-1))]
        return frames.reshape(*indices.shape, *frames.shape[1:])

    def load_clip(self, index: int, indices: np.ndarray) -> torch.Tensor:
        """``transform(load_frames(index, indices))`` (the raw frames without a transform),
        decoding no more than the transform keeps: with a cropping transform (one with a
        ``crop_box(height, width)`` method, e.g. :class:`ClipTransform`) and JPEG frame files, the
        box is drawn first, from the frame size in the first file's header, and only the box of
        each frame is decoded (``read_frames(..., region=box)``; same pixels, less decoding)."""
        t = self.transform
        if t is None:
            return self.load_frames(index, indices)
        indices = np.asarray(indices)
        crop_box = getattr(t, "crop_box", None)
        if crop_box is not None and self._has_frame_files(index):
            self._check_indices(index, indices)
            paths = self.frame_paths(index, indices)
            if can_decode_regions(paths):
                h, w = frame_size(paths[0])
                top, left, bh, bw = box = crop_box(h, w)
                if top < 0 or left < 0 or top + bh > h or left + bw > w:  # a box that pads: crop in the transform
                    return t(self.load_frames(index, indices), box=box)
                frames = read_frames(paths, region=box)  # (T', 3, bh, bw) with T' = indices.size
                return t(frames.reshape(*indices.shape, 3, bh, bw), box=(0, 0, bh, bw))
        return t(self.load_frames(index, indices))

    def masks(self, index: int, indices: np.ndarray | None = None) -> torch.Tensor:
        """Ground-truth masks (bool ``(T, H, W)``) of the moving object at ``indices``
        (default: ``self.sample_indices(index)``, deterministic unless sampling is random)."""
        rec = self.records[index]
        if rec.masks_dir is None:
            raise ValueError(f"{self.name} dataset has no masks (video {rec.id})")
        if indices is None:
            indices = self.sample_indices(index)
        indices = np.asarray(indices)
        tmpl = rec.mask_template or (os.path.splitext(rec.template)[0] + ".png")
        paths = [rec.masks_dir / tmpl.format(rec.start + int(i)) for i in indices.reshape(-1)]
        m = read_masks(paths)
        return m.reshape(*indices.shape, *m.shape[1:])

    def get(self, index: int, *, with_masks: bool = False, generator: torch.Generator | None = None) -> dict:
        """Everything about one item: ``frames`` (raw uint8), ``indices``, ``clip`` (transformed
        frames, or the raw ones without transform), ``label``, ``id`` and, with ``with_masks``,
        ``masks`` (raw bool masks at the same indices). No skipping of corrupt videos here."""
        indices = self.sample_indices(index, generator=generator)
        frames = self.load_frames(index, indices)
        rec = self.records[index]
        out = {"frames": frames, "indices": indices, "label": rec.label, "id": rec.id, "clip": frames}
        if with_masks:
            out["masks"] = self.masks(index, indices)
        if self.transform is not None:
            out["clip"] = self.transform(frames)
        return out

    def _clip_and_label(self, index: int):
        """``(clip, label)`` of ``get(index)``, with the same random draws, through ``load_clip``."""
        return self.load_clip(index, self.sample_indices(index)), self.records[index].label

    def __getitem__(self, index: int):
        index = int(index)
        if not self.skip_corrupt:
            return self._clip_and_label(index)
        n = len(self)
        for k in range(n):
            j = (index + k) % n
            rid = self.records[j].id
            if rid in self.skipped:
                continue
            try:
                return self._clip_and_label(j)
            except LOAD_ERRORS as e:
                self.skipped[rid] = str(e)
                if len(self.skipped) == 1:
                    log.warning(
                        "%s: skipping unreadable video %s (skip_corrupt=True; more skips are counted, "
                        "see log_skip_summary()): %s", self.name, rid, e,
                    )  # fmt: skip
        raise ValueError(f"{self.name} dataset: no readable video left (all {n} failed); first error: "
                         f"{next(iter(self.skipped.values()))}")  # fmt: skip

    def log_skip_summary(self) -> int:
        """Log (once) how many videos were skipped as unreadable in this process; returns it."""
        if self.skipped:
            log.warning(
                "%s: skipped %d unreadable video(s) of %d; first: %s: %s", self.name, len(self.skipped),
                len(self), *next(iter(self.skipped.items())),
            )  # fmt: skip
        return len(self.skipped)


def _count_frames(rec: VideoRecord) -> int:
    d = rec.frames_dir
    if not d.is_dir():
        raise FileNotFoundError(f"missing frame folder {d} of video {rec.id} ({rec.source})")
    suffix = os.path.splitext(rec.template)[1]
    n = sum(1 for name in os.listdir(d) if name.endswith(suffix))
    if n == 0:
        raise ValueError(f"frame folder {d} of video {rec.id} ({rec.source}) has no '{suffix}' frames")
    return n


# ---------------------------------------------------------------------------------------------
# helpers


def _check_split(name: str, split: str, allowed: Sequence[str] = SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"{name}: unknown split {split!r}; allowed: {', '.join(allowed)}")
    return split


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; errors on a missing or empty file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {what} {path}")
    with open(path, encoding="utf-8") as f:
        lines = [(i, line.rstrip("\r\n")) for i, line in enumerate(f, 1)]
    lines = [(i, line) for i, line in lines if line.strip()]
    if not lines:
        raise ValueError(f"empty {what} {path}: expected at least one entry")
    return lines


def _load_json(path: Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {what} {path}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"empty {what} {path}: expected a JSON document")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed {what} {path}, line {e.lineno}: {e.msg} (expected valid JSON)") from None
    return data


def _first_dir(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def _resolve(root: Path, value, default: Path) -> Path:
    if value is None:
        return default
    value = Path(value)
    return value if value.is_absolute() else root / value


# ---------------------------------------------------------------------------------------------
# Jester (and the synthetic benchmark, which is written in the Jester layout)

JESTER_FILES = {"train": "jester-v1-train.csv", "val": "jester-v1-validation.csv", "test": "jester-v1-test.csv"}


def read_label_lines(path: Path) -> list[str]:
    """A labels file with one class name per line (line order = class index)."""
    names = [line.strip() for _, line in _read_lines(path, "labels file")]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"labels file {path}: class {n!r} listed twice (entries {seen[n] + 1} and {i + 1})")
        seen[n] = i
    return names


def jester(
    root,
    split: str,
    num_segments: int = 8,
    *,
    annotation_file=None,
    labels_file=None,
    frames_dir=None,
    masks_dir=None,
    frame_template: str = "{:05d}.jpg",
    mask_template: str = "{:05d}.png",
    skip_corrupt: bool = False,
    name: str = "jester",
    **kw,
) -> VideoDataset:
    """Jester: ``jester-v1-{train,validation,test}.csv`` (``id;label text``), ``jester-v1-labels.csv``,
    frames ``frames/<id>/00001.jpg`` (or ``20bn-jester-v1/<id>/``); masks ``masks/<id>/00001.png``
    are used when present (the synthetic benchmark writes them)."""
    root = Path(root)
    _check_split(name, split)
    ann = _resolve(root, annotation_file, root / JESTER_FILES[split])
    classes = read_label_lines(_resolve(root, labels_file, root / "jester-v1-labels.csv"))
    index = {c: i for i, c in enumerate(classes)}
    fdir = _resolve(root, frames_dir, _first_dir(root / "frames", root / "20bn-jester-v1"))
    mdir = _resolve(root, masks_dir, root / "masks")
    use_masks = mdir.is_dir()
    errs = AnnotationErrors(skip_corrupt, f"{name} {ann}")
    records = []
    for lineno, line in _read_lines(ann, "annotation file"):
        parts = line.split(";")
        vid = parts[0].strip()
        if not vid or len(parts) > 2 or (split != "test" and len(parts) != 2):
            errs(ValueError(f"malformed line in {ann}, line {lineno}: {line!r}; expected 'id;label text'"))
            continue
        label = -1
        if len(parts) == 2:
            text = parts[1].strip()
            if text not in index:
                errs(ValueError(f"unknown label in {ann}, line {lineno}: {text!r} is not in the labels file"))
                continue
            label = index[text]
        records.append(VideoRecord(
            id=vid, label=label, frames_dir=fdir / vid, template=frame_template,
            masks_dir=(mdir / vid) if use_masks else None, mask_template=mask_template,
            source=f"{ann}:{lineno}",
        ))  # fmt: skip
    errs.summary()
    return VideoDataset(records, classes, num_segments, split=split, skip_corrupt=skip_corrupt,
                        name=name, source=str(ann), **kw)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Something-Something V2

SSV2_FILES = {
    "train": "something-something-v2-train.json",
    "val": "something-something-v2-validation.json",
    "test": "something-something-v2-test.json",
}


def _ssv2_classes(path: Path) -> list[str]:
    data = _load_json(path, "labels file")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"labels file {path}: expected a non-empty JSON object {{template: class index}}")
    n = len(data)
    classes: list[str | None] = [None] * n
    for text, idx in data.items():
        try:
            i = int(idx)
        except (TypeError, ValueError):
            raise ValueError(f"labels file {path}: class index {idx!r} of {text!r} is not an integer") from None
        if not 0 <= i < n:
            raise ValueError(f"labels file {path}: class index {i} of {text!r} out of range [0, {n - 1}]")
        if classes[i] is not None:
            raise ValueError(f"labels file {path}: class index {i} given to both {classes[i]!r} and {text!r}")
        classes[i] = text
    return classes  # type: ignore[return-value]


def ssv2(
    root,
    split: str,
    num_segments: int = 8,
    *,
    annotation_file=None,
    labels_file=None,
    frames_dir=None,
    videos_dir=None,
    frame_template: str = "{:06d}.jpg",
    video_ext: str = ".webm",
    skip_corrupt: bool = False,
    **kw,
) -> VideoDataset:
    """Something-Something V2: ``something-something-v2-{train,validation,test}.json`` and
    ``something-something-v2-labels.json`` at ``root``; frames ``frames/<id>/000001.jpg``; when a
    video's frame folder is absent, ``<id>.webm`` in ``videos_dir`` (default: the first existing of
    ``20bn-something-something-v2/``, ``videos/``, ``root``) is decoded directly with PyAV.
    A class is found by stripping ``[`` and ``]`` from an entry's ``template``; test entries
    (ids only) get label -1."""
    root = Path(root)
    _check_split("ssv2", split)
    ann = _resolve(root, annotation_file, root / SSV2_FILES[split])
    classes = _ssv2_classes(_resolve(root, labels_file, root / "something-something-v2-labels.json"))
    index = {c: i for i, c in enumerate(classes)}
    fdir = _resolve(root, frames_dir, _first_dir(root / "frames", root / "20bn-something-something-v2-frames"))
    vdir = _resolve(root, videos_dir, _first_dir(root / "20bn-something-something-v2", root / "videos", root))
    entries = _load_json(ann, "annotation file")
    if not isinstance(entries, list):
        raise ValueError(f"annotation file {ann}: expected a JSON list of objects, got {type(entries).__name__}")
    if not entries:
        raise ValueError(f"empty annotation file {ann}: expected at least one entry")
    errs = AnnotationErrors(skip_corrupt, f"ssv2 {ann}")
    records = []
    for k, e in enumerate(entries):
        where = f"{ann}, entry {k + 1}"
        if not isinstance(e, dict) or "id" not in e or (split != "test" and "template" not in e):
            need = "'id'" if split == "test" else "'id' and 'template'"
            errs(ValueError(f"malformed entry in {where}: {str(e)[:120]!r}; expected an object with {need}"))
            continue
        vid = str(e["id"]).strip()
        label = -1
        if "template" in e:
            text = str(e["template"]).replace("[", "").replace("]", "")
            if text not in index:
                if split == "test":
                    text = None
                else:
                    errs(ValueError(f"unknown label in {where} (id {vid}): template {e['template']!r} -> "
                                    f"{text!r} is not in the labels file"))  # fmt: skip
                    continue
            label = index[text] if text is not None else -1
        records.append(VideoRecord(
            id=vid, label=label, frames_dir=fdir / vid, template=frame_template,
            video_path=vdir / f"{vid}{video_ext}", source=where,
        ))  # fmt: skip
    errs.summary()
    return VideoDataset(records, classes, num_segments, split=split, skip_corrupt=skip_corrupt,
                        name="ssv2", source=str(ann), **kw)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# EgoGesture

EGOGESTURE_SUBJECTS = {
    "train": (3, 4, 5, 6, 8, 10, 15, 16, 17, 20, 21, 22, 23, 25, 26, 27, 30, 32, 36, 38, 39, 40, 42, 43, 44,
              45, 46, 48, 49, 50),
    "val": (1, 7, 12, 13, 24, 29, 33, 34, 35, 37),
    "test": (2, 9, 11, 14, 18, 19, 28, 31, 41, 47),
}  # fmt: skip
EGOGESTURE_SUBJECTS["trainval"] = tuple(sorted(EGOGESTURE_SUBJECTS["train"] + EGOGESTURE_SUBJECTS["val"]))
_GROUP_RE = re.compile(r"^[Gg]roup(\d+)\.csv$")
_SCENE_RE = re.compile(r"^Scene(\d+)$")


def egogesture(
    root,
    split: str,
    num_segments: int = 8,
    *,
    subjects: Sequence[int] | None = None,
    labels_dir=None,
    frames_dir=None,
    frame_template: str = "{:06d}.jpg",
    num_classes: int = 83,
    classes: Sequence[str] | None = None,
    skip_corrupt: bool = False,
    **kw,
) -> VideoDataset:
    """EgoGesture: ``labels-final-revised1/SubjectXX/SceneY/GroupZ.csv`` (or ``groupZ.csv``), rows
    ``class, start, end`` (1-based class 1..83, inclusive 1-based frame numbers; rows with an
    empty start are skipped); frames ``frames/SubjectXX/SceneY/Color/rgbZ/000001.jpg``. One item
    per annotated gesture. ``split`` "train", "val", "test" or "trainval" selects the release's
    subjects (``subjects=`` overrides). Labels are 0-based (class c -> c - 1); class names
    default to "1" .. "83"."""
    root = Path(root)
    _check_split("egogesture", split, (*SPLITS, "trainval"))
    subs = EGOGESTURE_SUBJECTS[split] if subjects is None else tuple(int(s) for s in subjects)
    ldir = _resolve(root, labels_dir, root / "labels-final-revised1")
    fdir = _resolve(root, frames_dir, root / "frames")
    if not ldir.is_dir():
        raise FileNotFoundError(f"missing EgoGesture labels folder {ldir} (expected SubjectXX/SceneY/GroupZ.csv)")
    class_list = list(classes) if classes is not None else [str(i) for i in range(1, num_classes + 1)]
    if len(class_list) != num_classes:
        raise ValueError(f"egogesture: {len(class_list)} class names given for num_classes={num_classes}")
    errs = AnnotationErrors(skip_corrupt, f"egogesture {ldir}")
    records = []
    for sub in subs:
        sdir = ldir / f"Subject{sub:02d}"
        if not sdir.is_dir():
            continue
        scenes = sorted((int(m.group(1)), d) for d in sdir.iterdir() if (m := _SCENE_RE.match(d.name)) and d.is_dir())
        for scene, scdir in scenes:
            groups = sorted((int(m.group(1)), f) for f in scdir.iterdir() if (m := _GROUP_RE.match(f.name)))
            for group, gfile in groups:
                rows = _read_lines(gfile, "annotation file")
                vdir = fdir / sdir.name / scdir.name / "Color" / f"rgb{group}"
                for lineno, line in rows:
                    cells = [c.strip() for c in line.split(",")]
                    if len(cells) >= 2 and cells[1] == "":
                        continue  # the release skips rows with an empty start
                    where = f"{gfile}, line {lineno}"
                    try:
                        if len(cells) < 3:
                            raise ValueError
                        cls, start, end = int(cells[0]), int(cells[1]), int(cells[2])
                    except ValueError:
                        errs(ValueError(f"malformed line in {where}: {line!r}; expected 'class, start frame, "
                                        f"end frame' with integers"))  # fmt: skip
                        continue
                    if not 1 <= cls <= num_classes:
                        errs(ValueError(f"class index out of range in {where}: {cls} (allowed 1..{num_classes})"))
                        continue
                    if start < 1 or end < start:
                        errs(ValueError(f"malformed line in {where}: frames {start}..{end}; expected "
                                        f"1 <= start <= end"))  # fmt: skip
                        continue
                    records.append(VideoRecord(
                        id=f"Subject{sub:02d}/Scene{scene}/rgb{group}/{start}-{end}", label=cls - 1,
                        frames_dir=vdir, template=frame_template, num_frames=end - start + 1, start=start,
                        source=where,
                    ))  # fmt: skip
    errs.summary()
    if not records:
        raise ValueError(f"egogesture: no annotations for subjects {list(subs)} under {ldir}")
    return VideoDataset(records, class_list, num_segments, split=split, skip_corrupt=skip_corrupt,
                        name="egogesture", source=str(ldir), **kw)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# frame list (TSM / mmaction2 rawframes) and video list

LIST_FILES = {"train": "train_videofolder.txt", "val": "val_videofolder.txt", "test": "test_videofolder.txt"}
VIDEO_LIST_FILES = {"train": "train_videos.txt", "val": "val_videos.txt", "test": "test_videos.txt"}
FRAME_TEMPLATES = ("img_{:05d}.jpg", "{:05d}.jpg", "{:06d}.jpg", "image_{:05d}.jpg", "frame_{:05d}.jpg")


def _list_classes(root: Path, classes_file, classes, num_classes):
    if classes is not None:
        return list(classes)
    path = _resolve(root, classes_file, root / "classes.txt")
    if classes_file is not None or path.is_file():
        return read_label_lines(path)
    if num_classes is not None:
        return [str(i) for i in range(num_classes)]
    return None


def _parse_label(text: str, where: str, num_classes: int | None, errs: AnnotationErrors) -> int | None:
    try:
        label = int(text)
    except ValueError:
        errs(ValueError(f"malformed line in {where}: label {text!r} is not an integer class index"))
        return None
    if label < 0 or (num_classes is not None and label >= num_classes):
        allowed = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        errs(ValueError(f"class index out of range in {where}: {label} (allowed {allowed})"))
        return None
    return label


def framelist(
    root,
    split: str,
    num_segments: int = 8,
    *,
    list_file=None,
    frames_dir=None,
    frame_template: str | None = None,
    start_index: int = 1,
    classes_file=None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    skip_corrupt: bool = False,
    **kw,
) -> VideoDataset:
    """Frame list (TSM / mmaction2 rawframes): lines ``relative/frame/dir num_frames label``
    (label absent for a test list -> -1) in ``list_file`` (default ``{train,val,test}_videofolder.txt``
    at ``root``); frame dirs relative to ``frames_dir`` (default ``root``). ``frame_template``
    None: guessed per dataset from the first video (``img_00001.jpg``, ``00001.jpg``,
    ``000001.jpg``, ...). Classes from ``classes`` / ``classes_file`` (default ``classes.txt`` if
    present) / ``num_classes``, else ``0 .. max label``."""
    root = Path(root)
    _check_split("framelist", split)
    lst = _resolve(root, list_file, root / LIST_FILES[split])
    fdir = _resolve(root, frames_dir, root)
    class_list = _list_classes(root, classes_file, classes, num_classes)
    ncls = len(class_list) if class_list is not None else None
    errs = AnnotationErrors(skip_corrupt, f"framelist {lst}")
    records = []
    for lineno, line in _read_lines(lst, "list file"):
        where = f"{lst}, line {lineno}"
        parts = line.split()
        if len(parts) < 2:
            errs(ValueError(f"malformed line in {where}: {line!r}; expected 'frame_dir num_frames label'"))
            continue
        try:
            n = int(parts[1])
            if n < 1:
                raise ValueError
        except ValueError:
            errs(ValueError(f"malformed line in {where}: num_frames {parts[1]!r} is not a positive integer"))
            continue
        label = -1
        if len(parts) >= 3:
            label = _parse_label(parts[2], where, ncls, errs)
            if label is None:
                continue
        elif split != "test":
            errs(ValueError(f"malformed line in {where}: {line!r}; expected 'frame_dir num_frames label'"))
            continue
        records.append(VideoRecord(id=parts[0], label=label, frames_dir=fdir / parts[0],
                                   template=frame_template or "", num_frames=n, start=start_index,
                                   source=where))  # fmt: skip
    errs.summary()
    if frame_template is None and records:
        tmpl = None
        for rec in records[:20]:
            tmpl = next((t for t in FRAME_TEMPLATES if (rec.frames_dir / t.format(start_index)).is_file()), None)
            if tmpl:
                break
        tmpl = tmpl or FRAME_TEMPLATES[0]
        for rec in records:
            rec.template = tmpl
    if class_list is None:
        class_list = [str(i) for i in range(max([r.label for r in records] + [0]) + 1)]
    return VideoDataset(records, class_list, num_segments, split=split, skip_corrupt=skip_corrupt,
                        name="framelist", source=str(lst), **kw)  # fmt: skip


def videolist(
    root,
    split: str,
    num_segments: int = 8,
    *,
    list_file=None,
    videos_dir=None,
    classes_file=None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    skip_corrupt: bool = False,
    **kw,
) -> VideoDataset:
    """Video list: lines ``path label`` (path relative to ``videos_dir``, default ``root``; it may
    contain spaces; label absent for a test list -> -1) in ``list_file`` (default
    ``{train,val,test}_videos.txt``); videos decoded with PyAV. Classes as for ``framelist``."""
    root = Path(root)
    _check_split("videolist", split)
    lst = _resolve(root, list_file, root / VIDEO_LIST_FILES[split])
    vdir = _resolve(root, videos_dir, root)
    class_list = _list_classes(root, classes_file, classes, num_classes)
    ncls = len(class_list) if class_list is not None else None
    errs = AnnotationErrors(skip_corrupt, f"videolist {lst}")
    records = []
    for lineno, line in _read_lines(lst, "list file"):
        where = f"{lst}, line {lineno}"
        parts = line.strip().rsplit(maxsplit=1)
        label = -1
        if len(parts) == 2 and (split != "test" or parts[1].lstrip("-").isdigit()):
            path, text = parts
            label = _parse_label(text, where, ncls, errs)
            if label is None:
                continue
        elif split == "test":
            path = line.strip()
        else:
            errs(ValueError(f"malformed line in {where}: {line!r}; expected 'path label'"))
            continue
        records.append(VideoRecord(id=path, label=label, video_path=vdir / path, source=where))
    errs.summary()
    if class_list is None:
        class_list = [str(i) for i in range(max([r.label for r in records] + [0]) + 1)]
    return VideoDataset(records, class_list, num_segments, split=split, skip_corrupt=skip_corrupt,
                        name="videolist", source=str(lst), **kw)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the synthetic benchmark


def synthetic(root, split: str, num_segments: int = 8, *, clips: int | None = None, frames: int | None = None,
              size: int | None = None, seed: int | None = None, num_classes: int | None = None,
              val_fraction: float | None = None, workers: int | None = None, progress: bool = True,
              **kw) -> VideoDataset:  # fmt: skip
    """The synthetic benchmark at ``root`` (generated there on first use), read as Jester."""
    from . import synthetic as syn

    _check_split("synthetic", split, ("train", "val"))
    params = {k: v for k, v in dict(clips=clips, frames=frames, size=size, seed=seed, num_classes=num_classes,
                                    val_fraction=val_fraction).items() if v is not None}  # fmt: skip
    if root is None:
        root = syn.default_root(**params)
    syn.ensure_synthetic(root, workers=workers, progress=progress, **params)
    return jester(root, split, num_segments, name="synthetic", **kw)


READERS: dict[str, Callable[..., VideoDataset]] = {
    "jester": jester, "synthetic": synthetic, "ssv2": ssv2, "egogesture": egogesture,
    "framelist": framelist, "videolist": videolist,
}  # fmt: skip


def build_dataset(name: str, root, split: str, num_segments: int = 8, *, transform: Callable | None = None,
                  **options) -> VideoDataset:  # fmt: skip
    """Build dataset ``name`` (see ``READERS``) of ``split`` from ``root``; see the package docstring."""
    key = name.lower().replace("-", "").replace("_", "")
    key = {"somethingsomethingv2": "ssv2", "sthv2": "ssv2", "somethingv2": "ssv2"}.get(key, key)
    if key not in READERS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(READERS))}")
    return READERS[key](root, split, num_segments, transform=transform, **options)
