"""Region decoding of JPEG frames (libjpeg-turbo, ``actionlib.data._jpeg``): the pixels of a full
decode, the same clips as the full-decode path, and errors that name the file."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from actionlib.data import _jpeg, build_dataset, build_transform
from actionlib.data.io import can_decode_regions, decode_frame, read_frames
from data_fixtures import write_jester


@pytest.fixture
def ext():
    if not _jpeg.available():
        pytest.skip("the JPEG region decoder cannot be built here (no C++ compiler or libjpeg headers)")
    return _jpeg


def _textured(h, w, seed=0):
    """A smooth colour image plus noise (uint8 (h, w, 3)): every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8))
    base = np.asarray(base.resize((w, h), Image.BICUBIC)).astype(np.int16)
    return np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg_bytes(img, mode="RGB", **save):
    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, "JPEG", quality=90, **save)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


KINDS = {
    "4:2:0": ("RGB", {"subsampling": 2}),
    "4:2:2": ("RGB", {"subsampling": 1}),
    "4:4:4": ("RGB", {"subsampling": 0}),
    "gray": ("L", {}),
    "progressive 4:2:0": ("RGB", {"subsampling": 2, "progressive": True}),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("size", [(64, 86), (37, 53)])  # multiples of 8, and odd sizes (partial iMCUs)
def test_region_equals_full_decode(ext, kind, size):
    mode, save = KINDS[kind]
    h, w = size
    data = _jpeg_bytes(_textured(h, w), mode, **save)
    full = decode_frame(data, "frame.jpg").permute(1, 2, 0)  # full decode (torchvision), (H, W, 3)
    assert ext.jpeg_header(data) == (h, w, True)
    rng = np.random.default_rng(1)
    boxes = [(0, 0, h, w), (0, 0, 1, 1), (h - 1, w - 1, 1, 1), (0, w - 1, h, 1), (h - 1, 0, 1, w),
             (1, 1, h - 2, w - 2), (7, 15, 9, 17), (8, 16, 16, 32), (3, 17, h - 3, w - 17)]  # fmt: skip
    for _ in range(60):
        bh, bw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        boxes.append((int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw))
    for top, left, bh, bw in boxes:
        got = ext.decode_jpeg_region(data, top, left, bh, bw)
        assert got.shape == (bh, bw, 3)
        assert torch.equal(got, full[top : top + bh, left : left + bw]), (kind, size, (top, left, bh, bw))


def test_region_decoder_rejects_and_declines(ext):
    data = _jpeg_bytes(_textured(16, 24))
    with pytest.raises(ValueError, match="box outside"):
        ext.decode_jpeg_region(data, 8, 0, 9, 4)  # rows 8..16 of a 16-row image
    garbage = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0 not a jpeg"), dtype=torch.uint8)
    with pytest.raises(RuntimeError):
        ext.jpeg_header(garbage)
    with pytest.raises(RuntimeError):
        ext.decode_jpeg_region(garbage, 0, 0, 1, 1)
    truncated = data[: data.numel() // 2].clone()
    with pytest.raises(RuntimeError, match="truncated"):
        ext.decode_jpeg_region(truncated, 0, 0, 16, 24)
    cmyk = _jpeg_bytes(_textured(16, 24), "CMYK")
    assert ext.jpeg_header(cmyk) == (16, 24, False)  # decoded whole by torchvision instead


def _write_video(folder, n, size=(64, 86), seed=0, mode="RGB", **save):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        Image.fromarray(_textured(*size, seed=seed + k)).convert(mode).save(folder / f"{k:05d}.jpg", quality=90, **save)


def _textured_jester(root):
    write_jester(root, n_frames=(12, 5, 3))  # annotation files; frames replaced below
    for vid, n, mode in (("100", 12, "RGB"), ("101", 5, "L"), ("102", 3, "RGB")):
        _write_video(root / "frames" / vid, n, seed=int(vid), mode=mode)


def _clips(root, monkeypatch, no_cpp, train, **kw):
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "1" if no_cpp else "0")
    tr = build_transform(train, generator=torch.Generator().manual_seed(7), **kw)
    ds = build_dataset("jester", root, "train", num_segments=4, transform=tr, random_sampling=train,
                       num_clips=1 if train else 2)  # fmt: skip
    assert can_decode_regions(ds.frame_paths(0, [0])) == (not no_cpp and _jpeg.kernels() is not None)
    torch.manual_seed(0)  # the frame sampling draws from the global generator
    return [ds[i][0] for _ in range(4) for i in range(len(ds))]


@pytest.mark.parametrize("train,kw", [
    (True, dict(size=56, scale_size=64)),
    (True, dict(size=48, scale_size=64, normalize=False)),
    (False, dict(size=56, scale_size=64)),
    (False, dict(size=72, scale_size=64, normalize=False)),  # centre crop larger than the frame: padded
    (False, dict(size=40, scale_size=None, test_crop="resize")),
])  # fmt: skip
def test_dataset_same_clips_with_and_without_region_decoding(ext, tmp_path, monkeypatch, train, kw):
    _textured_jester(tmp_path)
    fast = _clips(tmp_path, monkeypatch, False, train, **kw)
    slow = _clips(tmp_path, monkeypatch, True, train, **kw)
    assert len(fast) == len(slow) == 12
    for a, b in zip(fast, slow):
        assert a.shape == b.shape and torch.equal(a, b) and a.is_contiguous() and b.is_contiguous()
    # and the same as get()'s clip, which transforms whole decoded frames
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "0")
    tr = build_transform(train, generator=torch.Generator().manual_seed(3), **kw)
    ds = build_dataset("jester", tmp_path, "train", num_segments=4, transform=tr, random_sampling=train)
    torch.manual_seed(1)
    via_getitem = ds[0][0]
    tr.generator.manual_seed(3)
    torch.manual_seed(1)
    assert torch.equal(via_getitem, ds.get(0)["clip"])


def test_planar_frames_equals_contiguous(ext):
    g = torch.Generator().manual_seed(0)
    cl = torch.randint(0, 256, (5, 37, 53, 3), dtype=torch.uint8, generator=g).permute(0, 3, 1, 2)
    cases = [cl, cl[1:4], cl.contiguous(), cl[:, :, 2:30, 5:40], cl[:1, :, :1, :1], cl[:, :2],
             cl.float(), cl[0]]  # fmt: skip
    for x in cases:  # channels-last uint8 frames go through the kernel, the rest through torch
        y = ext.planar_frames(x)
        assert y.is_contiguous() and y.dtype == x.dtype and torch.equal(y, x)
    y = ext.planar_frames(cl)
    y[0, 0, 0, 0] += 1  # a copy, not a view
    assert not torch.equal(y, cl)


def test_read_frames_region(tmp_path, monkeypatch):  # region decoder, or whole frames cropped
    _write_video(tmp_path / "v", 3)
    paths = [tmp_path / "v" / f"{k:05d}.jpg" for k in (1, 3, 3, 2)]  # a repeated frame
    full = read_frames(paths)
    for box in [(5, 9, 40, 51), (0, 0, 64, 86), (63, 85, 1, 1)]:
        top, left, h, w = box
        want = full[..., top : top + h, left : left + w]
        got = read_frames(paths, region=box)
        assert got.shape == (4, 3, h, w) and torch.equal(got, want)
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "1")
        assert torch.equal(read_frames(paths, region=box), want)
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "0")
    with pytest.raises(ValueError, match=r"region .* does not lie inside frame .*00001\.jpg"):
        read_frames(paths, region=(0, 0, 65, 10))
    # a CMYK frame is decoded whole by torchvision and cropped
    Image.fromarray(_textured(64, 86, seed=2)).convert("CMYK").save(tmp_path / "v" / "00002.jpg", quality=90)
    cmyk_full = read_frames(paths)
    assert torch.equal(read_frames(paths, region=(5, 9, 40, 51)), cmyk_full[..., 5:45, 9:60])


def test_read_frames_region_size_mismatch(tmp_path):
    _write_video(tmp_path / "v", 2)
    Image.fromarray(_textured(48, 86)).save(tmp_path / "v" / "00002.jpg", quality=90)
    paths = [tmp_path / "v" / "00001.jpg", tmp_path / "v" / "00002.jpg"]
    for box in [(0, 0, 10, 10), (40, 0, 20, 10)]:  # box inside / outside the smaller frame
        with pytest.raises(ValueError, match=r"frame .*00002\.jpg has size \(48, 86\) but .*00001\.jpg has \(64, 86\)"):
            read_frames(paths, region=box)


@pytest.mark.parametrize("which", ["00001.jpg", "00006.jpg"])  # header read first / region decode
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_frame_named_through_dataset(ext, tmp_path, which, damage):
    _textured_jester(tmp_path)
    bad = tmp_path / "frames" / "100" / which
    if damage == "garbage":
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    else:
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 3])  # cut inside the rows of the centre crop
    tr = build_transform(False, size=56, scale_size=64)
    ds = build_dataset("jester", tmp_path, "train", num_segments=12, transform=tr, random_sampling=False)
    with pytest.raises(ValueError, match=rf"corrupt frame .*100/{which}"):
        ds[0]
