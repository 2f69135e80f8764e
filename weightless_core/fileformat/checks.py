"""Validity rules for names, shapes and encoded-layer parameters (both kinds of layer).

Shared by the writer (-> ``InvalidInputError``) and the reader (-> ``MalformedRecordError``), so
the library never writes a file it would refuse to read. Each check returns the problem in
words, or None; the caller picks the error type.
"""

from __future__ import annotations

import math

import numpy as np

from weightless_core.baselines.context_coded import ContextCodedLayer, caps_problem
from weightless_core.baselines.deep_compression import DeepCompressedLayer
from weightless_core.baselines.deep_compression import layer_problem as _deep_rules
from weightless_core.errors import FormatError
from weightless_core.fileformat.spec import (
    MAX_NAME_BYTES,
    MAX_NDIM,
    MAX_NUM_CELLS,
    MAX_NUMEL,
    U64,
)
from weightless_core.method.layer import MAX_R
from weightless_core.method.liveness import Liveness, matrix_shape
from weightless_core.retrieval import BY_CODE, MAX_T


def name_problem(raw: bytes | memoryview) -> str | None:
    if not raw:
        return "names must not be empty"
    if len(raw) > MAX_NAME_BYTES:
        return f"name is {len(raw)} bytes long, at most {MAX_NAME_BYTES} are allowed"
    if 0 in bytes(raw):
        return "names must not contain a NUL character"
    return None


def shape_problem(shape: tuple[int, ...], *, min_ndim: int, min_dim: int) -> str | None:
    if not min_ndim <= len(shape) <= MAX_NDIM:
        return f"ndim must be in {min_ndim}..{MAX_NDIM}, got {len(shape)}"
    if any(d < min_dim for d in shape):
        return f"every dimension must be >= {min_dim}, got shape {shape}"
    if math.prod(shape) > MAX_NUMEL:
        return f"shape {shape} has more than 2**40 elements"
    return None


def layer_problem(
    *,
    numel: int,
    code: int,
    r: int,
    t: int,
    seed: int,
    num_cells: int,
    nnz: int,
    false_positives: int,
    codebook: np.ndarray,
) -> str | None:
    if code not in BY_CODE:
        known = ", ".join(f"{c} = {s.kind}" for c, s in sorted(BY_CODE.items()))
        return (
            f"unknown retrieval structure code {code} (this reader knows {known}); "
            "the file may need a newer weightless"
        )
    if not 1 <= r <= MAX_R:
        return f"r must be in 1..{MAX_R}, got {r}"
    if not r < t <= MAX_T:
        return f"t must satisfy r < t <= {MAX_T}, got r={r}, t={t}"
    if not 0 <= seed <= U64:
        return f"seed must be a u64, got {seed}"
    if not 0 <= num_cells <= MAX_NUM_CELLS:
        return f"num_cells must be <= {MAX_NUM_CELLS}, got {num_cells}"
    if not 0 <= nnz <= numel:
        return f"nnz = {nnz} is not in 0..numel = {numel}"
    if not 0 <= false_positives <= numel - nnz:
        return f"false_positives = {false_positives} exceeds the {numel - nnz} pruned positions"
    if codebook.shape != (1 << r,):
        return f"codebook must have shape ({1 << r},) for r={r}, got {codebook.shape}"
    if not np.all(np.isfinite(codebook)):
        return "codebook holds NaN or Inf"
    return None


def veto_problem(code: int, t: int, seed: int, num_cells: int) -> str | None:
    """A kind-6 record's veto table: a known structure of one bit per cell and a valid size."""
    if code not in BY_CODE:
        return f"unknown retrieval structure code {code} for the veto table"
    if t != 1:
        return f"a veto table has 1 bit per cell, got {t}"
    if not 0 <= seed <= U64:
        return f"the veto's seed must be a u64, got {seed}"
    if not 0 < num_cells <= MAX_NUM_CELLS:
        return f"the veto's num_cells must be in 1..{MAX_NUM_CELLS}, got {num_cells}"
    return BY_CODE[code].size_problem(num_cells)


def live_problem(live: Liveness, shape: tuple[int, ...]) -> str | None:
    """A kind-5 record's bitmaps: the matrix view's sizes, and at least one live row and
    column (a layer with none stores nothing to query)."""
    rows, cols = matrix_shape(shape)
    if (live.rows.size, live.cols.size) != (rows, cols):
        return (
            f"liveness bitmaps of {live.rows.size} rows and {live.cols.size} columns do not "
            f"fit shape {shape} ({rows} x {cols})"
        )
    if not live.rows.any() or not live.cols.any():
        return "liveness bitmaps need at least one live row and one live column"
    return None


def deep_layer_problem(layer: DeepCompressedLayer) -> str | None:
    """Every rule of a kind-4 record; its streams are decoded, so this costs one decode."""
    return shape_problem(layer.shape, min_ndim=1, min_dim=1) or _deep_rules(layer)


def context_layer_problem(layer: ContextCodedLayer) -> str | None:
    """Every rule of a kind-7 record; its stream is decoded, so this costs one decode (within
    the caps, at most 1,024 position decisions a stream byte)."""
    problem = shape_problem(layer.shape, min_ndim=1, min_dim=1)
    if problem:
        return problem
    if not 1 <= layer.r <= MAX_R:
        return f"r must be in 1..{MAX_R}, got {layer.r}"
    codebook = np.asarray(layer.codebook)
    k = 1 << layer.r
    if codebook.shape != (k,) or codebook.dtype != np.float32:
        return f"codebook must be float32 of shape ({k},), got {codebook.dtype} {codebook.shape}"
    if not np.all(np.isfinite(codebook)):
        return "codebook holds NaN or Inf"
    if layer.live is not None:
        problem = live_problem(layer.live, layer.shape)
        if problem:
            return problem
    cols = matrix_shape(layer.shape)[1]
    if not (1 <= layer.width <= cols and cols % layer.width == 0):
        return f"width must divide the row length {cols}, got {layer.width}"
    rows, cols = layer.grid_shape
    if not 0 <= layer.nnz <= rows * cols:
        return f"nnz = {layer.nnz} is not in 0..{rows * cols}, the positions of its grid"
    problem = caps_problem(rows * cols, layer.nnz, len(layer.stream))
    if problem:
        return problem
    try:
        layer.read()
    except FormatError as e:
        return str(e)
    return None
