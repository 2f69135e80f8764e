"""Retrieval structures, by name and by file-format code."""

from __future__ import annotations

from weightless_core.retrieval.base import MAX_T, RetrievalStructure
from weightless_core.retrieval.bloomier import BloomierFilter
from weightless_core.retrieval.fuse import BinaryFuse3, BinaryFuse4
from weightless_core.retrieval.ribbon import RibbonRetrieval

STRUCTURES: dict[str, type[RetrievalStructure]] = {
    s.kind: s for s in (BloomierFilter, BinaryFuse3, BinaryFuse4, RibbonRetrieval)
}
BY_CODE: dict[int, type[RetrievalStructure]] = {s.code: s for s in STRUCTURES.values()}

__all__ = [
    "BY_CODE",
    "MAX_T",
    "STRUCTURES",
    "BinaryFuse3",
    "BinaryFuse4",
    "BloomierFilter",
    "RetrievalStructure",
    "RibbonRetrieval",
]
