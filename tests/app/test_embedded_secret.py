"""``weightless serve``'s secret: random and kept in the data folder unless one is set; a
placeholder set on purpose is refused on an address other machines can reach (issue 13)."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

import app.cli as cli
from app.config import Settings
from app.embedded import SECRET_FILE, EmbeddedError, is_loopback, with_secret


def test_an_unset_secret_is_made_once_and_kept_in_the_data_folder(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = with_secret(settings, "127.0.0.1").secret_key.get_secret_value()
    again = with_secret(Settings(data_dir=tmp_path / "data"), "0.0.0.0")
    path = tmp_path / "data" / SECRET_FILE
    assert first == again.secret_key.get_secret_value() == path.read_text().strip()
    assert len(first) >= 43 and first != Settings().secret_key.get_secret_value()
    assert path.stat().st_mode & 0o777 == 0o600
    other = with_secret(Settings(data_dir=tmp_path / "other"), "127.0.0.1")
    assert other.secret_key.get_secret_value() != first  # random per data folder


@pytest.mark.parametrize("placeholder", ["dev-secret-not-for-production", "change-me", "short"])
def test_a_placeholder_secret_is_refused_on_a_reachable_host(tmp_path, placeholder):
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr(placeholder))
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        with pytest.raises(EmbeddedError, match="--insecure-secret"):
            with_secret(settings, host)
    assert with_secret(settings, "0.0.0.0", allow_weak=True) is settings  # told otherwise
    for host in ("127.0.0.1", "localhost", "::1"):
        assert with_secret(settings, host) is settings  # loopback: a warning only
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_real_secret_is_used_as_given(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr("x" * 40))
    assert with_secret(settings, "0.0.0.0") is settings


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.5.0.1") and is_loopback("::1")
    assert is_loopback("localhost")
    for host in ("0.0.0.0", "", "::", "192.0.2.1", "no-such-host.invalid"):
        assert not is_loopback(host), host


def test_serve_refuses_before_listening(tmp_path):
    """The CLI says why and exits 2; it has not bound the wildcard address meanwhile."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"WEIGHTLESS_DATA_DIR": str(tmp_path), "WEIGHTLESS_SECRET_KEY": "change-me"}
    result = CliRunner().invoke(
        cli.app, ["serve", "--host", "0.0.0.0", "--port", str(port), "--no-demo"], env=env
    )
    assert result.exit_code == 2
    assert "placeholder" in result.output and "--insecure-secret" in result.output
    assert "change-me" not in result.output  # the secret itself is never printed
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # still free: nothing was started
