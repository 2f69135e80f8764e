"""The pieces both command lines share: ``--layer`` parsing and the error guard."""

from __future__ import annotations

import pytest
import typer

from weightless_core.cli_guard import guard
from weightless_core.cli_options import parse_layer_overrides
from weightless_core.config.settings import LayerOverride
from weightless_core.errors import InvalidInputError


def test_layer_overrides_take_every_per_layer_key_with_its_type():
    got = parse_layer_overrides(
        ["fc1.weight:sparsity=0.95,t=9", "fc2.weight:r=3,structure=fuse3,unit_sparsity=0.2"]
    )
    assert got == {
        "fc1.weight": LayerOverride(sparsity=0.95, t=9),
        "fc2.weight": LayerOverride(r=3, structure="fuse3", unit_sparsity=0.2),
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fc1.weight", "expected NAME:key=value"),
        ("fc1.weight:depth=3", "unknown key 'depth' .use sparsity, r, t, structure, unit_sparsity"),
        ("fc1.weight:t", "expected key=value"),
        ("fc1.weight:t=nine", "bad value for t"),
    ],
)
def test_bad_layer_overrides_name_the_problem(spec, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_layer_overrides([spec])


def test_guard_turns_fixable_errors_into_exit_2_and_lets_bugs_through(capsys):
    def bad_input() -> None:
        raise InvalidInputError("t must be [r < t]")  # brackets are printed, not markup

    with pytest.raises(typer.Exit) as info:
        guard(bad_input)
    assert info.value.exit_code == 2
    assert "error: t must be [r < t]" in capsys.readouterr().err

    def missing() -> None:
        open("/nonexistent/model.pt")  # noqa: SIM115

    with pytest.raises(typer.Exit):
        guard(missing)
    assert "/nonexistent/model.pt" in capsys.readouterr().err

    def bug() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        guard(bug)
    with pytest.raises(typer.Exit):  # a caller's own error kind, tried first
        guard(bug, (KeyError, lambda e: f"no such thing: {e}"))
    assert "no such thing" in capsys.readouterr().err
    assert guard(lambda: 5) == 5

    def reported() -> None:
        raise typer.Exit(3)

    with pytest.raises(typer.Exit) as info:  # even where a translation would match it
        guard(reported, (RuntimeError, lambda e: "not this"))
    assert info.value.exit_code == 3
