"""Where benchmark results go: one shared helper, ``record``, for every ``benchmarks/*.py``.

Stable API (other benchmark scripts depend on it)::

    from _results import record   # scripts run as ``python benchmarks/<name>.py``
    record(
        "core",                             # section name: [a-z0-9_-]+, one per script/table
        title="Core kernels",               # heading of the section in BENCHMARKS.md
        command="python benchmarks/bench_core.py",  # the exact command that produced it
        markdown="| a | b |\\n|---|---|\\n| 1 | 2 |",  # body: tables, notes (no heading)
        data={"decode_seconds": 0.61},      # JSON-serialisable numbers for machines
    )

Effects:

* ``BENCHMARKS.md`` (repository root): the section between ``<!-- section:NAME -->`` and
  ``<!-- /section:NAME -->`` is replaced (or appended if new); every other section and the text
  outside sections are kept byte for byte. The section holds the title, the date (UTC), the
  command, the machine (CPU count and model, Python/numpy/numba/torch versions, load average)
  and ``markdown``.
* ``benchmarks/results.json``: a JSON object keyed by section; ``results[NAME]`` becomes
  ``{"title", "date", "command", "machine", "data"}``. Other sections are kept.

Both files are written atomically (temporary file, then rename) under an exclusive lock, so
scripts may run concurrently. numpy scalars and arrays in ``data`` are converted to JSON.
``machine_info()`` is exposed for scripts that want to print it, and ``command_line(__file__,
argv)`` builds the ``command`` of a script run as ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
import re
import shlex
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from weightless_core.io.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS_JSON = ROOT / "benchmarks" / "results.json"

_HEADER = (
    "# Benchmarks\n\n"
    "Written by the scripts in `benchmarks/` (`make bench`); each section is replaced by the "
    "script named in it, so edit the scripts, not the sections. How we measure: "
    "`docs/benchmarks.md` (medians of several runs, ratios against references measured in "
    "the same process).\n"
)
_SECTION_NAME = re.compile(r"[a-z0-9_-]+")

__all__ = ["BENCHMARKS_MD", "RESULTS_JSON", "machine_info", "record", "recorded"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU count and model, OS, interpreter and library versions, load average."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "torch": _version("torch"),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    if "numba" in sys.modules:  # only when the script already uses numba
        info["numba_threads"] = sys.modules["numba"].get_num_threads()
    return info


def _machine_line(info: dict[str, Any]) -> str:
    parts = [
        f"{info['cpus_usable']} CPUs usable ({info['cpu_count']} online, {info['cpu_model']})",
        f"Python {info['python']}",
        f"numpy {info['numpy']}",
        f"numba {info['numba']}",
        f"torch {info['torch']}",
    ]
    if "numba_threads" in info:
        parts.append(f"{info['numba_threads']} numba threads")
    if "load_average_1m" in info:
        parts.append(f"load average {info['load_average_1m']}")
    return ", ".join(parts)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    fd = os.open(RESULTS_JSON.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _replace_section(document: str, section: str, block: str) -> str:
    start, end = f"<!-- section:{section} -->", f"<!-- /section:{section} -->"
    i = document.find(start)
    if i >= 0:
        j = document.find(end, i)
        if j < 0:
            raise ValueError(f"{BENCHMARKS_MD.name}: section {section!r} has no end marker")
        return document[:i] + block + document[j + len(end) :]
    return document.rstrip("\n") + "\n\n" + block + "\n"


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that ran ``script`` (a ``__file__``) with ``argv`` (``None``: this process's
    arguments), with paths relative to the repository, for ``record(command=...)``."""
    python = os.path.relpath(sys.executable, ROOT)
    path = os.path.relpath(Path(script).resolve(), ROOT)
    return shlex.join([python, path, *(argv if argv is not None else sys.argv[1:])])


def recorded(section: str) -> dict[str, Any]:
    """The ``data`` last recorded for ``section`` (empty if none), so that a script run in parts
    (``--pairs``) can keep the parts an earlier run recorded."""
    if not RESULTS_JSON.is_file():
        return {}
    entry = json.loads(RESULTS_JSON.read_text("utf-8")).get(section)
    data = entry.get("data") if isinstance(entry, dict) else None
    return data if isinstance(data, dict) else {}


def record(section: str, *, title: str, command: str, markdown: str, data: dict) -> None:
    """Replace section ``section`` of BENCHMARKS.md and of benchmarks/results.json."""
    if not _SECTION_NAME.fullmatch(section):
        raise ValueError(f"section name must match [a-z0-9_-]+, got {section!r}")
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    fence = "``" if "`" in command else "`"
    block = (
        f"<!-- section:{section} -->\n"
        f"## {title}\n\n"
        f"- Date: {date}\n"
        f"- Command: {fence}{command}{fence}\n"
        f"- Machine: {_machine_line(info)}\n\n"
        f"{markdown.strip()}\n"
        f"<!-- /section:{section} -->"
    )
    entry = {"title": title, "date": date, "command": command, "machine": info, "data": data}
    payload = json.dumps(entry, default=_json_default)  # fail before touching any file
    with _locked():
        document = BENCHMARKS_MD.read_text("utf-8") if BENCHMARKS_MD.exists() else _HEADER
        results: dict[str, Any] = {}
        if RESULTS_JSON.exists():
            results = json.loads(RESULTS_JSON.read_text("utf-8"))
            if not isinstance(results, dict):
                raise ValueError(f"{RESULTS_JSON} does not hold a JSON object; fix it by hand")
        results[section] = json.loads(payload)
        write_text_atomic(BENCHMARKS_MD, _replace_section(document, section, block))
        write_text_atomic(RESULTS_JSON, json.dumps(results, indent=2, sort_keys=True) + "\n")
