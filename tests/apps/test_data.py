"""The data loaders of ``rectifiers compare``: digits, CIFAR-10 python batches, image folders."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from rectifiers.cli import main
from rectifiers.data import DataError, load_data

PIL = pytest.importorskip("PIL.Image")


# ---------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_stratified_and_standardised() -> None:
    a = load_data("digits")
    b = load_data("digits")
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train_y) + len(a.test_y) == 1797
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.train_x.dtype == torch.float32 and a.train_y.dtype == torch.int64
    # Standardised with the training split's statistics.
    assert abs(float(a.train_x.mean())) < 1e-4
    assert abs(float(a.train_x.std()) - 1) < 1e-2
    # Every class in both splits, in roughly the same proportion.
    tr = torch.bincount(a.train_y, minlength=10).double() / len(a.train_y)
    te = torch.bincount(a.test_y, minlength=10).double() / len(a.test_y)
    assert (te > 0).all() and (tr - te).abs().max() < 0.02


def test_digits_limit_keeps_a_fixed_mixed_subset() -> None:
    full = load_data("digits")
    small = load_data("digits", limit=100)
    again = load_data("digits", limit=100)
    assert len(small.train_y) == 100 and len(small.test_y) == 100
    assert torch.equal(small.train_x, again.train_x) and torch.equal(small.test_y, again.test_y)
    assert not torch.equal(small.train_y, full.train_y[:100])  # not a prefix
    assert len(torch.unique(small.train_y)) == 10 and len(torch.unique(small.test_y)) == 10
    # A subset, in the original order: each limited label sequence is a subsequence of the full one.
    it = iter(full.train_y.tolist())
    assert all(any(v == w for w in it) for v in small.train_y.tolist())


# ---------------------------------------------------------------------------- CIFAR-10


def _write_batch(path: str, n: int, seed: int, **override: object) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    d: dict[bytes, object] = {b"data": data, b"labels": labels, b"batch_label": b"test"}
    d.update({k.encode(): v for k, v in override.items()})
    with open(path, "wb") as f:
        pickle.dump(d, f)
    return data, np.asarray(labels)


@pytest.fixture()
def cifar_dir(tmp_path):  # type: ignore[no-untyped-def]
    raw = [_write_batch(str(tmp_path / f"data_batch_{i}"), 12, i) for i in range(1, 6)]
    test = _write_batch(str(tmp_path / "test_batch"), 10, 99)
    return tmp_path, raw, test


def test_cifar10_reads_all_batches_channel_major(cifar_dir) -> None:  # type: ignore[no-untyped-def]
    path, raw, (tdata, tlabels) = cifar_dir
    ds = load_data(f"cifar10:{path}")
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.classes[0] == "airplane"
    assert len(ds.train_y) == 60 and len(ds.test_y) == 10
    assert torch.equal(ds.train_y, torch.from_numpy(np.concatenate([r[1] for r in raw])))
    assert torch.equal(ds.test_y, torch.from_numpy(tlabels))
    # Undo the per-channel standardisation: the rows are (R 1024, G 1024, B 1024), row-major 32 x 32.
    xtr = np.concatenate([r[0] for r in raw]).reshape(-1, 3, 32, 32).astype(np.float32)
    mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
    std = xtr.std(axis=(0, 2, 3), keepdims=True)
    want = (tdata.reshape(-1, 3, 32, 32).astype(np.float32) - mean) / std
    np.testing.assert_allclose(ds.test_x.numpy(), want, rtol=1e-5, atol=1e-5)


def test_cifar10_uses_the_batches_present_and_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _write_batch(str(tmp_path / "data_batch_1"), 8, 1)
    _write_batch(str(tmp_path / "test_batch"), 6, 2)
    ds = load_data(f"cifar10:{tmp_path}", limit=5)
    assert len(ds.train_y) == 5 and len(ds.test_y) == 5


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "does not exist"),
        ("no_train", "no data_batch_1..5"),
        ("no_test", "no test_batch"),
        ("garbage", "not a CIFAR-10 python batch"),
        ("not_dict", "expected a pickled dict"),
        ("no_keys", "lacks the b'data' and b'labels'"),
        ("bad_shape", "uint8 of shape (N, 3072)"),
        ("bad_labels", "one label per row"),
        ("label_range", "labels must lie in 0..9"),
        ("file", "is not a folder"),
    ],
)
def test_cifar10_bad_input_gives_one_clear_line(tmp_path, setup: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c"
    if setup != "missing":
        path.mkdir()
    if setup not in ("missing", "no_train", "file"):
        _write_batch(str(path / "test_batch"), 4, 0)
        train = str(path / "data_batch_1")
        if setup == "no_test":
            os.remove(path / "test_batch")
            _write_batch(train, 4, 1)
        elif setup == "garbage":
            with open(train, "wb") as f:
                f.write(b"this is not a pickle")
        elif setup == "not_dict":
            with open(train, "wb") as f:
                pickle.dump([1, 2, 3], f)
        elif setup == "no_keys":
            with open(train, "wb") as f:
                pickle.dump({b"x": 1}, f)
        elif setup == "bad_shape":
            _write_batch(train, 4, 1, data=np.zeros((4, 100), np.uint8))
        elif setup == "bad_labels":
            _write_batch(train, 4, 1, labels=[0, 1])
        elif setup == "label_range":
            _write_batch(train, 4, 1, labels=[0, 1, 2, 12])
    if setup == "file":
        path = tmp_path / "afile"
        path.write_text("x")
    with pytest.raises(DataError, match=None) as e:
        load_data(f"cifar10:{path}")
    assert message in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------- image folders


def _image(path: str, color: tuple[int, int, int], size: tuple[int, int], mode: str = "RGB") -> None:
    im = PIL.new("RGB", size, color)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path)


def _tree(root, n: int = 5):  # type: ignore[no-untyped-def]
    colors = {"cat": (255, 0, 0), "dog": (0, 0, 255), "emu": (0, 255, 0)}
    for cname, col in colors.items():
        d = root / cname
        d.mkdir(parents=True)
        for i in range(n):
            mode = "L" if (cname == "emu" and i == 0) else "RGB"
            _image(str(d / f"{i}.png"), col, (10 + i, 7 + 2 * i), mode)
        (d / "notes.txt").write_text("not an image")
    return root


def test_folder_reads_classes_resizes_and_splits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "imgs")
    ds = load_data(f"folder:{root}", image_size=6)
    assert ds.classes == ["cat", "dog", "emu"]
    assert ds.input_shape == (3, 6, 6)
    assert len(ds.train_y) + len(ds.test_y) == 15
    assert sorted(torch.unique(ds.test_y).tolist()) == [0, 1, 2]
    # Colour survives: the cat images are red, so their red channel is above the mean.
    cats = ds.train_x[ds.train_y == 0]
    dogs = ds.train_x[ds.train_y == 1]
    assert float(cats[:, 0].mean()) > 0 > float(dogs[:, 0].mean())
    assert float(dogs[:, 2].mean()) > 0 > float(cats[:, 2].mean())
    again = load_data(f"folder:{root}", image_size=6)
    assert torch.equal(again.train_x, ds.train_x)


def test_folder_limit_mixes_the_classes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Folder data is stored class by class: 8 training images of cat, then dog, then emu. The
    # first 12 would be cats and dogs only; a random subset covers every class.
    root = _tree(tmp_path / "imgs", n=10)
    full = load_data(f"folder:{root}", image_size=4)
    assert full.train_y.tolist() == sorted(full.train_y.tolist())  # class by class, as stored
    assert set(full.train_y[:12].tolist()) != {0, 1, 2}
    ds = load_data(f"folder:{root}", image_size=4, limit=12)
    assert len(ds.train_y) == 12 and len(ds.test_y) == 6
    assert sorted(torch.unique(ds.train_y).tolist()) == [0, 1, 2]
    assert ds.train_y.tolist() == sorted(ds.train_y.tolist())  # original order kept
    assert torch.equal(load_data(f"folder:{root}", image_size=4, limit=12).train_x, ds.train_x)


@pytest.mark.parametrize("setup, message", [
    ("one_class", "at least 2 class sub-folders"),
    ("empty_class", "holds no images"),
    ("corrupt", "cannot read image"),
    ("missing", "does not exist"),
])
def test_folder_bad_input(tmp_path, setup: str, message: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "imgs"
    if setup == "one_class":
        (root / "a").mkdir(parents=True)
        _image(str(root / "a" / "x.png"), (1, 2, 3), (4, 4))
    elif setup == "empty_class":
        _tree(root)
        (root / "zzz").mkdir()
    elif setup == "corrupt":
        _tree(root)
        (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as e:
        load_data(f"folder:{root}")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["mnist", "cifar10:", "folder:", "", "digits:x"])
def test_unknown_spec(spec: str) -> None:
    with pytest.raises(DataError, match="data: expected|needs a path"):
        load_data(spec)


def test_cli_bad_data_path_exits_2_with_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["compare", "--data", f"cifar10:{tmp_path / 'nope'}", "--out", str(tmp_path / "o"),
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "does not exist" in err and "Traceback" not in err
