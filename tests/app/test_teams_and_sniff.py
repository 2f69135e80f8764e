"""Team and key administration (what the CLI calls), and upload sniffing from first bytes."""

from __future__ import annotations

import pytest
from apikit import npz_bytes, safetensors_bytes, zip_bytes

from app.db import transaction
from app.errors import ConflictError, NotFoundError, UnauthorizedError, UnsupportedFileTypeError
from app.security import hash_key
from app.services.teams import authenticate, create_key, create_team, revoke_key
from app.services.uploads import sanitize_filename
from app.sniff import sniff


def test_create_team_twice_is_a_conflict(sessions):
    with transaction(sessions) as session:
        create_team(session, "alice")
    with pytest.raises(ConflictError, match="already exists"), transaction(sessions) as session:
        create_team(session, "alice")


def test_create_key_for_unknown_team_is_not_found(sessions):
    with pytest.raises(NotFoundError, match="no team named"), transaction(sessions) as session:
        create_key(session, "nobody")


def test_key_authenticates_until_revoked(sessions):
    with transaction(sessions) as session:
        team = create_team(session, "alice")
        key, plaintext = create_key(session, "alice")
    assert key.key_hash == hash_key(plaintext) and len(key.prefix) == 11
    with transaction(sessions) as session:
        assert authenticate(session, plaintext).id == team.id
        revoke_key(session, key.prefix)
    with pytest.raises(UnauthorizedError), transaction(sessions) as session:
        authenticate(session, plaintext)
    with pytest.raises(NotFoundError), transaction(sessions) as session:
        revoke_key(session, key.prefix)  # already revoked


def test_two_keys_of_a_team_are_different(sessions):
    with transaction(sessions) as session:
        create_team(session, "alice")
        a, b = create_key(session, "alice")[1], create_key(session, "alice")[1]
    assert a != b


@pytest.mark.parametrize(
    ("head", "kind", "expected"),
    [
        (safetensors_bytes(), "model", "safetensors"),
        (safetensors_bytes(), "dataset", "safetensors"),
        (zip_bytes(), "model", "zip-archive"),
        (zip_bytes("model/constants.pkl"), "model", "zip-archive"),
        (npz_bytes(), "dataset", "npz"),
    ],
)
def test_sniff_recognises(head, kind, expected):
    assert sniff(head[:4096], kind) == expected


@pytest.mark.parametrize(
    ("head", "kind", "reason"),
    [
        (b"\x80\x02}q\x00.", "model", "pickle"),
        (b"\x93NUMPY\x01\x00", "dataset", ".npy"),
        (b"import torch\n", "model", "not a recognised format"),
        (b"", "model", "empty"),
        (zip_bytes(), "dataset", "not .npy"),
        (b"\xff" * 8 + b"{", "model", "not a recognised format"),  # absurd header length
    ],
)
def test_sniff_rejects_with_a_reason(head, kind, reason):
    with pytest.raises(UnsupportedFileTypeError, match=reason):
        sniff(head, kind)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\model.pt", "model.pt"),
        ("a\x00b\nc", "abc"),
        ("..", "model"),
        ("", "model"),
        (None, "model"),
        ("é" * 300, "é" * 255),
        ("evil\u202egnp.pt", "evilgnp.pt"),  # a right-to-left override: "evil...tp.png"
        ("a\u200bb\u2028c\u2066d\u2069\ufeff.pt", "abcd.pt"),  # zero-width, separators
        ("\u3164\u200d", "model"),  # nothing visible is left
        ("\u05de\u05d5\u05d3\u05dc.pt", "\u05de\u05d5\u05d3\u05dc.pt"),  # Hebrew is text
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name, "model") == expected
