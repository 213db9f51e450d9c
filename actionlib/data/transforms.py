"""Clip transforms on uint8 ``(..., 3, H, W)`` tensors: one crop for every frame of a clip.

Geometry follows the authors' release (TSN's ``GroupScale`` + ``GroupMultiScaleCrop`` for
training, ``GroupScale`` + ``GroupCenterCrop`` for testing), but the crop box is computed in the
coordinates of the scaled frame and mapped back to the decoded frame, so each frame is cropped
first and resized once (``torchvision.transforms.v2.functional.resized_crop``, bilinear with
antialias, on uint8). Conversion to float happens only in the final normalisation.
No horizontal flip (the classes are direction-sensitive).
"""

from __future__ import annotations

import functools
import mmap
from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ._jpeg import planar_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BNINCEPTION_MEAN_BGR = (104.0, 117.0, 128.0)
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)
HUGE_PAGE_BYTES = 2 << 20
# glibc's largest mmap threshold: a buffer this big is a fresh mapping at every allocation
FRESH_MAPPING_BYTES = 32 << 20


def is_bninception(backbone: str) -> bool:
    return backbone.lower().replace("_", "").replace("-", "") in ("bninception", "inception")


def _fix_offsets(more_fix_crop: bool, image_w: int, image_h: int, crop_w: int, crop_h: int):
    """TSN's ``GroupMultiScaleCrop.fill_fix_offset``: corner / centre (and 8 more) positions."""
    w_step = (image_w - crop_w) // 4
    h_step = (image_h - crop_h) // 4
    ret = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step)]
    if more_fix_crop:
        ret += [
            (0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 4 * h_step), (2 * w_step, 0),
            (1 * w_step, 1 * h_step), (3 * w_step, 1 * h_step), (1 * w_step, 3 * h_step),
            (3 * w_step, 3 * h_step),
        ]  # fmt: skip
    return ret


def multiscale_crop_box(
    image_w: int,
    image_h: int,
    size: int,
    scales: Sequence[float] = MULTISCALE_SCALES,
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """One draw of TSN's ``GroupMultiScaleCrop`` box: ``(left, top, crop_w, crop_h)``."""

    def randint(n: int) -> int:
        return int(torch.randint(n, (1,), generator=generator))

    base = min(image_w, image_h)
    crop_sizes = [int(base * s) for s in scales]
    crop_h = [size if abs(c - size) < 3 else c for c in crop_sizes]
    crop_w = [size if abs(c - size) < 3 else c for c in crop_sizes]
    pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w) if abs(i - j) <= max_distort]
    cw, ch = pairs[randint(len(pairs))]
    if fix_crop:
        offsets = _fix_offsets(more_fix_crop, image_w, image_h, cw, ch)
        left, top = offsets[randint(len(offsets))]
    else:
        left = randint(max(image_w - cw, 0) + 1)
        top = randint(max(image_h - ch, 0) + 1)
    return left, top, cw, ch


@functools.cache
def _huge_pages_advisable() -> bool:
    """True where private anonymous memory can be advised into transparent huge pages (Linux,
    with ``/sys/kernel/mm/transparent_hugepage/enabled`` not ``never``)."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def empty_cpu(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype)`` on the CPU; one of ``FRESH_MAPPING_BYTES`` or more lies
    in its own private mapping advised for transparent huge pages (where the kernel offers them).

    glibc maps such a buffer afresh at every allocation, and the first write to each 4 KiB page
    then costs a page fault: for a batch of 8 normalised 8 x 3 x 224 x 224 clips (38.5 MB), 9,400
    faults, 1.6 ms per clip on a 2-core VM, five times the arithmetic. With 2 MiB pages the same
    batch takes ~20 faults (0.6 ms per clip, arithmetic included). Only this buffer is advised
    (the process's allocator is left alone); the mapping is released when the tensor is freed.
    """
    shape = torch.Size(shape)
    nbytes = shape.numel() * dtype.itemsize
    if nbytes < FRESH_MAPPING_BYTES or not _huge_pages_advisable():
        return torch.empty(shape, dtype=dtype)
    # a whole number of huge pages: the kernel then aligns the mapping to a huge-page boundary
    buf = mmap.mmap(-1, -(-nbytes // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE)
    buf.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buf, dtype=dtype, count=shape.numel()).view(shape)


class ClipNormalize:
    """uint8 ``(..., 3, H, W)`` -> float32, normalised per backbone (see :func:`build_transform`).

    Lets a loader ship uint8 clips (4x less to copy between processes) and normalise whole
    batches where they are used: ``build_transform(..., normalize=False)`` in the dataset and
    ``ClipNormalize(backbone)(batch.to(device))`` in the training loop. The output is contiguous;
    on the CPU a large one (a batch) is allocated with :func:`empty_cpu` (huge pages).
    """

    def __init__(self, backbone: str = "resnet50"):
        self.backbone = backbone
        self.bgr = is_bninception(backbone)
        if self.bgr:
            mean, std, scale = BNINCEPTION_MEAN_BGR, (1.0, 1.0, 1.0), 1.0
        else:
            mean, std, scale = IMAGENET_MEAN, IMAGENET_STD, 1.0 / 255.0
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        # x * a - b == (x * scale - mean) / std
        self._a = (scale / self.std).view(3, 1, 1)
        self._b = (self.mean / self.std).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"ClipNormalize(backbone={self.backbone!r})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames, got {x.dtype}")
        if x.device.type == "cpu":
            # channels-last frames (a resize's output) to the plain layout first: the conversion
            # to float is then a plain loop (twice as fast as converting the strided frames)
            if x.dim() >= 3:
                x = planar_frames(x.reshape(-1, *x.shape[-3:])).view(x.shape)
            out = empty_cpu(x.shape, torch.float32)
        else:
            out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        out.copy_(x.flip(-3) if self.bgr else x)  # one conversion, then the affine in place
        a, b = self._a.to(x.device), self._b.to(x.device)
        return out.mul_(a).sub_(b)


class ClipTransform:
    """Callable ``(…, 3, H, W)`` uint8 -> float ``(…, 3, size, size)`` (same crop for all frames).

    Use :func:`build_transform` to make one. ``transform(clip, masks=m)`` also crops and resizes
    bool masks ``(…, H, W)`` with the same box (nearest neighbour) and returns ``(clip, masks)``.
    :class:`~actionlib.data.VideoDataset` draws the box first (:meth:`crop_box`, from the frame
    size in the first JPEG header), decodes only the box and passes it with ``box=(0, 0, h, w)``.
    """

    def __init__(
        self,
        train: bool,
        size: int = 224,
        backbone: str = "resnet50",
        scale_size: int | None = 256,
        scales: Sequence[float] = MULTISCALE_SCALES,
        max_distort: int = 1,
        fix_crop: bool = True,
        more_fix_crop: bool = True,
        test_crop: str = "center",
        normalize: bool = True,
        generator: torch.Generator | None = None,
    ):
        if test_crop not in ("center", "resize"):
            raise ValueError(f"test_crop must be 'center' or 'resize', got {test_crop!r}")
        if size < 1 or (scale_size is not None and scale_size < 1):
            raise ValueError(f"size and scale_size must be positive, got {size}, {scale_size}")
        self.train = bool(train)
        self.size = int(size)
        self.backbone = backbone
        self.scale_size = scale_size
        self.scales = tuple(scales)
        self.max_distort = max_distort
        self.fix_crop = fix_crop
        self.more_fix_crop = more_fix_crop
        self.test_crop = test_crop
        self.normalize = normalize
        self.generator = generator
        self.normalizer = ClipNormalize(backbone)
        self.bgr = self.normalizer.bgr
        self.mean, self.std = self.normalizer.mean, self.normalizer.std

    def __repr__(self) -> str:
        return (
            f"ClipTransform(train={self.train}, size={self.size}, backbone={self.backbone!r}, "
            f"scale_size={self.scale_size}, scales={self.scales}, test_crop={self.test_crop!r}, "
            f"normalize={self.normalize})"
        )

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Box ``(top, left, h, w)`` in the input frame's pixels (drawn at random when training)."""
        s = 1.0 if self.scale_size is None else self.scale_size / min(height, width)
        if self.scale_size is None:
            sw, sh = width, height
        elif width <= height:  # torchvision / PIL Resize(int): long side int(size * long / short)
            sw, sh = self.scale_size, int(self.scale_size * height / width)
        else:
            sw, sh = int(self.scale_size * width / height), self.scale_size
        if self.train:
            left, top, cw, ch = multiscale_crop_box(
                sw, sh, self.size, self.scales, self.max_distort, self.fix_crop, self.more_fix_crop,
                self.generator,
            )  # fmt: skip
        elif self.test_crop == "resize":
            return 0, 0, height, width
        else:
            cw = ch = self.size
            left = int(round((sw - cw) / 2.0))
            top = int(round((sh - ch) / 2.0))
        # map the box of the scaled frame back to the input frame
        top_i, left_i = int(round(top / s)), int(round(left / s))
        h_i = max(1, min(int(round(ch / s)), height - max(top_i, 0)))
        w_i = max(1, min(int(round(cw / s)), width - max(left_i, 0)))
        return top_i, left_i, h_i, w_i

    def __call__(
        self, clip: torch.Tensor, masks: torch.Tensor | None = None, *, box: tuple[int, int, int, int] | None = None
    ):
        """Crop, resize and normalise ``clip``; ``box=(top, left, h, w)`` overrides the crop
        (default ``self.crop_box(H, W)``): a clip decoded as the box alone (see
        ``VideoDataset.load_clip``) is passed with ``box=(0, 0, H, W)``."""
        if clip.dim() < 3 or clip.shape[-3] != 3:
            raise ValueError(f"expected a clip of shape (..., 3, H, W), got {tuple(clip.shape)}")
        if clip.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 clip, got {clip.dtype}")
        lead = clip.shape[:-3]
        h, w = clip.shape[-2:]
        top, left, bh, bw = self.crop_box(h, w) if box is None else box
        x = clip.reshape(-1, 3, h, w)
        x = TF.resized_crop(x, top, left, bh, bw, [self.size, self.size], antialias=True)
        if self.normalize:
            x = self.normalizer(x)
        else:
            x = planar_frames(x)  # the resize's channels-last output -> plain layout, fast
        x = x.reshape(*lead, 3, self.size, self.size)
        if masks is None:
            return x
        m = masks.reshape(-1, 1, h, w).to(torch.uint8)
        m = TF.resized_crop(m, top, left, bh, bw, [self.size, self.size], interpolation=InterpolationMode.NEAREST)
        return x, m.reshape(*masks.shape[:-2], self.size, self.size).bool()


def build_transform(
    train: bool,
    size: int = 224,
    backbone: str = "resnet50",
    scale_size: int | None = 256,
    *,
    scales: Sequence[float] = MULTISCALE_SCALES,
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
    test_crop: str = "center",
    normalize: bool = True,
    generator: torch.Generator | None = None,
) -> ClipTransform:
    """The clip transform of spec section 5.

    - ``train=True``: scale the short side to ``scale_size`` (None: keep), TSN multi-scale
      corner/centre crop with ``scales`` (1, .875, .75, .66), resize to ``size`` x ``size``.
    - ``train=False``: short side to ``scale_size``, centre crop ``size`` (``test_crop="resize"``:
      resize the whole frame to ``size`` x ``size``, as the release does for EgoGesture).
    - Normalisation per backbone: ImageNet mean/std on [0, 1]; BN-Inception (``"bninception"``):
      BGR order, [0, 255], minus (104, 117, 128), std 1. ``normalize=False`` returns uint8.

    The returned callable maps uint8 ``(T, 3, H, W)`` (or ``(K, T, 3, H, W)``) to float32
    ``(T, 3, size, size)``; every frame (and every clip of a K-clip stack) gets the same crop.
    """
    return ClipTransform(
        train, size, backbone, scale_size, scales, max_distort, fix_crop, more_fix_crop, test_crop,
        normalize, generator,
    )  # fmt: skip
