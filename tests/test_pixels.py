"""Pixel-by-pixel tasks: torchvision's MNIST loader on an IDX fixture (no network), sklearn's digits offline."""

import pytest
import torch
from conftest import MNIST_FIXTURE, write_mnist_idx

import tasks


def make(name, **cfg):
    cls = tasks.get(name)
    return cls(cls.Config(**cfg))


def test_smnist_reads_a_local_idx_copy():
    task = make("smnist", root=str(MNIST_FIXTURE), download=False, n_val=8)
    s = task.splits
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 20)
    x, y = s.train.tensors
    assert x.shape == (32, 784, 1) and 0 <= x.min() and x.max() <= 1 and y.dtype == torch.long
    assert task.seq_len == 784 and task.baseline == 0.1


def test_smnist_permutation_is_fixed_and_only_reorders_pixels():
    plain = make("smnist", root=str(MNIST_FIXTURE), download=False, n_val=8).splits.test.tensors[0]
    perm = make("smnist", root=str(MNIST_FIXTURE), download=False, n_val=8, permute=True).splits.test.tensors[0]
    again = make("smnist", root=str(MNIST_FIXTURE), download=False, n_val=8, permute=True).splits.test.tensors[0]
    other = make("smnist", root=str(MNIST_FIXTURE), download=False, n_val=8, permute=True, perm_seed=1)
    assert torch.equal(perm, again) and not torch.equal(perm, plain)
    assert not torch.equal(perm, other.splits.test.tensors[0])
    torch.testing.assert_close(perm.sort(dim=1).values, plain.sort(dim=1).values)


def test_smnist_n_train_trims_the_training_set(tmp_path):
    root = write_mnist_idx(tmp_path, n_train=30, n_test=10)
    s = make("smnist", root=str(root), download=False, n_val=10, n_train=12).splits
    assert (len(s.train), len(s.val), len(s.test)) == (12, 10, 10)


def test_smnist_without_a_copy_names_where_the_files_go(tmp_path):
    with pytest.raises(RuntimeError, match=r"MNIST not found under .*MNIST/raw and task.download is false"):
        make("smnist", root=str(tmp_path), download=False).splits  # noqa: B018


def test_sdigits_is_offline_fixed_and_split():
    a, b = make("sdigits").splits, make("sdigits").splits
    assert (len(a.train), len(a.val), len(a.test)) == (1197, 300, 300)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert a.train.tensors[0].shape[1:] == (64, 1) and a.train.tensors[0].max() == 1.0
    assert set(a.test.tensors[1].tolist()) == set(range(10))
    perm = make("sdigits", permute=True).splits.train.tensors[0]
    torch.testing.assert_close(perm.sort(dim=1).values, a.train.tensors[0].sort(dim=1).values)
