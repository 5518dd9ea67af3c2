"""Data sets for ``rectifiers compare``: scikit-learn's digits, CIFAR-10 python batches, image folders.

Every loader returns a :class:`Dataset`: float32 image tensors ``(N, C, H, W)`` standardised per
channel with the training split's mean and standard deviation, int64 labels, and a fixed
train/test split (the same for every run, seed and process), so that runs differ only in what
they are meant to differ in.

Specs (the ``--data`` option):

* ``digits`` (default): ``sklearn.datasets.load_digits``, 1797 grey 8 x 8 images of the digits
  0-9 shipped inside scikit-learn (no download). A stratified 80/20 split with a fixed seed.
* ``cifar10:PATH``: the CIFAR-10 "python version" folder: ``data_batch_1`` ... ``data_batch_5``
  (those present are used, at least one) and ``test_batch``, each a pickled dict with ``b"data"``
  (uint8, (N, 3072), channel-major 3 x 32 x 32) and ``b"labels"`` (N ints in 0..9).
* ``folder:PATH``: an image-folder tree, one sub-folder per class (sorted names are the classes),
  images read with Pillow, converted to RGB and resized to ``image_size`` x ``image_size``;
  a stratified 80/20 split with a fixed seed.

A missing or malformed path raises :class:`DataError` with one line naming the file and the fault.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from ._util import optional_import

__all__ = ["DataError", "Dataset", "load_data", "load_digits", "load_cifar10", "load_folder", "SPECS"]

#: The accepted forms of a data spec, for help texts and error messages.
SPECS = ("digits", "cifar10:PATH", "folder:PATH")

#: File name endings read as images in ``folder:PATH`` trees.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

#: The seed of the fixed train/test split (independent of the training seeds).
SPLIT_SEED = 0


class DataError(ValueError):
    """A data spec that cannot be read: the message is one line naming the path and the fault."""


@dataclass
class Dataset:
    """A classification data set split once into train and test.

    Attributes:
        name: the spec it was loaded from (``digits``, ``cifar10:PATH``, ``folder:PATH``).
        train_x, test_x: float32 ``(N, C, H, W)``, standardised per channel with train statistics.
        train_y, test_y: int64 ``(N,)`` class indices in ``0 .. num_classes - 1``.
        classes: class names, in index order.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def describe(self) -> str:
        c, h, w = self.input_shape
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.test_y)} test images, "
            f"{c} x {h} x {w}, {self.num_classes} classes"
        )


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (x - mean) / std with the training split's statistics; inputs (N, C, H, W)."""
    train = train.astype(np.float32)
    test = test.astype(np.float32)
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    std[std == 0] = 1.0
    return (
        torch.from_numpy(np.ascontiguousarray((train - mean) / std)),
        torch.from_numpy(np.ascontiguousarray((test - mean) / std)),
    )


def _split(labels: np.ndarray, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified split: for each class, a ``SPLIT_SEED`` permutation, the last part to test."""
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        else:
            n_test = 0
        test_idx.append(idx[len(idx) - n_test :])
        train_idx.append(idx[: len(idx) - n_test])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def _limit(x: np.ndarray, y: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random subset of ``limit`` samples, in their original order (``None``: all).

    The indices are drawn without replacement with a generator seeded with ``SPLIT_SEED`` and
    sorted, so the subset is the same on every call and, unlike a prefix, mixes the classes of
    data stored class by class (an image folder).
    """
    if limit is None or limit >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(SPLIT_SEED).choice(len(y), size=limit, replace=False))
    return x[idx], y[idx]


def load_digits(limit: int | None = None) -> Dataset:
    """scikit-learn's 8 x 8 handwritten digits: 1797 images (1437 train / 360 test), 1 channel.

    Pixel values 0..16, standardised with the training split's mean and std.
    """
    datasets = optional_import("sklearn.datasets", "compare", "the digits data set", "scikit-learn")
    bunch = datasets.load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    tr, te = _split(y)
    xtr, ytr = _limit(x[tr], y[tr], limit)
    xte, yte = _limit(x[te], y[te], limit)
    train_x, test_x = _standardise(xtr, xte)
    return Dataset("digits", train_x, torch.from_numpy(ytr), test_x, torch.from_numpy(yte),
                   [str(i) for i in range(10)])


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except OSError as e:
        raise DataError(f"cifar10: cannot read {path}: {e.strerror or e}") from e
    except Exception as e:  # pickle raises many kinds of errors on garbage
        raise DataError(f"cifar10: {path} is not a CIFAR-10 python batch (unpickling failed: "
                        f"{type(e).__name__})") from e
    if not isinstance(d, dict):
        raise DataError(f"cifar10: {path} is not a CIFAR-10 python batch (expected a pickled dict, "
                        f"got {type(d).__name__})")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DataError(f"cifar10: {path} lacks the b'data' and b'labels' entries of a CIFAR-10 batch "
                        f"(keys: {sorted(map(str, d))[:6]})")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"cifar10: {path}: b'data' must be uint8 of shape (N, 3072), got "
                        f"{data.dtype} {tuple(data.shape)}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"cifar10: {path}: b'labels' must hold one label per row of b'data' "
                        f"({len(data)}), got shape {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"cifar10: {path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_cifar10(path: str, limit: int | None = None) -> Dataset:
    """The CIFAR-10 python batches in folder ``path``: 3 x 32 x 32 images, 10 classes.

    Reads the ``data_batch_1`` .. ``data_batch_5`` files present (at least one) and ``test_batch``.
    ``limit`` keeps a fixed random subset of ``limit`` images of each split (for quick runs).
    """
    if not os.path.isdir(path):
        raise DataError(f"cifar10: {path!r} is not a folder (expected the CIFAR-10 python batches: "
                        f"data_batch_1..5, test_batch)")
    train_files = [os.path.join(path, f"data_batch_{i}") for i in range(1, 6)]
    train_files = [f for f in train_files if os.path.isfile(f)]
    test_file = os.path.join(path, "test_batch")
    if not train_files:
        raise DataError(f"cifar10: no data_batch_1..5 file in {path!r}")
    if not os.path.isfile(test_file):
        raise DataError(f"cifar10: no test_batch file in {path!r}")
    parts = [_read_cifar_batch(f) for f in train_files]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _read_cifar_batch(test_file)
    if len(ytr) == 0 or len(yte) == 0:
        raise DataError(f"cifar10: {path!r} holds an empty split ({len(ytr)} train, {len(yte)} test)")
    xtr, ytr = _limit(xtr, ytr, limit)
    xte, yte = _limit(xte, yte, limit)
    train_x, test_x = _standardise(xtr, xte)
    return Dataset(f"cifar10:{path}", train_x, torch.from_numpy(ytr), test_x, torch.from_numpy(yte),
                   list(CIFAR10_CLASSES))


def load_folder(path: str, image_size: int = 32, limit: int | None = None) -> Dataset:
    """An image-folder tree ``path/<class>/<image>``: RGB images resized to ``image_size`` squared.

    Classes are the sorted sub-folder names; files whose names end in one of
    :data:`IMAGE_EXTENSIONS` are read (others are ignored). A fixed stratified 80/20 split.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise DataError(f"folder: image size must be a positive int, got {image_size!r}")
    if not os.path.isdir(path):
        raise DataError(f"folder: {path!r} is not a folder (expected one sub-folder of images per class)")
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow comes with matplotlib
        raise ImportError("folder data needs Pillow: pip install 'rectifiers[compare]'") from e
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"folder: {path!r} must hold at least 2 class sub-folders, found {len(classes)}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for ci, cname in enumerate(classes):
        cdir = os.path.join(path, cname)
        files = sorted(f for f in os.listdir(cdir) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DataError(f"folder: class folder {cdir!r} holds no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
        for fname in files:
            fpath = os.path.join(cdir, fname)
            try:
                with Image.open(fpath) as im:
                    im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except Exception as e:
                raise DataError(f"folder: cannot read image {fpath!r} ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from e
            images.append(arr.transpose(2, 0, 1))
            labels.append(ci)
    x = np.stack(images)
    y = np.asarray(labels, dtype=np.int64)
    tr, te = _split(y)
    if len(te) == 0:
        raise DataError(f"folder: {path!r} has too few images for a train/test split ({len(y)})")
    xtr, ytr = _limit(x[tr], y[tr], limit)
    xte, yte = _limit(x[te], y[te], limit)
    train_x, test_x = _standardise(xtr, xte)
    return Dataset(f"folder:{path}", train_x, torch.from_numpy(ytr), test_x, torch.from_numpy(yte), classes)


def load_data(spec: str, *, image_size: int = 32, limit: int | None = None) -> Dataset:
    """Load the data set named by ``spec``: ``digits``, ``cifar10:PATH`` or ``folder:PATH``.

    Args:
        spec: see the module docstring.
        image_size: side length images of a ``folder:`` tree are resized to (default 32).
        limit: keep at most this many images of each split (a fixed subset; default all).

    Raises:
        DataError: an unknown spec, or a missing or malformed path (one-line message).
    """
    if not isinstance(spec, str) or not spec:
        raise DataError(f"data: expected one of {', '.join(SPECS)}, got {spec!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"data: limit must be a positive int or None, got {limit!r}")
    kind, sep, path = spec.partition(":")
    if kind == "digits" and not sep:
        return load_digits(limit)
    if kind in ("cifar10", "folder"):
        if not path:
            raise DataError(f"data: {kind} needs a path, as in {kind}:PATH, got {spec!r}")
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise DataError(f"{kind}: {path!r} does not exist")
        if kind == "cifar10":
            return load_cifar10(path, limit)
        return load_folder(path, image_size, limit)
    raise DataError(f"data: expected one of {', '.join(SPECS)}, got {spec!r}")
