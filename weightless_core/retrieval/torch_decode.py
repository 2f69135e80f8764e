"""Queries and dense decodes in torch, so a layer decodes where the model will run (CUDA).

Decoding on the GPU moves only the table (megabytes) to the device instead of the dense layer
(hundreds of megabytes for a VGG-16 fc6), and the device does the hashing at its own memory
speed. The results are bit-identical to the numba kernels (tests compare them on CPU).

torch has no unsigned 64-bit arithmetic, so hashes live in int64 with the same bits:
wrapping multiplication and addition give the same low 64 bits signed or not, and logical right
shifts are arithmetic shifts with the sign-extended bits masked off. Products that must keep
their high half (``(r * B) >> 32`` of two 32-bit numbers) are split into 16-bit halves so no
intermediate leaves int64. Positions go in chunks, so temporary memory is bounded (about 80
bytes per position of a chunk) whatever the layer's size.

This module is the chunking and those helpers; the query itself is the structure's own
(``RetrievalStructure.torch_lookup``), so nothing here knows one structure from another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from weightless_core.errors import InvalidInputError
from weightless_core.retrieval import narrow
from weightless_core.retrieval.base import RetrievalStructure
from weightless_core.retrieval.hashing import MIX1, MIX2, seed_key

CPU_CHUNK = 1 << 20
"""Positions per chunk on CPU (about 80 MiB of temporaries)."""
CUDA_CHUNK = 1 << 23
"""Positions per chunk on CUDA: large enough to fill the device, about 640 MiB."""

LO32 = 0xFFFFFFFF


def signed(x: int) -> int:
    """The int64 with the bits of the uint64 ``x``."""
    return x - (1 << 64) if x >= 1 << 63 else x


@dataclass
class Scratch:
    """Work tensors of one chunk, reused for every chunk: allocating fresh ones per op would
    cost more than the arithmetic (page faults on CPU, allocator traffic on CUDA)."""

    h: torch.Tensor
    g: torch.Tensor
    tmp: torch.Tensor
    mask: torch.Tensor
    cells: list[torch.Tensor]

    @classmethod
    def allocate(cls, size: int, arity: int, device: torch.device) -> Scratch:
        def make() -> torch.Tensor:
            return torch.empty(size, dtype=torch.int64, device=device)

        return cls(make(), make(), make(), make(), [make() for _ in range(arity)])

    def view(self, n: int) -> Scratch:
        """The first ``n`` positions of every buffer (the last chunk may be short)."""
        return Scratch(
            self.h[:n], self.g[:n], self.tmp[:n], self.mask[:n], [c[:n] for c in self.cells]
        )


def srl(z: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
    """Logical right shift of int64 bits into ``out``."""
    torch.bitwise_right_shift(z, s, out=out)
    return out.bitwise_and_((1 << (64 - s)) - 1)


def mix_(z: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser (``hashing.mix64``) on int64 bits, in place."""
    z.bitwise_xor_(srl(z, 30, tmp)).mul_(signed(MIX1))
    z.bitwise_xor_(srl(z, 27, tmp)).mul_(signed(MIX2))
    return z.bitwise_xor_(srl(z, 31, tmp))


def mulhi32_(r: torch.Tensor, b: int, tmp: torch.Tensor) -> torch.Tensor:
    """``r = (r * b) >> 32`` for ``0 <= r, b < 2**32``, exact in int64, in place."""
    torch.bitwise_and(r, 0xFFFF, out=tmp).mul_(b).bitwise_right_shift_(16)  # low half * b
    return r.bitwise_right_shift_(16).mul_(b).add_(tmp).bitwise_right_shift_(16)


def device_cells(structure: RetrievalStructure, device: torch.device) -> torch.Tensor:
    """The table unpacked on ``device``: uint8 (t <= 8), int16 bits (t <= 16) or int64."""
    cells = structure.narrow_cells()
    if cells.dtype == np.uint16:
        cells = cells.view(np.int16)  # same bits; xor does not care about the sign
    elif cells.dtype == np.uint32:
        cells = cells.astype(np.int64)  # torch's uint32 supports too few operations
    return torch.from_numpy(cells).to(device)


class TorchLookup:
    """A structure's query in torch: the hashes of a chunk of keys (``hashing.hash64`` into
    ``w.h``), then ``query(table, w)``, the structure's own (``torch_lookup``), which returns
    the int64 t-bit results. ``rows`` is how many int64 rows of scratch it needs in
    ``w.cells``."""

    def __init__(
        self,
        structure: RetrievalStructure,
        table: torch.Tensor,
        rows: int,
        query: Callable[[torch.Tensor, Scratch], torch.Tensor],
    ):
        self.sk = signed(seed_key(structure.seed))
        self.table = table
        self.rows = rows
        self.query = query

    def scratch(self, size: int, device: torch.device) -> Scratch:
        return Scratch.allocate(size, self.rows, device)

    def __call__(self, keys: torch.Tensor, w: Scratch) -> torch.Tensor:
        """int64 t-bit results for int64 ``keys`` (bits of uint64 keys)."""
        torch.add(keys, self.sk, out=w.h)
        mix_(w.h, w.tmp)
        return self.query(self.table, w)


def checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, refused with a clear error if it is no device here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidInputError(f"{device!r} is not a torch device (cpu, cuda, cuda:1...)") from e
    if dev.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"decoding runs on cpu or cuda, not {dev.type!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but torch sees no CUDA device")
    return dev


def _chunk(device: torch.device, chunk: int | None) -> int:
    if chunk is None:
        return CUDA_CHUNK if device.type == "cuda" else CPU_CHUNK
    if chunk < 1:
        raise InvalidInputError(f"chunk must be >= 1 positions, got {chunk}")
    return chunk


def query(
    structure: RetrievalStructure,
    keys: torch.Tensor | np.ndarray,
    *,
    device: str | torch.device | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """``structure.query(keys)`` in torch: int64 results of the keys' shape, on ``device``
    (default: the keys' device). Keys are int64 tensors or uint64 arrays (same bits)."""
    if isinstance(keys, np.ndarray):
        keys = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.uint64).view(np.int64))
    if keys.dtype != torch.int64:
        raise InvalidInputError(f"keys must be int64 (uint64 bits), got {keys.dtype}")
    dev = checked_device(device if device is not None else keys.device)
    step = _chunk(dev, chunk)
    lookup = structure.torch_lookup(dev)
    flat = keys.reshape(-1)
    out = torch.empty(flat.numel(), dtype=torch.int64, device=dev)
    scratch = lookup.scratch(min(step, flat.numel()), dev)
    for start in range(0, flat.numel(), step):
        part = flat[start : start + step].to(dev)
        out[start : start + part.numel()] = lookup(part, scratch.view(part.numel()))
    return out.reshape(keys.shape)


def decode_dense(
    structure: RetrievalStructure,
    codebook: np.ndarray,
    shape: tuple[int, ...],
    *,
    device: str | torch.device = "cpu",
    chunk: int | None = None,
) -> torch.Tensor:
    """The dense float32 tensor of ``shape`` on ``device``, as ``structure.decode_dense`` fills
    it: a result below ``len(codebook)`` selects that centroid, anything else 0."""
    dev = checked_device(device)
    step = _chunk(dev, chunk)
    lookup = structure.torch_lookup(dev)
    values = torch.from_numpy(narrow.decode_table(codebook)).to(dev)
    last = values.numel() - 1
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    out = torch.empty(numel, dtype=torch.float32, device=dev)
    scratch = lookup.scratch(min(step, numel), dev)
    keys = torch.empty(min(step, numel), dtype=torch.int64, device=dev)
    for start in range(0, numel, step):
        stop = min(numel, start + step)
        n = stop - start
        torch.arange(start, stop, dtype=torch.int64, device=dev, out=keys[:n])
        q = lookup(keys[:n], scratch.view(n)).clamp_(max=last)
        torch.index_select(values, 0, q, out=out[start:stop])
    return out.reshape(shape)
