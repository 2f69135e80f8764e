"""Fetching a job's inputs into its scratch folder and parsing them, only here, safely.

User files are read with ``weightless_core``'s loaders, which never unpickle arbitrary objects
(TorchScript and vetted ``.pt2`` archives, ``weights_only`` state dicts, ``.npz`` without
pickle, safetensors), after checking their size against the service limits. The same limits
bound what a file may unpack to, so a small zip bomb cannot claim more memory than an
uncompressed upload could.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from torch import nn

from app.config import Settings
from app.db import transaction
from app.models import Upload
from app.storage import Storage
from weightless_core.io.data import BUILTIN_DATASETS, Dataset, load_data_file, load_dataset
from weightless_core.io.model_files import WEIGHTS_ONLY, detect_format
from weightless_core.io.modelio import load_model
from worker.claim import Claim
from worker.errors import JobFailed

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ +-]{0,99}")


def _upload(
    sessions: sessionmaker[Session], claim: Claim, upload_id: uuid.UUID | None, kind: str
) -> Upload:
    with transaction(sessions) as s:
        row = s.scalar(select(Upload).where(Upload.id == upload_id)) if upload_id else None
    # The team check repeats the API's: a job may only read its own team's files.
    if row is None or row.team_id != claim.team_id or row.kind != kind:
        raise JobFailed("input_missing", f"the {kind} file of this job was deleted")
    return row


def _download(storage: Storage, upload: Upload, folder: Path, *, limit: int, kind: str) -> Path:
    """The upload under its own (sanitised) name, so error messages name the user's file."""
    name = Path(upload.filename).name
    dest = folder / kind / (name if _SAFE_NAME.fullmatch(name) else kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    too_large = JobFailed(
        "bad_model" if kind == "model" else "bad_data",
        f"the {kind} file is larger than this service's limit of {limit} bytes",
    )
    if upload.size > limit:
        raise too_large
    storage.download(upload.storage_key, dest)
    if dest.stat().st_size > limit:  # the row's size is the API's word; check the bytes too
        raise too_large
    return dest


def fetch_model(
    sessions: sessionmaker[Session],
    storage: Storage,
    claim: Claim,
    scratch: Path,
    settings: Settings,
) -> nn.Module:
    """The job's model as a CPU module; TorchScript and ``.pt2`` archives carry their graph.

    Plain weights (safetensors, a ``state_dict``) have no code: a job without a data set
    compresses them data-free as a ``TensorModel``; with a data set it fails before the file
    is even parsed, as nothing could run the retraining.
    """
    upload = _upload(sessions, claim, claim.model_id, "model")
    path = _download(storage, upload, scratch, limit=settings.max_model_bytes, kind="model")
    # ModelLoadError for anything that is not a model we can read (damaged, truncated, a bomb)
    fmt = detect_format(path, max_bytes=settings.max_model_bytes)
    with_data = claim.dataset_id is not None or claim.dataset_builtin is not None
    if fmt in WEIGHTS_ONLY and with_data:
        raise JobFailed(
            "arch_required",
            f"the model is plain weights ({fmt}) without an architecture, so it cannot be "
            "retrained on a data set; start the job without a data set to compress it "
            "data-free, or upload a TorchScript archive (torch.jit.save) or an exported "
            "program (torch.export.save, .pt2) to retrain it",
        )
    return load_model(path, max_bytes=settings.max_model_bytes).module


def fetch_dataset(
    sessions: sessionmaker[Session],
    storage: Storage,
    claim: Claim,
    scratch: Path,
    settings: Settings,
) -> Dataset | None:
    """The uploaded ``.npz``/safetensors file, a built-in set by name, or ``None`` (data-free)."""
    if claim.dataset_id is not None:
        upload = _upload(sessions, claim, claim.dataset_id, "dataset")
        path = _download(storage, upload, scratch, limit=settings.max_dataset_bytes, kind="dataset")
        return load_data_file(path, max_bytes=settings.max_dataset_bytes)
    if claim.dataset_builtin is not None:
        # Only names: load_dataset would also take a path, which must never come from a user.
        if claim.dataset_builtin not in BUILTIN_DATASETS:
            raise JobFailed(
                "bad_data",
                f"unknown built-in dataset {claim.dataset_builtin!r}; "
                f"choose one of {', '.join(BUILTIN_DATASETS)}",
            )
        return load_dataset(claim.dataset_builtin)
    return None
