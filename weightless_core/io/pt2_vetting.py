"""Vetting a ``torch.export.save`` (``.pt2``) archive before ``torch.export.load`` sees it.

``torch.export.load`` unpickles some payloads, ``eval``\\ s symbolic-shape strings, ``exec``\\ s
guard code and resolves graph targets to arbitrary callables. So only static-shape graphs (or
plain arithmetic on shape symbols) of ``torch.ops.aten`` operators whose tensors are stored raw
get through; anything else is a ``ModelLoadError`` naming the part refused.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from typing import Any

import torch

from weightless_core.errors import ModelLoadError
from weightless_core.io.model_files import (
    DEFAULT_MAX_BYTES,
    check_unpacked_size,
    read_member,
    reason,
    split_members,
)

# Members a torch.export.save archive may hold, relative to its single top-level folder.
_PT2_FIXED_MEMBERS = frozenset(
    {"archive_format", "archive_version", "byteorder", "version", ".format_version"}
    | {".storage_alignment"}
)
_PT2_MEMBER_PATTERNS = (
    re.compile(r"\.data/[A-Za-z0-9_.]+"),
    re.compile(r"models/[A-Za-z0-9_]+\.json"),
    re.compile(r"data/weights/weight_[0-9]+"),
    re.compile(r"data/weights/[A-Za-z0-9_]+_weights_config\.json"),
    re.compile(r"data/constants/tensor_[0-9]+"),
    re.compile(r"data/constants/[A-Za-z0-9_]+_constants_config\.json"),
    re.compile(r"data/sample_inputs/[A-Za-z0-9_]+\.pt"),
    re.compile(r"extra/[A-Za-z0-9_./-]+"),
)
# Graph node targets we let torch.export.load resolve: ATen operators and tuple indexing.
_PT2_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*")
# Plus Python's arithmetic on symbolic sizes (a batch times a sequence length): pure functions.
_PT2_EXTRA_TARGETS = frozenset(
    {"_operator.getitem"}
    | {f"_operator.{op}" for op in ("add", "sub", "mul", "floordiv", "mod", "neg")}
)
# Symbolic shapes (a dynamic batch dimension) are stored as strings that torch hands to
# sympy.sympify, which evaluates them. Only plain arithmetic on shape symbols is let through:
# the symbol declarations torch writes, names ``s<N>``, integers, + - * ( ), never ``**``.
_PT2_SYMBOL = re.compile(r"Symbol\('s\d+'(?:, (?:positive|integer)=True)*\)")
_PT2_SHAPE_EXPR = re.compile(r"[0-9s+\-*() ]{1,200}")
_PT2_SYMBOL_NAME = re.compile(r"s\d+")
_PT2_INTEGER = re.compile(r"Integer\((-?\d{1,18})\)")
_PT2_CALL = re.compile(r"(?:Mul|Add|Min|Max)\(")
_PT2_TOKEN = re.compile(r"(?:Mul|Add|Min|Max)\(|s\d+|\d+|[+\-*(), ]")
# The graph and the configs are parsed whole; no real model needs JSON this large.
_MAX_MEMBER_READ = 256 << 20


def vet_exported_program(blob: bytes, name: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse a ``.pt2`` archive unless loading it cannot run code stored in it.

    Rules: members from a fixed allowlist only (no AOTInductor libraries, no legacy pickled
    weight files); every weight/constant stored raw (``use_pickle`` false, plain tensors);
    sample inputs loadable with ``weights_only=True``; the graph has no ``guards_code``
    (exec'd), symbolic shapes (``expr_str``, eval'd by sympy) only as plain arithmetic on shape
    symbols (so a dynamic batch dimension works), and only ATen operator targets. The archive
    must unpack to at most ``max_bytes``, and members are read only up to their declared size
    (a zip bomb is refused before anything is inflated).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            check_unpacked_size(archive.infolist(), name, max_bytes)
            prefix, members = split_members(archive.namelist(), name)

            def read(member: str) -> bytes:
                return read_member(archive, f"{prefix}/{member}", _MAX_MEMBER_READ)

            _vet_members(members, read, name, max_bytes)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{name}: damaged exported-program archive: {reason(exc)}") from exc


def _vet_members(
    members: set[str], read: Callable[[str], bytes], name: str, max_bytes: int
) -> None:
    refuse = f"{name}: refusing exported program"
    for member in sorted(members):
        if member not in _PT2_FIXED_MEMBERS and not any(
            p.fullmatch(member) for p in _PT2_MEMBER_PATTERNS
        ):
            raise ModelLoadError(f"{refuse}: unexpected archive member {member!r}")
    if read("archive_format").decode(errors="replace").strip() != "pt2":
        raise ModelLoadError(f"{refuse}: archive_format is not 'pt2'")
    models = sorted(m[len("models/") : -len(".json")] for m in members if m.startswith("models/"))
    if "model" not in models:
        raise ModelLoadError(f"{refuse}: no models/model.json in the archive")
    for model in models:
        for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
            if legacy in members:
                raise ModelLoadError(f"{refuse}: {legacy} is a pickled legacy payload")
        for kind, prefix in (("weights", "weight_"), ("constants", "tensor_")):
            config = _json(read(f"data/{kind}/{model}_{kind}_config.json"), name)
            entries = config.get("config") if isinstance(config, dict) else None
            if not isinstance(entries, dict):
                raise ModelLoadError(f"{refuse}: malformed {kind} config")
            for fqn, meta in entries.items():
                if (
                    not isinstance(meta, dict)
                    or meta.get("use_pickle") is not False
                    or not str(meta.get("path_name", "")).startswith(prefix)
                ):
                    raise ModelLoadError(
                        f"{refuse}: {kind} entry {fqn!r} is pickled or not a plain tensor"
                    )
        sample = f"data/sample_inputs/{model}.pt"
        if sample in members and (inputs := read(sample)):
            if zipfile.is_zipfile(io.BytesIO(inputs)):  # a torch.save zip inside the archive
                with zipfile.ZipFile(io.BytesIO(inputs)) as inner:
                    check_unpacked_size(inner.infolist(), f"{name} (sample inputs)", max_bytes)
            try:
                torch.load(io.BytesIO(inputs), map_location="cpu", weights_only=True)
            except Exception as exc:  # any failure of the restricted unpickler
                raise ModelLoadError(f"{refuse}: sample inputs: {reason(exc)}") from exc
        graph = _json(read(f"models/{model}.json"), name)
        if not isinstance(graph, dict):
            raise ModelLoadError(f"{refuse}: malformed models/{model}.json")
        if graph.get("guards_code"):
            raise ModelLoadError(f"{refuse}: it carries guard code, which we never run")
        _check_range_constraints(graph.get("range_constraints"), refuse)
        for key, value in _walk(graph):
            if key == "expr_str" and not _safe_shape_expr(value):
                raise ModelLoadError(
                    f"{refuse}: symbolic shape expression {str(value)[:80]!r} is not plain "
                    "arithmetic on shape symbols"
                )
            if key == "target" and not (
                isinstance(value, str)
                and (_PT2_TARGET.fullmatch(value) or value in _PT2_EXTRA_TARGETS)
                and "__" not in value
            ):
                raise ModelLoadError(
                    f"{refuse}: graph target {str(value)[:80]!r} is not an ATen operator"
                )


def _safe_shape_expr(value: object) -> bool:
    """Plain arithmetic on shape symbols, as infix (``16*s0 + 1``) or as sympy's own
    spelling of it (``Mul(Integer(16), Symbol('s0', ...))``, which torch writes for a shape
    derived from the batch, e.g. a sequence flattened into it): the only calls allowed are
    Mul, Add, Min, Max and Integer, which sympy evaluates as the arithmetic they name."""
    if not isinstance(value, str) or len(value) > 400:
        return False
    plain = _PT2_SYMBOL.sub("s0", value)
    plain = _PT2_INTEGER.sub(r"(\1)", plain)
    if "**" in plain or "".join(_PT2_TOKEN.findall(plain)) != plain:
        return False
    return bool(_PT2_SHAPE_EXPR.fullmatch(_PT2_CALL.sub("(", plain).replace(",", "+")))


def _check_range_constraints(constraints: object, refuse: str) -> None:
    if constraints in (None, {}):
        return
    if not isinstance(constraints, dict):
        raise ModelLoadError(f"{refuse}: malformed range constraints")
    for name, bounds in constraints.items():
        ok = (
            isinstance(name, str)
            and _PT2_SYMBOL_NAME.fullmatch(name)
            and isinstance(bounds, dict)
            and set(bounds) <= {"min_val", "max_val"}
            and all(v is None or type(v) is int for v in bounds.values())
        )
        if not ok:
            raise ModelLoadError(f"{refuse}: range constraint {str(name)[:40]!r} is malformed")


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ModelLoadError(f"{name}: malformed JSON in exported program: {exc}") from exc


def _walk(node: Any) -> Iterable[tuple[str, Any]]:
    """Every ``(key, value)`` pair of a JSON document, depth first, without recursion."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
