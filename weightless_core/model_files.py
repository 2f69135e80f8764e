"""What every model-file reader shares: PyTorch's zip layout and how a refusal is worded.

Detection (``modelio``) and ``.pt2`` vetting (``pt2_vetting``) both split archives with
``split_members`` and explain failures with ``reason``, so their messages read alike.
"""

from __future__ import annotations

import re

from weightless_core.errors import ModelLoadError

SUPPORTED = (
    "supported formats are TorchScript (torch.jit.save), torch.export programs "
    "(torch.export.save, .pt2), a torch.save'd state_dict of plain tensors, and safetensors"
)
_MAX_REASON_CHARS = 400


def split_members(names: list[str], name: str) -> tuple[str, set[str]]:
    """The archive's top-level folder and its members relative to it (torch's zip layout)."""
    if not names:
        raise ModelLoadError(f"not a model file we can load safely: {name} is an empty zip")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{name}: zip archive has duplicate member names; refusing it")
    prefix = names[0].split("/", 1)[0]
    if "/" not in names[0] or not prefix or any(not n.startswith(prefix + "/") for n in names):
        raise ModelLoadError(
            f"not a model file we can load safely: {name} is a zip archive but not one written "
            f"by PyTorch (members are not under one folder); {SUPPORTED}"
        )
    return prefix, {n[len(prefix) + 1 :] for n in names}


def reason(exc: BaseException) -> str:
    """One line saying why a loader failed (torch's messages run to paragraphs)."""
    text = str(exc).strip() or type(exc).__name__
    if text.startswith("Weights only load failed"):
        # torch's first paragraph advises weights_only=False, which is exactly what we refuse.
        details = [
            p.strip().removeprefix("WeightsUnpickler error:").strip()
            for p in re.split(r"\n\s*\n", text)[1:]
            if p.strip() and not p.strip().startswith(("Check the documentation", "("))
        ]
        line = details[0].splitlines()[0] if details else "unsupported content"
        line = f"the pickle holds more than plain tensors, refused unrun ({line})"
    else:
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    if len(line) > _MAX_REASON_CHARS:
        line = line[: _MAX_REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {line}"
