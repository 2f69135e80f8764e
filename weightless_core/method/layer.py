"""Encoding one weight tensor: cluster codes of its non-zeros stored in a retrieval structure.

Exact zeros are pruned positions. Non-zeros are quantised to the nearest of ``2**r`` centroids
(unless codes are given) and the map ``flat position -> code`` is stored without any index. A
pruned position reads back as 0 unless its query lands below ``2**r`` (a false positive, rate
``2**(r-t)``), in which case it carries that centroid; the pipeline retrains around those, and
a veto (``weightless_core.method.veto``) can cancel the costliest of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from weightless_core.config.setting_schema import AUTO, check_structure, validate_bits
from weightless_core.config.setting_schema import MAX_R as MAX_R  # the format checks read it here
from weightless_core.errors import InvalidInputError
from weightless_core.method import veto as vetoes
from weightless_core.method.liveness import Liveness
from weightless_core.retrieval import STRUCTURES, RetrievalStructure
from weightless_core.retrieval.smallest import build_smallest

if TYPE_CHECKING:
    import torch

Backend = Literal["auto", "numba", "torch"]
# Bytes of an encoded record body besides the shape, codebook and table (see docs/format.md):
# ndim u8, structure/r/t/hash u8 x4, seed/num_cells/nnz/false_positives u64 x4.
_FIXED_BODY_BYTES = 1 + 4 + 8 * 4
# A veto's own fields in a kind-6 record: the liveness flag u8, structure u8, seed and cells u64.
_VETO_FIELD_BYTES = 1 + 1 + 8 + 8


@dataclass(frozen=True, eq=False)
class EncodedLayer:
    """A weight tensor as stored in a file: shape, codebook and the retrieval table.

    ``codebook`` is float32 of shape ``(2**r,)``; ``nnz`` counts stored positions and
    ``false_positives`` the pruned positions that decode to a centroid. With ``live`` the table
    holds only the grid of live rows and columns (its keys are positions in that grid) and
    everything else decodes to 0. With ``veto`` (a one-bit table, ``method.veto``) a position
    whose table reads a code is a weight only where the veto reads 0; ``false_positives``
    counts what is left after it.
    """

    shape: tuple[int, ...]
    r: int
    codebook: np.ndarray
    structure: RetrievalStructure
    nnz: int
    false_positives: int
    live: Liveness | None = None
    veto: RetrievalStructure | None = None

    @property
    def t(self) -> int:
        return self.structure.t

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def kind(self) -> str:
        """The structure's name, with ``+veto`` when a veto table sits beside it (reports)."""
        return self.structure.kind + ("" if self.veto is None else "+veto")

    @property
    def queried(self) -> int:
        """Positions the table is queried at: every one, or the live grid's."""
        return self.numel if self.live is None else self.live.grid_size

    @property
    def nbytes(self) -> int:
        """Exact bytes of this layer's record body in the file (docs/format.md, kinds 1, 5, 6)."""
        veto = 0 if self.veto is None else _VETO_FIELD_BYTES + self.veto.table_nbytes
        return (
            _FIXED_BODY_BYTES
            + 8 * len(self.shape)
            + 4 * self.codebook.size
            + (0 if self.live is None else self.live.nbytes)
            + self.structure.table_nbytes
            + veto
        )

    @property
    def paper_nbytes(self) -> int:
        """Bytes as the papers count a layer: table, codebook and (ours) liveness bitmaps; no
        record header."""
        live = 0 if self.live is None else self.live.nbytes
        veto = 0 if self.veto is None else self.veto.table_nbytes
        return self.structure.table_nbytes + 4 * self.codebook.size + live + veto

    def decode(self) -> np.ndarray:
        """The dense float32 tensor, false positives included (no extra memory beyond it
        without liveness; the live grid's size more with it)."""
        out = np.empty(self.queried, dtype=np.float32)
        self.structure.decode_dense(out, self.codebook)
        self._apply_veto(out)
        if self.live is not None:
            out = self.live.expand(out)
        return out.reshape(self.shape)

    def read_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, valid)`` of every position, shaped like the tensor: the cluster code the
        table gives (uint8, as r <= 8; 0 where invalid) and whether it is one (kept weights and
        false positives). One range decode with codebook ``1..2**r``, so no key array is built,
        and nothing wider than the float32 decode is held: on a 100M-weight tensor an int64
        copy alone would be 800 MB."""
        out = np.empty(self.queried, dtype=np.float32)
        self.structure.decode_dense(out, np.arange(1, (1 << self.r) + 1, dtype=np.float32))
        self._apply_veto(out)
        if self.live is not None:
            out = self.live.expand(out)
        valid = out > 0
        np.subtract(out, 1, out=out, where=valid)
        return out.astype(np.uint8).reshape(self.shape), valid.reshape(self.shape)

    def to_torch(
        self, device: str | torch.device = "cpu", *, backend: Backend = "auto"
    ) -> torch.Tensor:
        """The dense tensor on ``device``. ``auto`` decodes on the device itself when it is a
        GPU (only the table travels there) and with the numba kernels on CPU (the fastest
        there); ``torch`` forces the torch kernels, ``numba`` the CPU decode and a copy."""
        import torch

        from weightless_core.retrieval import torch_decode

        dev = torch_decode.checked_device(device)
        if backend not in ("auto", "numba", "torch"):
            raise InvalidInputError(f"backend must be auto, numba or torch, got {backend!r}")
        if backend == "torch" or (backend == "auto" and dev.type != "cpu"):
            if self.live is None and self.veto is None:
                return torch_decode.decode_dense(
                    self.structure, self.codebook, self.shape, device=dev
                )
            grid = torch_decode.decode_dense(
                self.structure, self.codebook, (self.queried,), device=dev
            )
            if self.veto is not None:
                keep = torch_decode.decode_dense(
                    self.veto, vetoes.KEEP, (self.queried,), device=dev
                )
                grid = torch.where(keep != 0, grid, torch.zeros((), device=dev))
            if self.live is not None:
                grid = self.live.expand_torch(grid)
            return grid.reshape(self.shape)
        return torch.from_numpy(self.decode()).to(dev)

    def _apply_veto(self, grid: np.ndarray) -> None:
        """Zero, in place, the queried positions the veto cancels."""
        if self.veto is not None:
            grid[~vetoes.passes(self.veto, grid.size)] = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncodedLayer):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.r == other.r
            and np.array_equal(self.codebook, other.codebook)
            and self.structure == other.structure
            and (self.nnz, self.false_positives) == (other.nnz, other.false_positives)
            and (self.live is None) == (other.live is None)
            and (self.live is None or self.live == other.live)
            and (self.veto is None) == (other.veto is None)
            and (self.veto is None or self.veto == other.veto)
        )

    __hash__ = None  # type: ignore[assignment]


def encode_layer(
    weight: object,
    *,
    r: int = 4,
    t: int = 8,
    seed: int = 0,
    codebook: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    structure: str = "bloomier",
    max_attempts: int = 16,
    liveness: bool = False,
    veto_share: float = 0.0,
    veto_harm: np.ndarray | None = None,
    veto_cost: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EncodedLayer:
    """Encode ``weight`` (torch tensor or ndarray, any shape; exact zeros are pruned).

    Without ``codebook``/``codes`` the non-zeros are clustered by k-means (linear init) into
    ``2**r`` centroids. With them, ``codebook`` is float32 ``(2**r,)`` and ``codes`` an integer
    array of ``weight``'s shape giving each non-zero's centroid (entries at zeros are ignored).
    ``structure="auto"`` builds every structure and keeps the one with the fewest cells.
    ``liveness`` stores the live rows and columns (``weightless_core.method.liveness``) and a table
    of the live grid only; it is dropped when every row and column is live (it would only cost).
    ``veto_share`` > 0 builds a veto (``weightless_core.method.veto``) cancelling that share of
    the table's false positives, the costliest first. A false positive's cost is its value
    squared times ``veto_harm`` at its position (an array of the weight's shape; without it,
    the value squared); or, with ``veto_cost``, what that function returns at its position when
    given the weight as the table decodes it (every false positive in place), so the cost may
    depend on all of them at once.
    """
    validate_bits(r, t)
    check_structure(structure)
    w = _as_float_array(weight)
    flat = w.ravel()
    nonzero = flat != 0
    keys = np.flatnonzero(nonzero).astype(np.uint64)
    if keys.size == 0:
        raise InvalidInputError(
            f"tensor of shape {w.shape} has no non-zero weights to encode; store it plainly"
        )
    if keys.size == flat.size:
        raise InvalidInputError(
            f"tensor of shape {w.shape} has no zeros: prune it first (encoding only pays off "
            "on sparse tensors)"
        )
    k = 1 << r
    cb, values = cluster_values(flat, nonzero, w.shape, r, codebook, codes, seed)
    live = Liveness.of(nonzero, w.shape) if liveness else None
    if live is not None and live.grid_size == flat.size:
        live = None
    if live is not None:
        nonzero = live.compact(nonzero)
        keys = np.flatnonzero(nonzero).astype(np.uint64)  # same order: grid order is C order
    values = values.astype(np.uint32)
    kinds = list(STRUCTURES) if structure == AUTO else [structure]
    table = build_smallest([STRUCTURES[k] for k in kinds], keys, values, t=t, seed=seed,
                           max_attempts=max_attempts)  # fmt: skip
    veto, fp = None, None
    if veto_share > 0:  # the table read once: its false positives, their values, the veto
        out = np.empty(nonzero.size, dtype=np.float32)
        table.decode_dense(out, np.arange(1, k + 1, dtype=np.float32))
        false_positives = np.flatnonzero((out > 0) & ~nonzero)
        if false_positives.size:
            if veto_cost is not None:  # the caller weighs the decoded weight as a whole
                read = out > 0
                decoded = np.zeros(out.size, dtype=np.float32)
                decoded[read] = cb[out[read].astype(np.int64) - 1]
                full = decoded if live is None else live.expand(decoded)
                cost = _grid_values(veto_cost(full.reshape(w.shape)), w.shape, live)
                cost = cost[false_positives]
            else:
                cost = np.square(cb[out[false_positives].astype(np.int64) - 1].astype(np.float64))
                if veto_harm is not None:  # the value squared, times the position's harm
                    cost *= _grid_values(veto_harm, w.shape, live)[false_positives]
            chosen = vetoes.choose_vetoes(false_positives, cost, veto_share)
            veto = vetoes.build_veto(keys, chosen.astype(np.uint64), seed=seed, structure=kinds)
            fp = int(np.count_nonzero(vetoes.passes(veto, nonzero.size)[false_positives]))
    if fp is None:
        fp = table.count_in_range(~nonzero, k)
    return EncodedLayer(
        shape=tuple(int(d) for d in w.shape),
        r=r,
        codebook=cb.astype(np.float32),
        structure=table,
        nnz=int(keys.size),
        false_positives=fp,
        live=live,
        veto=veto,
    )


def _grid_values(values: np.ndarray, shape: tuple[int, ...], live: Liveness | None) -> np.ndarray:
    """``values`` (of the weight's shape) flat, in the order the table is queried."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != shape:
        raise InvalidInputError(
            f"a veto cost (veto_harm, or veto_cost's result) must have the weight's shape "
            f"{shape}, got {v.shape}"
        )
    flat = v.ravel()
    return flat if live is None else live.compact(flat)


def cluster_values(
    flat: np.ndarray,
    nonzero: np.ndarray,
    shape: tuple[int, ...],
    r: int,
    codebook: np.ndarray | None,
    codes: np.ndarray | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 codebook, code of each non-zero in position order), checked; shared by both
    encoders so Weightless and Deep Compression accept exactly the same clustered weights."""
    k = 1 << r
    if (codebook is None) != (codes is None):
        raise InvalidInputError("give both codebook and codes, or neither")
    if codebook is None:
        if not nonzero.any():
            raise InvalidInputError(
                f"tensor of shape {shape} has no non-zero weights to cluster; pass a codebook "
                "and codes, or store it plainly"
            )
        from weightless_core.method.cluster import kmeans_1d

        cb, values = kmeans_1d(flat[nonzero], k, seed=seed)
    else:
        cb = np.asarray(codebook, dtype=np.float32).ravel()
        if cb.size != k:
            raise InvalidInputError(f"codebook must have 2**r = {k} entries, got {cb.size}")
        values = np.asarray(codes)
        if values.dtype.kind not in "iu":
            raise InvalidInputError(f"codes must be an integer array, got dtype {values.dtype}")
        if values.shape != shape:
            raise InvalidInputError(
                f"codes must have the weight's shape {shape}, got {values.shape}"
            )
        values = values.ravel()[nonzero]
        if values.size and (values.min() < 0 or values.max() >= k):
            raise InvalidInputError(f"codes must lie in [0, {k}) at non-zero positions")
    if not np.all(np.isfinite(cb)):
        raise InvalidInputError("codebook holds NaN or Inf")
    return cb.astype(np.float32), values.astype(np.int64)


def _as_float_array(weight: object) -> np.ndarray:
    if hasattr(weight, "detach"):  # a torch tensor, without importing torch here
        weight = weight.detach().cpu().numpy()  # type: ignore[attr-defined]
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu" or w.dtype == np.bool_:
        raise InvalidInputError(f"weight must be a float tensor, got dtype {w.dtype}")
    if w.ndim == 0:
        raise InvalidInputError("weight must have at least one dimension")
    w = w.astype(np.float32, copy=False)
    if not np.all(np.isfinite(w)):
        raise InvalidInputError(
            f"weight of shape {w.shape} holds NaN or Inf; fix the model before compressing"
        )
    return np.ascontiguousarray(w)
