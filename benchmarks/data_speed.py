"""Clip-loading speed: actionlib's pipeline vs a per-frame PIL pipeline like the authors' release.

Both read the same Jester-layout frames (short side 256, JPEG), sample 8 frames per clip
(TSN segments, random in training), apply the training augmentation (scale short side to 256,
TSN multi-scale crop with scales (1, .875, .75, .66) to 224) and normalise with ImageNet
mean/std, giving float tensors of 8 x 3 x 224 x 224 per clip. actionlib is measured twice: with
float clips from the dataset (``build_dataset(..., transform=build_transform(...))``), and as the
training engine loads (``fit``: uint8 clips from the loader, each batch normalised where it is
consumed by ``ClipNormalize``, as ``fit`` does; timed here in the consuming process, on the CPU,
where a batch gets memory of its own advised for huge pages). Measured through a DataLoader with
0 and 2 workers, batch 8, one torch thread per process, pipelines alternated, best of repeats;
384 timed clips per measurement (shorter runs are dominated by worker start-up and prefetching).
actionlib runs its default path: the crop is drawn first and only that box of each JPEG is
decoded (libjpeg-turbo region decoder, compiled on first use); ``ACTIONLIB_NO_CPP=1`` measures
the whole-frame path instead. The first line of output says which one ran.

    .venv/bin/python benchmarks/data_speed.py [--videos 24 --frames 32 --clips 384 --repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from actionlib.data import ClipNormalize, build_dataset, build_transform
from actionlib.data.io import can_decode_regions
from actionlib.data.sampling import sample_indices

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# --- the authors' pipeline (TSN/TSM transforms.py as used by the ACTION-Net release) ---------
class GroupScale:
    def __init__(self, size):
        import torchvision

        self.worker = torchvision.transforms.Resize(size, interpolation=torchvision.transforms.InterpolationMode.BILINEAR)

    def __call__(self, group):
        return [self.worker(img) for img in group]


class GroupMultiScaleCrop:
    def __init__(self, input_size, scales=(1, 0.875, 0.75, 0.66), max_distort=1, fix_crop=True, more_fix_crop=True):
        self.input_size = (input_size, input_size)
        self.scales, self.max_distort = scales, max_distort
        self.fix_crop, self.more_fix_crop = fix_crop, more_fix_crop

    def __call__(self, group):
        w, h = group[0].size
        cw, ch, ow, oh = self._sample_crop_size((w, h))
        crops = [img.crop((ow, oh, ow + cw, oh + ch)) for img in group]
        return [img.resize(self.input_size, Image.BILINEAR) for img in crops]

    def _sample_crop_size(self, im_size):
        image_w, image_h = im_size
        base = min(image_w, image_h)
        crop_sizes = [int(base * x) for x in self.scales]
        crop_h = [self.input_size[1] if abs(x - self.input_size[1]) < 3 else x for x in crop_sizes]
        crop_w = [self.input_size[0] if abs(x - self.input_size[0]) < 3 else x for x in crop_sizes]
        pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w) if abs(i - j) <= self.max_distort]
        cw, ch = random.choice(pairs)
        w_step, h_step = (image_w - cw) // 4, (image_h - ch) // 4
        ret = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step)]
        if self.more_fix_crop:
            ret += [(0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 4 * h_step), (2 * w_step, 0),
                    (w_step, h_step), (3 * w_step, h_step), (w_step, 3 * h_step), (3 * w_step, 3 * h_step)]  # fmt: skip
        ow, oh = random.choice(ret)
        return cw, ch, ow, oh


class Stack:
    def __call__(self, group):
        return np.concatenate([np.array(x) for x in group], axis=2)


class ToTorchFormatTensor:
    def __call__(self, pic):
        return torch.from_numpy(pic).permute(2, 0, 1).contiguous().float().div(255)


class GroupNormalize:
    def __call__(self, tensor):
        rep_mean = MEAN * (tensor.size(0) // len(MEAN))
        rep_std = STD * (tensor.size(0) // len(STD))
        for t, m, s in zip(tensor, rep_mean, rep_std):
            t.sub_(m).div_(s)
        return tensor


class ReleaseDataset(Dataset):
    """Per-frame PIL loading as the release's TSNDataSet does (Image.open(...).convert('RGB'))."""

    def __init__(self, root: Path, num_segments: int = 8):
        import torchvision

        lines = (root / "jester-v1-train.csv").read_text().split()
        self.items = [line.split(";")[0] for line in lines]
        self.root, self.num_segments = root, num_segments
        self.n = {vid: len(list((root / "frames" / vid).glob("*.jpg"))) for vid in self.items}
        self.transform = torchvision.transforms.Compose(
            [GroupScale(256), GroupMultiScaleCrop(224), Stack(), ToTorchFormatTensor(), GroupNormalize()]
        )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        vid = self.items[i]
        idx = sample_indices(self.n[vid], self.num_segments, random=True)
        imgs = [Image.open(self.root / "frames" / vid / f"{k + 1:05d}.jpg").convert("RGB") for k in idx]
        return self.transform(imgs), 0


# --- data and measurement ------------------------------------------------------------------
def write_frames(root: Path, videos: int, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    for v in range(videos):
        d = root / "frames" / str(v + 1)
        d.mkdir()
        base = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).resize((340, 256), Image.BICUBIC)
        base = np.asarray(base).astype(np.int16)
        for f in range(frames):
            img = np.clip(np.roll(base, 3 * f, axis=1) + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{f + 1:05d}.jpg", quality=90)
    (root / "jester-v1-labels.csv").write_text("a\n")
    (root / "jester-v1-train.csv").write_text("".join(f"{v + 1};a\n" for v in range(videos)))


def _init_worker(_):
    torch.set_num_threads(1)


def _cpu_seconds() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # exited (joined) loader workers
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def clips_per_second(ds: Dataset, clips: int, workers: int, batch: int = 8, post=None) -> tuple[float, float]:
    """(clips per wall-clock second, clips per CPU-second of this process and its workers).

    The CPU figure includes worker start-up and the warm-up batch; it is the robust one on a
    machine shared with other jobs (wall-clock rates there depend on everyone else's load)."""
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=clips + batch)
    cpu0 = _cpu_seconds()
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                        worker_init_fn=_init_worker if workers else None)  # fmt: skip
    it = iter(loader)
    next(it)  # warm-up batch (worker start-up) not timed
    t0 = time.perf_counter()
    n = 0
    for x, _ in it:
        if post is not None:  # batch-side normalisation, timed in the consuming process
            x = post(x)
        n += len(x)
    wall = time.perf_counter() - t0
    assert x.shape[-2:] == (224, 224) and x.dtype == torch.float32
    del it, loader  # join the workers so that their CPU time is counted
    import gc

    gc.collect()
    return n / wall, (n + batch) / (_cpu_seconds() - cpu0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--clips", type=int, default=384, help="timed clips per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_frames(root, args.videos, args.frames)
        ours = build_dataset("jester", root, "train", 8, transform=build_transform(True, 224, scale_size=256))
        ours_u8 = build_dataset("jester", root, "train", 8,
                                transform=build_transform(True, 224, scale_size=256, normalize=False))  # fmt: skip
        norm = ClipNormalize("resnet50")
        ref = ReleaseDataset(root, 8)
        x_ours, x_ref = ours[0][0], ref[0][0]
        assert x_ours.shape == (8, 3, 224, 224) and x_ref.shape == (24, 224, 224)
        region = can_decode_regions(ours.frame_paths(0, [0]))
        print("actionlib decodes " + ("only the crop of each JPEG (libjpeg-turbo region decoder)" if region
                                      else "whole frames (torchvision; region decoder unavailable or disabled)"))
        print(f"frames 256x340 JPEG, 8 frames/clip, crop 224, batch 8, {args.clips} timed clips, best of {args.repeats}")
        print("clips/s (wall clock, best of repeats) and, in brackets, clips per CPU-second (median)")
        print("| loader workers | release-style PIL | actionlib, float clips | speed-up (wall / CPU) "
              "| actionlib as fit loads: uint8 clips, normalised per batch | speed-up (wall / CPU) |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        for w in args.workers:
            res: dict[str, list[tuple[float, float]]] = {"ref": [], "ours": [], "u8": []}
            for _ in range(args.repeats):
                res["ref"].append(clips_per_second(ref, args.clips, w))
                res["ours"].append(clips_per_second(ours, args.clips, w))
                res["u8"].append(clips_per_second(ours_u8, args.clips, w, post=norm))
            wall = {k: max(r[0] for r in v) for k, v in res.items()}
            cpu = {k: statistics.median(r[1] for r in v) for k, v in res.items()}
            cells = [f"{wall['ref']:.1f} ({cpu['ref']:.1f})"]
            for k in ("ours", "u8"):
                cells += [f"{wall[k]:.1f} ({cpu[k]:.1f})", f"{wall[k] / wall['ref']:.2f}x / {cpu[k] / cpu['ref']:.2f}x"]
            print(f"| {w} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
