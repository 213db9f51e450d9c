import numpy as np
import pytest
import torch

from actionlib.data import sample_indices


def test_val_middle_of_segments():
    assert sample_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    # TSM's int(tick / 2 + tick * i)
    n, t = 37, 8
    tick = n / t
    assert sample_indices(n, t).tolist() == [int(tick / 2 + tick * i) for i in range(t)]


def test_train_random_inside_segments():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        idx = sample_indices(40, 8, random=True, generator=g)
        assert idx.shape == (8,)
        for i, f in enumerate(idx):
            assert 5 * i <= f < 5 * (i + 1)
        seen.update(idx.tolist())
    assert seen == set(range(40))  # every frame reachable


def test_short_video_spread_with_repetition():
    for rnd in (False, True):
        idx = sample_indices(3, 8, random=rnd, generator=torch.Generator().manual_seed(1))
        assert sorted(set(idx.tolist())) == [0, 1, 2]
        assert np.all(np.diff(idx) >= 0)
    assert sample_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_multi_clip_offsets():
    idx = sample_indices(32, 8, num_clips=2)
    assert idx.shape == (2, 8)
    assert idx[0].tolist() == [1, 5, 9, 13, 17, 21, 25, 29]
    assert idx[1].tolist() == [3, 7, 11, 15, 19, 23, 27, 31]
    assert sample_indices(32, 8, num_clips=2, clip_index=1).tolist() == idx[1].tolist()
    assert sample_indices(32, 8, num_clips=1).tolist() == sample_indices(32, 8).tolist()


def test_bad_arguments():
    with pytest.raises(ValueError, match="0 frames"):
        sample_indices(0, 8)
    with pytest.raises(ValueError, match="clip_index"):
        sample_indices(10, 8, num_clips=2, clip_index=2)
