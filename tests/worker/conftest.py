"""Worker test helpers: a small trained TorchScript model, settings, and a job factory that
writes real rows (team, uploads, job) and real objects, exactly as the API would."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.config import Settings
from app.db import transaction
from app.models import Job, Team, Upload
from app.storage import LocalStorage, Storage
from weightless_core.models.reference import train_and_save

FAST = {"preset": "fast", "sparsity": 0.8, "t": 9}

MakeJob = Callable[..., uuid.UUID]


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript LeNet-300-100 trained for 2 epochs on the 8x8 ``digits`` set."""
    path = tmp_path_factory.mktemp("models") / "lenet-digits.pt"
    train_and_save("lenet-300-100", "digits", path, epochs=2)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        scratch_dir=tmp_path / "scratch",
        progress_interval_seconds=0.0,
        job_lease_seconds=60,
    )


@pytest.fixture
def local_storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.storage_path)


def _upload(s: Any, storage: Storage, team: Team, kind: str, content: bytes | Path) -> Upload:
    data = content.read_bytes() if isinstance(content, Path) else content
    key = f"uploads/{hashlib.sha256(data).hexdigest()}"
    stored = storage.put_stream(key, iter([data]), max_bytes=1 << 40)
    row = Upload(
        team_id=team.id,
        kind=kind,
        filename="lenet.pt" if kind == "model" else "data.npz",
        size=stored.size,
        sha256=stored.sha256,
        format="unknown",
        storage_key=key,
    )
    s.add(row)
    s.flush()
    return row


@pytest.fixture
def make_job(sessions: Any) -> MakeJob:
    """``make_job(storage, model=..., dataset=None, builtin="digits", job_settings=FAST,
    db=None, **row)`` uploads the files and inserts a queued job (in the test PostgreSQL, or
    the sessionmaker ``db``); returns its id."""

    def make(
        storage: Storage,
        *,
        model: bytes | Path,
        db: Any = None,
        dataset: bytes | Path | None = None,
        builtin: str | None = "digits",
        job_settings: dict[str, Any] | None = None,
        **row: Any,
    ) -> uuid.UUID:
        with transaction(db or sessions) as s:
            team = Team(name=f"team-{uuid.uuid4().hex[:8]}")
            s.add(team)
            s.flush()
            model_row = _upload(s, storage, team, "model", model)
            data_row = _upload(s, storage, team, "dataset", dataset) if dataset else None
            job = Job(
                team_id=team.id,
                model_id=model_row.id,
                dataset_id=data_row.id if data_row else None,
                dataset_builtin=None if data_row else builtin,
                settings=FAST if job_settings is None else job_settings,
                **row,
            )
            s.add(job)
            s.flush()
            return job.id

    return make


@pytest.fixture
def progress_log(db: Engine) -> Iterator[Callable[[uuid.UUID], list[dict[str, Any]]]]:
    """Every value ``jobs.progress`` took, recorded by a trigger (the writes commit one by one,
    so a poller would miss some); returns a reader by job id."""
    with db.begin() as c:
        c.execute(text("CREATE TABLE wl_progress_log (n serial, job_id uuid, progress jsonb)"))
        c.execute(
            text(
                "CREATE FUNCTION wl_log_progress() RETURNS trigger AS $$ BEGIN "
                "INSERT INTO wl_progress_log (job_id, progress) VALUES (NEW.id, NEW.progress); "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        c.execute(
            text(
                "CREATE TRIGGER wl_progress AFTER UPDATE OF progress ON jobs "
                "FOR EACH ROW EXECUTE FUNCTION wl_log_progress()"
            )
        )

    def read(job_id: uuid.UUID) -> list[dict[str, Any]]:
        with db.connect() as c:
            rows = c.execute(
                text("SELECT progress FROM wl_progress_log WHERE job_id = :j ORDER BY n"),
                {"j": job_id},
            )
            return [r[0] for r in rows]

    yield read
    with db.begin() as c:
        c.execute(text("DROP TRIGGER wl_progress ON jobs"))
        c.execute(text("DROP FUNCTION wl_log_progress()"))
        c.execute(text("DROP TABLE wl_progress_log"))
