"""``weightless admin``: database migrations, teams, API keys, the S3 bucket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from app.cli_common import fail, guard, load_settings, one_line
from weightless_core.cli_guard import console, err_console

T = TypeVar("T")

admin = typer.Typer(help="Administer the service: database, teams, API keys.", no_args_is_help=True)


def _db_guard(fn: Callable[[Any], T]) -> T:
    """Run ``fn(session)`` in one transaction on the settings' database."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from app.db import (
        DatabaseNotMigratedError,
        check_migrated,
        make_engine,
        make_sessionmaker,
        transaction,
    )
    from app.errors import AppError
    from app.storage import StorageError

    def run() -> T:
        settings = load_settings()
        sqlite_file = settings.data_dir / "weightless.db"
        if not settings.database_url and not sqlite_file.exists():
            raise fail(f"no database at {sqlite_file}: run `weightless admin migrate` first")
        engine = make_engine(settings.effective_database_url)
        try:
            check_migrated(engine)
            with transaction(make_sessionmaker(engine)) as session:
                return fn(session)
        finally:
            engine.dispose()

    return guard(
        run,
        (AppError, lambda e: e.message),
        ((DatabaseNotMigratedError, LookupError, ValueError), str),
        (
            IntegrityError,
            lambda e: "that conflicts with an existing record (does it exist already?)",
        ),
        (OperationalError, lambda e: f"database unavailable: {one_line(e.orig)}"),
        (StorageError, lambda e: f"object storage unavailable: {one_line(e)}"),
    )


@admin.command()
def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from sqlalchemy.exc import OperationalError

    from app.db import upgrade

    def run() -> None:
        settings = load_settings()
        if not settings.database_url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.effective_database_url)
        console.print("[green]database is at the latest revision[/]")

    try:
        guard(run)
    except OperationalError as e:
        raise fail(f"database unavailable: {one_line(e.orig)}") from None


@admin.command("create-team")
def create_team(name: Annotated[str, typer.Argument(help="team name")]) -> None:
    """Create a team (then give it a key with create-key)."""
    from app.services.teams import create_team as create

    team = _db_guard(lambda session: create(session, name))
    console.print(f"[green]created team[/] {team.name} ({team.id})")


@admin.command("create-key")
def create_key(team: Annotated[str, typer.Argument(help="team name")]) -> None:
    """Create an API key for TEAM and print it (the only time it is shown)."""
    from app.services.teams import create_key as create

    key, plaintext = _db_guard(lambda session: create(session, team))
    err_console.print(
        f"new key {key.prefix}… for team {team}; store it now, it is not shown again:"
    )
    print(plaintext)  # alone on stdout, so `KEY=$(weightless admin create-key t)` works


@admin.command("revoke-key")
def revoke_key(
    prefix: Annotated[str, typer.Argument(help="the key's prefix, e.g. wl_AbCd1234")],
) -> None:
    """Revoke the API key starting with PREFIX; requests with it get 401 from now on."""
    from app.services.teams import revoke_key as revoke

    _db_guard(lambda session: revoke(session, prefix))
    console.print(f"[green]revoked[/] {prefix}")


@admin.command()
def gc(
    older_than: Annotated[
        int, typer.Option(min=0, help="only objects older than this many seconds")
    ] = 86400,
    dry_run: Annotated[bool, typer.Option(help="list what would go, remove nothing")] = False,
) -> None:
    """Remove stored objects no upload or job needs, and abandoned partial uploads (what a
    process killed mid-write leaves); safe to run while the service runs."""
    from datetime import timedelta

    from app.services.cleanup import collect_garbage
    from app.storage_factory import make_storage

    def run(session: Any) -> Any:
        storage = make_storage(load_settings())
        return collect_garbage(
            session, storage, older_than=timedelta(seconds=older_than), dry_run=dry_run
        )

    found = _db_guard(run)
    verb = "would remove" if dry_run else "removed"
    for key in (*found.uploads, *found.job_outputs):
        console.print(f"{verb} {key}", highlight=False)
    console.print(
        f"{verb} {len(found.uploads)} upload object(s), {len(found.job_outputs)} job "
        f"output(s); aborted {found.aborted_writes} unfinished write(s)"
        + (" (dry run: none aborted)" if dry_run else ""),
        highlight=False,
    )


@admin.command("create-bucket")
def create_bucket() -> None:
    """Create the S3 bucket named by WEIGHTLESS_S3_BUCKET if it does not exist (idempotent)."""

    def run() -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from app.s3storage import S3Storage

        settings = load_settings()
        s3, bucket = S3Storage.from_settings(settings).client, settings.s3_bucket
        try:
            s3.head_bucket(Bucket=bucket)
            console.print(f"bucket {bucket} exists")
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise fail(f"bucket {bucket}: {e}") from None
        except BotoCoreError as e:
            raise fail(f"object storage unavailable: {e}") from None
        try:
            s3.create_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as e:
            raise fail(f"cannot create bucket {bucket}: {e}") from None
        console.print(f"[green]created bucket[/] {bucket}")

    guard(run)
