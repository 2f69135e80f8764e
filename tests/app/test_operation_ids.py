"""OpenAPI operation ids are what generated clients name their functions after."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from app.config import Settings
from app.main import create_app
from app.storage import LocalStorage


def test_operation_ids_are_short_unique_snake_case_names():
    settings = Settings(environment="test", database_url="sqlite://")
    storage = LocalStorage(Path(tempfile.gettempdir()) / "weightless-unused")
    schema = create_app(settings, storage=storage).openapi()  # connects to nothing
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(ids)
    bad = [i for i in ids if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) or len(i) > 30]
    assert not bad, bad
    assert {"submit_job", "get_job", "list_jobs", "upload_model", "get_report"} <= set(ids)
