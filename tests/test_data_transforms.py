import io

import pytest
import torch

from actionlib.data import ClipNormalize, build_transform, transforms
from actionlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, empty_cpu, multiscale_crop_box


def _ramp_clip(t=4, h=256, w=340):
    # every frame identical: a horizontal + vertical ramp, so crops of equal boxes are equal
    y = torch.arange(h).view(h, 1).expand(h, w)
    x = torch.arange(w).view(1, w).expand(h, w)
    img = torch.stack([(x * 255 // w), (y * 255 // h), ((x + y) % 256)]).to(torch.uint8)
    return img.unsqueeze(0).repeat(t, 1, 1, 1)


def test_train_shape_and_same_crop_for_all_frames():
    g = torch.Generator().manual_seed(0)
    tr = build_transform(True, size=224, generator=g)
    clip = _ramp_clip()
    outs = set()
    for _ in range(10):
        out = tr(clip)
        assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float32
        for k in range(1, 4):
            assert torch.equal(out[0], out[k])
        outs.add(round(float(out.sum()), 1))
    assert len(outs) > 1  # the crop does vary between calls


def test_multiclip_stack_same_crop():
    tr = build_transform(True, size=56, scale_size=64, generator=torch.Generator().manual_seed(3))
    clip = _ramp_clip(3, 64, 80).unsqueeze(0).repeat(2, 1, 1, 1, 1)
    out = tr(clip)
    assert out.shape == (2, 3, 3, 56, 56)
    assert torch.equal(out[0], out[1])


def test_multiscale_boxes_follow_tsn():
    g = torch.Generator().manual_seed(0)
    sizes, offsets = set(), set()
    for _ in range(500):
        left, top, cw, ch = multiscale_crop_box(340, 256, 224, generator=g)
        sizes.add((cw, ch))
        offsets.add((left, top))
        assert left + cw <= 340 and top + ch <= 256
    crops = [256, 224, 192, 168]
    expect = {(crops[j], crops[i]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert sizes == expect
    assert (0, 0) in offsets and (2 * ((340 - 224) // 4), 2 * ((256 - 224) // 4)) in offsets


def test_val_center_crop_and_imagenet_normalisation():
    val = build_transform(False, size=224, scale_size=256)
    clip = torch.full((2, 3, 256, 320), 200, dtype=torch.uint8)
    out = val(clip)
    assert out.shape == (2, 3, 224, 224)
    for c in range(3):
        expect = (200 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[:, c], torch.tensor(expect), atol=1e-4)
    # centre crop: the box is centred in the scaled frame
    top, left, h, w = val.crop_box(256, 320)
    assert (top, left, h, w) == (16, 48, 224, 224)
    # small frames: crop computed in the scaled frame, mapped back
    assert val.crop_box(128, 160) == (8, 24, 112, 112)


def test_bninception_bgr_0_255():
    tr = build_transform(False, size=32, backbone="bninception", scale_size=32)
    clip = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    clip[:, 0] = 250  # red
    clip[:, 2] = 10  # blue
    out = tr(clip)
    assert torch.allclose(out[0, 0], torch.tensor(10.0 - 104.0))  # B first
    assert torch.allclose(out[0, 1], torch.tensor(0.0 - 117.0))
    assert torch.allclose(out[0, 2], torch.tensor(250.0 - 128.0))


def test_resize_mode_masks_and_uint8():
    tr = build_transform(False, size=16, scale_size=None, test_crop="resize", normalize=False)
    clip = torch.randint(0, 255, (3, 3, 24, 40), dtype=torch.uint8)
    masks = torch.zeros(3, 24, 40, dtype=torch.bool)
    masks[:, :, :20] = True
    out, m = tr(clip, masks=masks)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 16, 16)
    assert m.dtype == torch.bool and m.shape == (3, 16, 16)
    assert m[:, :, :8].all() and not m[:, :, 8:].any()


def test_rejects_float_input():
    with pytest.raises(ValueError, match="uint8"):
        build_transform(False)(torch.zeros(2, 3, 8, 8))


def test_uint8_then_batch_normalise_equals_float_pipeline():
    clip = _ramp_clip(2, 64, 80)
    for backbone in ("resnet50", "bninception"):
        f = build_transform(False, size=48, backbone=backbone, scale_size=56)(clip)
        u = build_transform(False, size=48, backbone=backbone, scale_size=56, normalize=False)(clip)
        assert u.dtype == torch.uint8
        assert u.is_contiguous() and torch.equal(ClipNormalize(backbone)(u.unsqueeze(0))[0], f)


@pytest.mark.parametrize("no_cpp", [False, True])
def test_clip_normalize_bit_exact_for_any_layout_and_size(monkeypatch, no_cpp):
    """x.float() * a - b exactly, for plain and channels-last frames, clips and batches; batches
    past FRESH_MAPPING_BYTES (lowered here) get their own huge-page mapping, same numbers."""
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "1" if no_cpp else "0")  # planar_frames: kernel or torch
    monkeypatch.setattr(transforms, "FRESH_MAPPING_BYTES", 1 << 20)
    g = torch.Generator().manual_seed(0)
    for backbone in ("resnet50", "bninception"):
        norm = ClipNormalize(backbone)
        for shape in [(3, 9, 11), (4, 3, 40, 48), (2, 4, 3, 96, 128)]:  # the last: 1.2 MB of float
            x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
            expect = x.float()
            if norm.bgr:
                expect = expect.flip(-3)
            expect = expect.mul_(norm._a).sub_(norm._b)
            channels_last = x.movedim(-3, -1).contiguous().movedim(-1, -3)
            for inp in (x, channels_last):
                y = norm(inp)
                assert y.dtype == torch.float32 and y.is_contiguous() and torch.equal(y, expect)
    a, b = norm(x), norm(x)
    a.zero_()
    assert torch.equal(b, expect)  # each call returns its own memory


def test_empty_cpu_large_buffers(monkeypatch):
    monkeypatch.setattr(transforms, "FRESH_MAPPING_BYTES", 1 << 20)
    small, big = empty_cpu((100, 3), torch.float32), empty_cpu((3, 1000, 1000), torch.float32)
    assert small.shape == (100, 3) and big.shape == (3, 1000, 1000)
    assert big.dtype == torch.float32 and big.is_contiguous() and not big.is_shared()
    big.fill_(2.5)
    import gc

    gc.collect()  # the tensor keeps its mapping alive
    assert float(big.sum()) == 2.5 * 3e6
    buf = io.BytesIO()
    torch.save(big, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf), big)
    copy = big.clone()
    assert big.share_memory_().is_shared() and torch.equal(big, copy)  # as a loader worker would send it
