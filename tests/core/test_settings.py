import pytest

from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.errors import InvalidInputError


def test_defaults_validate_and_serialise():
    s = CompressionSettings()
    d = s.to_dict()
    assert d["r"] == 4 and d["t"] == 10 and d["layers"] == {}


def test_layer_override_merges_with_globals():
    s = CompressionSettings(layers={"fc1.weight": LayerOverride(t=10)})
    plan = s.plan("fc1.weight")
    assert (plan.r, plan.t, plan.sparsity) == (4, 10, s.sparsity)
    assert s.plan("other").t == 10
    assert s.to_dict()["layers"] == {"fc1.weight": {"t": 10}}


def test_structure_is_chosen_globally_and_per_layer():
    s = CompressionSettings(
        structure="fuse4",
        layers={"fc1.weight": LayerOverride(structure="fuse3"), "fc3.weight": LayerOverride(t=9)},
    )
    assert s.plan("fc1.weight").structure == "fuse3"
    assert s.plan("fc2.weight").structure == "fuse4"
    assert (s.plan("fc3.weight").structure, s.plan("fc3.weight").t) == ("fuse4", 9)
    assert s.to_dict()["structure"] == "fuse4"
    assert s.to_dict()["layers"]["fc1.weight"] == {"structure": "fuse3"}
    with pytest.raises(InvalidInputError, match=r"layer 'fc2.weight': unknown structure"):
        CompressionSettings(layers={"fc2.weight": LayerOverride(structure="fuse5")})


def test_columns_take_the_rows_share_unless_given_at_the_same_level():
    """Each level (global, size rule, layer) that gives ``unit_sparsity`` sets rows and columns,
    unless it gives ``column_sparsity`` too; a more specific level wins, as for every value."""
    from weightless_core.config.settings import SizeRule

    plan = CompressionSettings(unit_sparsity=0.4).plan("w")
    assert (plan.unit_sparsity, plan.column_sparsity) == (0.4, 0.4)
    plan = CompressionSettings(unit_sparsity=0.4, column_sparsity=0.1).plan("w")
    assert (plan.unit_sparsity, plan.column_sparsity) == (0.4, 0.1)
    s = CompressionSettings(
        column_sparsity=0.1,
        size_rules=(SizeRule(1000, unit_sparsity=0.7), SizeRule(5000, column_sparsity=0.3)),
        layers={
            "a": LayerOverride(unit_sparsity=0.5),
            "b": LayerOverride(column_sparsity=0.2),
        },
    )
    assert s.plan("x", 10).column_sparsity == 0.1
    big_rule = s.plan("x", 2000)
    assert (big_rule.unit_sparsity, big_rule.column_sparsity) == (0.7, 0.7)  # the rule's units
    bigger = s.plan("x", 6000)
    assert (bigger.unit_sparsity, bigger.column_sparsity) == (0.0, 0.3)
    a, b = s.plan("a", 2000), s.plan("b", 2000)
    assert (a.unit_sparsity, a.column_sparsity) == (0.5, 0.5)
    assert (b.unit_sparsity, b.column_sparsity) == (0.7, 0.2)
    assert s.to_dict()["layers"]["b"] == {"column_sparsity": 0.2}
    assert CompressionSettings().to_dict()["column_sparsity"] is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"r": 0}, "r .bits per cluster code"),
        ({"r": 9, "t": 12}, "r .bits per cluster code"),
        ({"r": 4, "t": 4}, "r < t"),
        ({"t": 33}, "r < t <= 32"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"structure": "cuckoo"}, "unknown structure"),
        ({"later_layers": "frozen"}, "later_layers must be one of"),
        ({"prune_steps": 0}, "prune_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"layers": {"fc1.weight": LayerOverride(t=2)}}, "layer 'fc1.weight'"),
        ({"column_sparsity": 1.0}, r"column_sparsity \(fraction of columns pruned\)"),
        (
            {"layers": {"fc1.weight": LayerOverride(column_sparsity=-0.5)}},
            "layer 'fc1.weight': column_sparsity",
        ),
    ],
)
def test_bad_settings_are_refused_with_a_message(changes, message):
    with pytest.raises(InvalidInputError, match=message):
        CompressionSettings(**changes)


def test_settings_are_frozen():
    s = CompressionSettings()
    with pytest.raises(AttributeError):
        s.r = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.layers["x"] = LayerOverride()  # type: ignore[index]


def test_distill_mixup_needs_distillation_and_a_small_share():
    assert CompressionSettings(distill=0.5, distill_mixup=0.4).distill_mixup == 0.4
    with pytest.raises(InvalidInputError, match="distill_mixup needs distill"):
        CompressionSettings(distill_mixup=0.4)
    with pytest.raises(InvalidInputError, match="distill_mixup"):
        CompressionSettings(distill=0.5, distill_mixup=0.8)
