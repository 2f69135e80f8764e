"""Storage garbage collection against the database: what goes, what stays, and the age guard
that keeps writes in flight safe (PostgreSQL, a LocalStorage folder)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

from apikit import job_id, upload_id
from dashkit import fail, set_job, succeed
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app as cli
from app.db import transaction
from app.models import Upload
from app.services.cleanup import collect_garbage
from app.storage import TMP_PREFIX, LocalStorage

HOUR = timedelta(hours=1)


def _put(storage: LocalStorage, key: str) -> str:
    storage.put_stream(key, iter([b"x" * 10]), max_bytes=100)
    return key


def _age_all(storage: LocalStorage, seconds: float = 2 * 3600) -> None:
    """Everything stored so far was written ``seconds`` ago."""
    for path in storage.root.rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_garbage_goes_and_everything_needed_stays(client, alice, sessions, storage):
    model = upload_id(client, alice)
    ok, failed, running = job_id(client, alice), job_id(client, alice), job_id(client, alice)
    succeed(sessions, storage, ok)
    fail(sessions, failed, "storage_error", "storage was down")
    set_job(sessions, running, status="running")
    leftovers = [_put(storage, f"jobs/{failed}/model.wlss"), _put(storage, f"jobs/{ok}/old.bin"),
                 _put(storage, f"jobs/{uuid.uuid4()}/model.wlss")]  # fmt: skip
    in_flight = _put(storage, f"jobs/{running}/model.wlss")
    orphan = _put(storage, "uploads/orphan-of-a-killed-api")
    fresh = _put(storage, "uploads/being-committed-right-now")
    foreign = _put(storage, "jobs/not-a-job-id/file")
    (storage.root / "uploads" / f"{TMP_PREFIX}abandoned").write_bytes(b"half an upload")
    _age_all(storage)
    os.utime(storage.local_path(fresh), None)  # written just now
    tmp = storage.root / "uploads" / f"{TMP_PREFIX}abandoned"
    with transaction(sessions) as s:
        kept_uploads = set(s.scalars(select(Upload.storage_key)))

    with transaction(sessions) as s:
        dry = collect_garbage(s, storage, older_than=HOUR, dry_run=True)
    assert sorted(dry.uploads) == [orphan] and sorted(dry.job_outputs) == sorted(leftovers)
    assert storage.exists(orphan) and tmp.exists()  # a dry run removes nothing

    with transaction(sessions) as s:
        found = collect_garbage(s, storage, older_than=HOUR)
    assert (found.uploads, sorted(found.job_outputs)) == ([orphan], sorted(leftovers))
    assert found.aborted_writes == 1 and not tmp.exists()
    for key in (orphan, *leftovers):
        assert not storage.exists(key)
    for key in (fresh, in_flight, foreign, *kept_uploads):
        assert storage.exists(key), key
    for what in ("model.wlss", "report.json", "report.html"):
        assert storage.exists(f"jobs/{ok}/{what}")
    assert client.get(f"/v1/models/{model}", headers=alice.auth).status_code == 200
    with transaction(sessions) as s:
        assert collect_garbage(s, storage, older_than=HOUR).total == 0  # nothing left to do


def test_admin_gc_command(client, alice, settings, storage, sessions, monkeypatch):
    for name, value in {"DATABASE_URL": settings.database_url,
                        "DATA_DIR": str(storage.root.parent / "data")}.items():  # fmt: skip
        monkeypatch.setenv(f"WEIGHTLESS_{name}", value)
    local = LocalStorage(storage.root.parent / "data" / "objects")
    orphan = _put(local, "uploads/orphan")
    _age_all(local)
    runner = CliRunner()
    dry = runner.invoke(cli, ["admin", "gc", "--older-than", "60", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would remove {orphan}" in dry.output and local.exists(orphan)
    done = runner.invoke(cli, ["admin", "gc", "--older-than", "60"])
    assert done.exit_code == 0, done.output
    assert "removed 1 upload object(s)" in done.output and not local.exists(orphan)
