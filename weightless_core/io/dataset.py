"""The ``Dataset`` every loader returns: train, validation and (optionally) test tensors, checked
once on creation.

Its own module so the built-in loaders (``builtin_data``) and ``data`` can both build one
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from weightless_core.errors import DataError, InvalidInputError


@dataclass(frozen=True)
class Dataset:
    """Train, validation and optional test tensors of one data set, with or without labels.

    Every choice (pruning schedule, search, early stopping) is made on the validation split;
    the test split, when there is one, is only ever scored, so it measures what a model does on
    data no choice saw. Built-ins all have one; a user's file may add ``x_test`` (and
    ``y_test`` if it has labels).

    ``x_*`` is float32 (built-in images ``(N, C, H, W)`` scaled to [0, 1]) or int64 (token ids
    and other integer inputs, kept integers), any shape ``(N, ...)``. ``y_*`` is int64 ``(N,)``
    of class ids ``>= 0``, or ``None`` on every split for a set without labels: the model is
    then retrained to match its dense self (``weightless_core.method.objective``). ``classes`` pins
    the class count when known (built-ins: 10), so a subset that happens to miss the top class
    keeps the model's width.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_val: torch.Tensor
    y_val: torch.Tensor | None
    classes: int | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.y_train is None) != (self.y_val is None):
            raise DataError(f"{self.name}: give y_train and y_val, or neither (no labels)")
        if self.labelled and (self.x_test is None) != (self.y_test is None):
            raise DataError(f"{self.name}: give both x_test and y_test, or neither")
        if not self.labelled and self.y_test is not None:
            raise DataError(f"{self.name}: y_test is given but the other splits have no labels")
        for split in self.splits:
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not (y is None or isinstance(y, torch.Tensor)):
                raise DataError(f"{self.name}: x_{split} and y_{split} must be torch tensors")
            if x.dtype not in (torch.float32, torch.int64) or x.ndim < 1:
                raise DataError(
                    f"{self.name}: x_{split} must be float32 or int64 (N, ...), "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if len(x) == 0:
                raise DataError(f"{self.name}: x_{split} is empty")
            if y is None:
                continue
            if y.dtype != torch.int64 or y.ndim != 1:
                raise DataError(
                    f"{self.name}: y_{split} must be int64 (N,), got {y.dtype} {tuple(y.shape)}"
                )
            if len(x) != len(y):
                raise DataError(
                    f"{self.name}: x_{split} has {len(x)} samples and y_{split} {len(y)}; "
                    "they must match and be non-empty"
                )
        for split in self.splits[1:]:
            x = getattr(self, f"x_{split}")
            if self.x_train.shape[1:] != x.shape[1:] or self.x_train.dtype != x.dtype:
                raise DataError(
                    f"{self.name}: train samples are {self.x_train.dtype} "
                    f"{tuple(self.x_train.shape[1:])} but {_SPLIT_NAMES[split]} samples are "
                    f"{x.dtype} {tuple(x.shape[1:])}"
                )
        if not self.labelled:
            return
        low = min(int(getattr(self, f"y_{split}").min()) for split in self.splits)
        if low < 0:
            raise DataError(f"{self.name}: class ids must be >= 0, found {low}")
        if self.classes is not None and self._max_label() >= self.classes:
            raise DataError(
                f"{self.name}: class id {self._max_label()} out of range for {self.classes} classes"
            )

    @property
    def labelled(self) -> bool:
        """Whether the set has labels (else retraining distils from the dense model)."""
        return self.y_train is not None

    @property
    def splits(self) -> tuple[str, ...]:
        """``("train", "val")``, plus ``"test"`` when the set has a test split."""
        return ("train", "val") if self.x_test is None else ("train", "val", "test")

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def _max_label(self) -> int:
        return max(int(getattr(self, f"y_{split}").max()) for split in self.splits)

    @property
    def num_classes(self) -> int:
        """Number of classes: ``classes`` if pinned, else the largest class id + 1."""
        if self.classes is not None:
            return self.classes
        if not self.labelled:
            raise DataError(f"{self.name} has no labels, so no class count")
        return self._max_label() + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    def flattened(self) -> Dataset:
        """Every split's samples as flat vectors ``(N, D)``: for a model whose first layer is a
        ``Linear`` over the whole sample (an MLP fed images)."""
        flat = {f"x_{s}": getattr(self, f"x_{s}").reshape(len(getattr(self, f"x_{s}")), -1)
                for s in self.splits}  # fmt: skip
        return replace(self, **flat)

    def subset(self, n_train: int, n_val: int, *, seed: int) -> Dataset:
        """A deterministic random subset (same ``seed`` -> same samples), kept in original order.

        Counts larger than available keep every sample; the class count is pinned to this
        set's ``num_classes``. The test split, if any, is kept whole.
        """
        for label, n in (("n_train", n_train), ("n_val", n_val)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InvalidInputError(f"{label} must be a positive int, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"seed must be a non-negative int, got {seed!r}")
        rng = np.random.default_rng(seed)
        train_idx = _pick(rng, len(self.x_train), n_train)
        val_idx = _pick(rng, len(self.x_val), n_val)
        return replace(
            self,
            x_train=self.x_train[train_idx],
            y_train=None if self.y_train is None else self.y_train[train_idx],
            x_val=self.x_val[val_idx],
            y_val=None if self.y_val is None else self.y_val[val_idx],
            classes=self.num_classes if self.labelled else self.classes,
        )


_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


def _pick(rng: np.random.Generator, size: int, n: int) -> torch.Tensor:
    chosen = np.sort(rng.permutation(size)[: min(n, size)])
    return torch.from_numpy(chosen.astype(np.int64))
