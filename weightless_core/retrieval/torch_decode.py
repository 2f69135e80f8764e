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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weightless_core.errors import InvalidInputError
from weightless_core.hashing import MIX1, MIX2, seed_key
from weightless_core.retrieval import narrow
from weightless_core.retrieval.base import RetrievalStructure
from weightless_core.retrieval.ribbon import RibbonRetrieval

CPU_CHUNK = 1 << 20
"""Positions per chunk on CPU (about 80 MiB of temporaries)."""
CUDA_CHUNK = 1 << 23
"""Positions per chunk on CUDA: large enough to fill the device, about 640 MiB."""

_LO32 = 0xFFFFFFFF


def _signed(x: int) -> int:
    """The int64 with the bits of the uint64 ``x``."""
    return x - (1 << 64) if x >= 1 << 63 else x


@dataclass
class _Scratch:
    """Work tensors of one chunk, reused for every chunk: allocating fresh ones per op would
    cost more than the arithmetic (page faults on CPU, allocator traffic on CUDA)."""

    h: torch.Tensor
    g: torch.Tensor
    tmp: torch.Tensor
    mask: torch.Tensor
    cells: list[torch.Tensor]

    @classmethod
    def allocate(cls, size: int, arity: int, device: torch.device) -> _Scratch:
        def make() -> torch.Tensor:
            return torch.empty(size, dtype=torch.int64, device=device)

        return cls(make(), make(), make(), make(), [make() for _ in range(arity)])

    def view(self, n: int) -> _Scratch:
        """The first ``n`` positions of every buffer (the last chunk may be short)."""
        return _Scratch(
            self.h[:n], self.g[:n], self.tmp[:n], self.mask[:n], [c[:n] for c in self.cells]
        )


def _srl(z: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
    """Logical right shift of int64 bits into ``out``."""
    torch.bitwise_right_shift(z, s, out=out)
    return out.bitwise_and_((1 << (64 - s)) - 1)


def _mix_(z: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser (``hashing.mix64``) on int64 bits, in place."""
    z.bitwise_xor_(_srl(z, 30, tmp)).mul_(_signed(MIX1))
    z.bitwise_xor_(_srl(z, 27, tmp)).mul_(_signed(MIX2))
    return z.bitwise_xor_(_srl(z, 31, tmp))


def _mulhi32_(r: torch.Tensor, b: int, tmp: torch.Tensor) -> torch.Tensor:
    """``r = (r * b) >> 32`` for ``0 <= r, b < 2**32``, exact in int64, in place."""
    torch.bitwise_and(r, 0xFFFF, out=tmp).mul_(b).bitwise_right_shift_(16)  # low half * b
    return r.bitwise_right_shift_(16).mul_(b).add_(tmp).bitwise_right_shift_(16)


class _Layout:
    """Cell indices and mask of a structure's keys, as torch ops (one per structure kind)."""

    def __init__(self, structure: RetrievalStructure):
        self.kind = structure.kind
        self.t = structure.t
        self.sk = _signed(seed_key(structure.seed))
        self.arity = 3
        if self.kind == "bloomier":
            self.b = structure.num_cells // 3
        elif self.kind in ("fuse3", "fuse4"):
            self.arity = 3 if self.kind == "fuse3" else 4
            self.segs = structure.segment_count  # type: ignore[attr-defined]
            self.k = structure.segment_length.bit_length() - 1  # type: ignore[attr-defined]
        else:
            raise InvalidInputError(f"no torch decoder for structure {self.kind!r}")

    def locate(self, keys: torch.Tensor, w: _Scratch) -> None:
        """Cell indices of ``keys`` into ``w.cells``, their t-bit masks into ``w.mask``."""
        h, tmp, mask = w.h, w.tmp, w.mask
        torch.add(keys, self.sk, out=h)
        _mix_(h, tmp)
        tmask = (1 << self.t) - 1
        c = w.cells
        if self.kind == "bloomier":
            b = self.b
            torch.bitwise_and(h, _LO32, out=c[0])
            _mulhi32_(c[0], b, tmp)
            # low 32 bits of rotl(h, 21), then of rotl(h, 42)
            torch.bitwise_and(h, 0x7FF, out=c[1]).bitwise_left_shift_(21)
            c[1].bitwise_or_(_srl(h, 43, tmp))
            _mulhi32_(c[1], b, tmp).add_(b)
            _srl(h, 22, c[2]).bitwise_and_(_LO32)
            _mulhi32_(c[2], b, tmp).add_(2 * b)
            _srl(h, 32, mask).bitwise_xor_(h).bitwise_and_(tmask)
            return
        g = w.g
        g.copy_(h)
        _mix_(g, tmp)
        lmask = (1 << self.k) - 1
        base = _srl(h, 32, mask)  # the mask's buffer holds the segment start for a moment
        _mulhi32_(base, self.segs, tmp).bitwise_left_shift_(self.k)
        width = 64 // self.arity
        torch.bitwise_and(g, lmask, out=c[0]).add_(base)
        for j in range(1, self.arity):
            _srl(g, width * j, c[j]).bitwise_and_(lmask).add_(base + (j << self.k))
        torch.bitwise_and(h, tmask, out=mask)


def _device_cells(structure: RetrievalStructure, device: torch.device) -> torch.Tensor:
    """The table unpacked on ``device``: uint8 (t <= 8), int16 bits (t <= 16) or int64."""
    cells = structure.narrow_cells()
    if cells.dtype == np.uint16:
        cells = cells.view(np.int16)  # same bits; xor does not care about the sign
    elif cells.dtype == np.uint32:
        cells = cells.astype(np.int64)  # torch's uint32 supports too few operations
    return torch.from_numpy(cells).to(device)


class _CellLookup:
    """Structures whose query xors a few cells (Bloomier, binary fuse)."""

    def __init__(self, structure: RetrievalStructure, device: torch.device):
        self.layout = _Layout(structure)
        self.table = _device_cells(structure, device)
        self.t = structure.t

    def scratch(self, size: int, device: torch.device) -> _Scratch:
        return _Scratch.allocate(size, self.layout.arity, device)

    def __call__(self, keys: torch.Tensor, w: _Scratch) -> torch.Tensor:
        """int64 t-bit results (in ``w.mask``) for int64 ``keys`` (bits of uint64 keys)."""
        self.layout.locate(keys, w)
        acc = torch.index_select(self.table, 0, w.cells[0])  # faster than ``table[i]`` on CPU
        for c in w.cells[1:]:
            acc.bitwise_xor_(torch.index_select(self.table, 0, c))
        if acc.dtype != torch.int64:
            acc = acc.to(torch.int64).bitwise_and_((1 << self.t) - 1)
        return w.mask.bitwise_xor_(acc)


class _RibbonLookup:
    """Ribbon retrieval: per bit plane, the parity of the key's 128-bit row ANDed with the
    plane's window at its start (``ribbon._query_one``), on int64 bits."""

    def __init__(self, structure: RibbonRetrieval, device: torch.device):
        planes = np.ascontiguousarray(structure.planes()).view(np.int64)
        self.planes = torch.from_numpy(planes.reshape(-1).copy()).to(device)
        self.t = structure.t
        self.sk = _signed(seed_key(structure.seed))
        self.spots = structure.num_cells - 127

    def scratch(self, size: int, device: torch.device) -> _Scratch:
        return _Scratch.allocate(size, 4, device)

    def __call__(self, keys: torch.Tensor, w: _Scratch) -> torch.Tensor:
        h, tmp, out = w.h, w.tmp, w.mask
        lo, hi, first, off = w.cells
        torch.add(keys, self.sk, out=h)
        _mix_(h, tmp)
        lo.copy_(h)
        _mix_(lo, tmp)
        hi.copy_(lo)
        _mix_(hi, tmp)
        lo.bitwise_or_(1)
        start = _srl(h, 32, first)
        _mulhi32_(start, self.spots, tmp)
        torch.bitwise_and(start, 63, out=off)
        first.bitwise_right_shift_(6).mul_(self.t)  # index of the first word's plane 0
        shifted = off != 0
        safe = torch.where(shifted, off, torch.ones_like(off))
        keep = torch.bitwise_left_shift(torch.ones_like(safe), 64 - safe).sub_(1)
        out.zero_()
        for b in range(self.t):
            a0 = torch.index_select(self.planes, 0, first + b)
            a1 = torch.index_select(self.planes, 0, first + (self.t + b))
            a2 = torch.index_select(self.planes, 0, first + (2 * self.t + b))
            w0 = _window(a0, a1, safe, keep, shifted)
            w1 = _window(a1, a2, safe, keep, shifted)
            x = w0.bitwise_and_(lo).bitwise_xor_(w1.bitwise_and_(hi))
            for shift in (32, 16, 8, 4):  # arithmetic shifts: the low bits fold the same
                x.bitwise_xor_(torch.bitwise_right_shift(x, shift))
            parity = torch.bitwise_right_shift(torch.full_like(x, 0x6996), x.bitwise_and_(15))
            out.bitwise_or_(parity.bitwise_and_(1).bitwise_left_shift_(b))
        return out.bitwise_xor_(h.bitwise_and_((1 << self.t) - 1))


def _window(
    a: torch.Tensor, b: torch.Tensor, safe: torch.Tensor, keep: torch.Tensor, shifted: torch.Tensor
) -> torch.Tensor:
    """64 bits from bit ``off`` of the 128-bit ``b:a`` (``off`` 0..63; ``safe`` is ``off``
    with 0 replaced by 1 and ``keep`` the mask of a logical shift by it)."""
    right = torch.bitwise_right_shift(a, safe).bitwise_and_(keep)
    right.bitwise_or_(torch.bitwise_left_shift(b, 64 - safe))
    return torch.where(shifted, right, a)


def _lookup_for(structure: RetrievalStructure, device: torch.device) -> _CellLookup | _RibbonLookup:
    if isinstance(structure, RibbonRetrieval):
        return _RibbonLookup(structure, device)
    return _CellLookup(structure, device)


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
    lookup = _lookup_for(structure, dev)
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
    lookup = _lookup_for(structure, dev)
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
