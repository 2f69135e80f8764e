"""The production files, checked without a Docker engine: docker-compose.yml parsed as YAML, the
Dockerfile as text. They must name only settings the code has, give production everything it
needs, keep secrets out of the repository, and start modules that exist.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.queue import QUEUE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
APP_ROLES = ("api", "worker", "migrate")
PRODUCTION_NEEDS = (
    "environment", "database_url", "broker_url", "storage_backend",
    "s3_endpoint_url", "s3_bucket", "secret_key",
)  # fmt: skip
REF = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def env(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?msg}`` with defaults taken and required
    variables given a long stand-in value (as an operator would)."""

    def sub(m: re.Match[str]) -> str:
        return m.group(3) if m.group(2) in (":-", "-") else f"stand-in-value-for-{m.group(1)}"

    return REF.sub(sub, value)


def dockerfile_json(instruction: str) -> list[str]:
    """The exec-form argument list of the last ``instruction`` (CMD, ENTRYPOINT, ...)."""
    joined = DOCKERFILE.replace("\\\n", " ")
    lines = [ln for ln in joined.splitlines() if ln.strip().startswith(f"{instruction} ")]
    assert lines, f"Dockerfile has no {instruction}"
    argv = lines[-1].strip()[len(instruction) :].strip()
    if argv.startswith("CMD "):  # HEALTHCHECK [options] CMD [...]
        argv = argv[4:]
    return json.loads(argv[argv.index("[") :])


def module_defines(module: str, name: str) -> bool:
    """``module`` is a file in this repository that assigns or defines ``name`` at top level."""
    path = ROOT / Path(*module.split("."))
    path = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
    if not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


# -- compose -----------------------------------------------------------------------------------


def test_every_service_is_there():
    assert {"api", "worker", "migrate", "postgres", "redis", "s3"} <= set(SERVICES)


def test_api_and_s3_publish_their_ports():
    def container_ports(service: str) -> set[str]:
        return {str(p).rsplit(":", 1)[-1] for p in SERVICES[service].get("ports", [])}

    assert "8000" in container_ports("api")
    assert "8333" in container_ports("s3")  # clients fetch presigned downloads from it
    for internal in ("postgres", "redis"):
        assert not SERVICES[internal].get("ports"), f"{internal} should not be published"


@pytest.mark.parametrize("service", ["api", "postgres", "redis", "s3"])
def test_long_running_services_have_healthchecks(service: str):
    check = SERVICES[service]["healthcheck"]
    assert not check.get("disable")
    assert check["test"][0] in ("CMD", "CMD-SHELL")


def test_healthchecks_probe_the_right_thing():
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert "ping" in SERVICES["redis"]["healthcheck"]["test"]
    assert ":8333/" in " ".join(SERVICES["s3"]["healthcheck"]["test"])


@pytest.mark.parametrize(("service", "path"), [
    ("postgres", "/var/lib/postgresql/data"), ("redis", "/data"), ("s3", "/data"),
])  # fmt: skip
def test_stateful_services_keep_data_on_named_volumes(service: str, path: str):
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in SERVICES[service]["volumes"]}
    assert path in mounts
    assert mounts[path] in (COMPOSE.get("volumes") or {}), "volume must be declared"


def test_every_weightless_variable_in_compose_is_a_setting():
    fields = {f"WEIGHTLESS_{name.upper()}" for name in Settings.model_fields}
    used = set(re.findall(r"\bWEIGHTLESS_[A-Z0-9_]+\b", COMPOSE_TEXT))
    for service in SERVICES:
        used |= {k for k in env(service) if k.startswith("WEIGHTLESS_")}
    assert used, "compose configures nothing?"
    assert used <= fields, f"not settings: {sorted(used - fields)}"


@pytest.mark.parametrize("service", APP_ROLES)
def test_app_roles_get_everything_production_needs(service: str):
    variables = env(service)
    missing = [n for n in PRODUCTION_NEEDS if f"WEIGHTLESS_{n.upper()}" not in variables]
    assert not missing, f"{service} lacks {missing}"
    assert variables["WEIGHTLESS_ENVIRONMENT"] == "production"
    assert variables["WEIGHTLESS_STORAGE_BACKEND"] == "s3"
    assert variables["WEIGHTLESS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert variables["WEIGHTLESS_BROKER_URL"].startswith("redis://redis:")
    assert variables["WEIGHTLESS_S3_ENDPOINT_URL"] == "http://s3:8333"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(variables)


@pytest.mark.parametrize("service", APP_ROLES)
def test_compose_environment_makes_valid_production_settings(service, monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"WEIGHTLESS_{name.upper()}", raising=False)
    for key, value in env(service).items():
        monkeypatch.setenv(key, interpolate(value))
    settings = Settings()  # the validators refuse placeholder secrets and bad time limits
    assert settings.environment == "production"
    assert settings.redis_visibility_timeout > settings.job_hard_time_limit


def test_no_literal_secrets():
    for name in SERVICES:
        for key, value in env(name).items():
            if any(word in key for word in ("SECRET", "PASSWORD", "KEY", "TOKEN")):
                m = REF.fullmatch(value)
                assert m, f"{name}.{key} must be a ${{...}} reference, not a literal"
                assert m.group(2) in (None, ":?", "?"), f"{name}.{key} must not have a default"
        for key, value in env(name).items():
            if "://" in value and "@" in value:  # credentials inside a URL
                userinfo = value.split("://", 1)[1].split("@", 1)[0]
                if ":" in userinfo:
                    password = userinfo.split(":", 1)[1]
                    assert REF.fullmatch(password), f"{name}.{key} has a literal password"


def test_app_roles_wait_for_migrations_and_healthy_backends():
    for service in ("api", "worker"):
        deps = SERVICES[service]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        for backend in ("postgres", "redis", "s3"):
            assert deps[backend]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"].get("restart") == "no"


def test_api_command_is_the_uvicorn_factory():
    cmd = command("api")
    assert cmd[0] == "uvicorn" and "--factory" in cmd
    assert "app.main:build_app" in cmd
    assert cmd[cmd.index("--port") + 1] == "8000" and cmd[cmd.index("--host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("where", ["compose", "Dockerfile"])
def test_api_is_served_with_the_header_deadline_protocol(where: str):
    """uvicorn alone never closes a connection whose headers never end (issue 13)."""
    cmd = command("api") if where == "compose" else dockerfile_json("CMD")
    assert cmd[cmd.index("--http") + 1] == "app.server:GuardedH11Protocol"
    assert module_defines("app.server", "GuardedH11Protocol")


def test_worker_command_consumes_the_queue_the_api_sends_to():
    cmd = command("worker")
    assert cmd[:2] == ["celery", "-A"] and cmd[2] == "worker.celery_app" and "worker" in cmd[3:]
    assert cmd[cmd.index("-Q") + 1] == QUEUE
    # one job per worker; a prefork child killed mid-job is replaced and the job re-queued
    assert "--pool=prefork" in cmd and "--concurrency=1" in cmd


def test_worker_scales_with_replicas_and_a_gpu_worker_reserves_a_device():
    assert "replicas" in SERVICES["worker"]["deploy"]
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]  # only with --profile gpu: CPU-only hosts are unaffected
    assert command("worker-gpu") == command("worker")  # the same queue, the same job loop
    assert gpu["environment"] == SERVICES["worker"]["environment"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert gpu["build"]["context"] == "."
    assert "/whl/cu" in interpolate(gpu["build"]["args"]["TORCH_INDEX_URL"])
    assert interpolate(gpu["image"]) != interpolate(SERVICES["worker"]["image"])


def test_one_shots_run_existing_cli_commands():
    from typer.testing import CliRunner

    from app.cli import app

    for service, words in (
        ("migrate", ["admin", "migrate"]),
        ("bucket", ["admin", "create-bucket"]),
    ):
        if service not in SERVICES:
            continue
        cmd = command(service)
        assert cmd[0] == "weightless" and cmd[1:] == words
        result = CliRunner().invoke(app, [*words, "--help"])
        assert result.exit_code == 0, result.output


def test_all_app_roles_use_the_one_image():
    images = {SERVICES[s].get("image") for s in APP_ROLES}
    builds = {str(SERVICES[s].get("build")) for s in APP_ROLES}
    assert len(images) == 1 and None not in images
    assert builds == {"."}


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_slim_python_311():
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert bases[-1].startswith("python:3.11-slim")


def test_dockerfile_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert users and users[-1] not in ("root", "0", "0:0")


def test_dockerfile_pins_the_same_cpu_torch_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    assert pins == ["torch==2.13.0"]
    assert re.search(r"pip install [^\n]*--index-url[^\n]*torch==2\.13\.0", DOCKERFILE)
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE
    assert re.search(r"pip install[^\n]*\.\[service\]", DOCKERFILE)


def test_dockerfile_ships_what_the_code_reads_at_run_time():
    copied = " ".join(re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE, re.MULTILINE))
    for needed in (
        "pyproject.toml",
        "alembic.ini",
        "migrations",
        "app",
        "worker",
        "weightless_core",
    ):
        assert re.search(rf"(^|\s){re.escape(needed)}(\s|$)", copied), f"COPY {needed} missing"


def test_dockerignore_keeps_local_state_out_but_not_copied_sources():
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for local in (".git", ".venv", ".weightless", ".cache"):
        assert local in patterns
    copied = re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE, re.MULTILINE)
    sources = [src for line in copied for src in line.split()[:-1]]
    for src in sources:
        assert not any(fnmatch.fnmatch(src, p) for p in patterns), f"{src} is dockerignored"


def test_dockerfile_default_command_and_healthcheck():
    cmd = dockerfile_json("CMD")
    assert cmd[:3] == ["uvicorn", "--factory", "app.main:build_app"]
    assert "/healthz" in " ".join(dockerfile_json("HEALTHCHECK"))


@pytest.mark.parametrize(("module", "name"), [
    ("app.main", "build_app"), ("worker.celery_app", "celery"), ("app.cli", "main"),
])  # fmt: skip
def test_commands_reference_modules_that_exist(module: str, name: str):
    assert module_defines(module, name), f"{module}:{name} does not exist"


def test_console_script_is_the_service_cli():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["weightless"] == "app.cli:main"
