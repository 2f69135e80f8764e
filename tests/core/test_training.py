import torch
from torch import nn

from weightless_core.method.layer_distill import LayerMatch
from weightless_core.method.training import Constraint, _shifted, train_epochs


def _tiny_data():
    from weightless_core.io.data import Dataset

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 2, 4, generator=g)
    y = (x.flatten(1).sum(1) > 4).long()
    return Dataset("toy", x, y, x[:16], y[:16])


def test_masked_weights_stay_zero_through_training():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    w = model[1].weight
    mask = torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    cons = {"1.weight": Constraint(w, mask=mask)}
    train_epochs(
        model,
        cons,
        _tiny_data(),
        epochs=2,
        lr=0.05,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    assert torch.all(w[~mask] == 0)
    assert torch.any(w[mask] != 0)


def test_shared_weights_keep_k_values_and_centroids_move_by_summed_gradient():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    w = model[1].weight
    mask = torch.ones(w.shape, dtype=torch.bool)
    mask[0, 0] = False
    codes = (torch.arange(16).reshape(2, 8) % 3).long()
    centroids = torch.tensor([-0.3, 0.1, 0.4], requires_grad=True)
    before = centroids.detach().clone()
    cons = {"1.weight": Constraint(w, mask=mask, codes=codes, centroids=centroids)}
    train_epochs(
        model,
        cons,
        _tiny_data(),
        epochs=2,
        lr=0.05,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    assert not torch.equal(centroids.detach(), before)
    values = set(w[mask].tolist())
    assert values <= set(centroids.detach().tolist())
    assert w[0, 0] == 0


def test_route_gradient_sums_member_gradients_hand_checked():
    p = nn.Parameter(torch.zeros(4))
    c = Constraint(
        p,
        mask=torch.tensor([True, True, False, True]),
        codes=torch.tensor([0, 1, 1, 0]),
        centroids=torch.zeros(2, requires_grad=True),
    )
    p.grad = torch.tensor([1.0, 2.0, 100.0, 3.0])
    c.route_gradient()
    assert c.centroids.grad.tolist() == [4.0, 2.0]  # pruned position's gradient is ignored
    assert p.grad is None


def test_frozen_tensor_does_not_change():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    w = model[1].weight
    before = w.detach().clone()
    cons = {"1.weight": Constraint(w, frozen=True)}
    train_epochs(
        model,
        cons,
        _tiny_data(),
        epochs=1,
        lr=0.1,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    assert torch.equal(w.detach(), before)
    assert not torch.equal(model[1].bias.detach(), torch.zeros(2))


def test_regrowing_weights_train_densely_and_the_mask_follows_magnitudes():
    """Pruning with regrowth: the optimiser trains the dense copy with the gradient taken at the
    pruned weights, so a weight pruned while small grows back once it matters."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    w = model[1].weight
    with torch.no_grad():
        w.copy_(torch.linspace(-0.8, 0.8, 16).reshape(2, 8))
        w[:, 0] = 0.001  # tiny now: pruned by the first mask
    dense = w.detach().clone()
    c = Constraint(w, dense=dense, keep=8)
    c.refresh()
    first = c.mask.clone()
    assert not first[:, 0].any() and int(first.sum()) == 8
    data = _tiny_data()
    # a target that only input 0 explains: its weights must grow back to fit it
    x = data.x_train
    y = (x.flatten(1)[:, 0] > 0.5).long()
    from weightless_core.io.data import Dataset

    train_epochs(
        model,
        {"1.weight": c},
        Dataset("toy", x, y, x[:16], y[:16]),
        epochs=30,
        lr=0.05,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        refresh_every=4,
    )
    assert int(c.mask.sum()) == 8  # always the same number kept
    assert c.mask[:, 0].any()  # input 0's weights came back
    assert torch.equal(w.detach(), c.dense * c.mask)  # the parameter is the pruned dense copy
    assert torch.count_nonzero(c.dense) > 8  # pruned entries kept training too
    settled = c.settle()
    assert not settled.regrowing and torch.equal(settled.mask, c.mask)
    assert torch.all(w[~c.mask] == 0)


def test_simulated_false_positives_land_only_on_the_grid_at_the_rate_and_never_stay():
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(200, 100))
    mask = torch.zeros(200, 100, dtype=torch.bool)
    mask[::10, ::10] = True  # 200 kept positions
    grid = ~mask
    grid[100:] = False  # only the first half of the rows may be hit
    codes = torch.zeros(200, 100, dtype=torch.int64)
    codes[mask] = torch.arange(200) % 4
    centroids = torch.tensor([-2.0, -1.0, 1.0, 2.0])
    c = Constraint(w, mask=mask, codes=codes, centroids=centroids, fp_rate=0.05, fp_grid=grid)
    c.project()
    kept = w.detach()[mask].clone()
    c.simulate_false_positives()
    hits = (w.detach() != 0) & ~mask
    assert not hits[100:].any() and hits.any()
    rate = float(hits.sum()) / float(grid.sum())
    assert 0.04 < rate < 0.06  # 9,900 eligible positions at 5 %
    assert set(w.detach()[hits].tolist()) <= {-2.0, -1.0, 1.0, 2.0}
    assert torch.equal(w.detach()[mask], kept)  # stored weights untouched
    c.project()
    assert not ((w.detach() != 0) & ~mask).any()  # gone again after the step


class _ViewsFeatureMap(nn.Module):
    """A convolution whose feature map is flattened with ``view``: the default layout only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=2)
        self.fc = nn.Linear(3 * 1 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc(h.view(h.shape[0], -1))


def _conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, kernel_size=2), nn.Flatten(), nn.Linear(9, 2))


def test_conv_models_train_channels_last_on_cpu_and_come_back_in_the_default_layout():
    from weightless_core.method.training import _channels_last_ok

    data, cpu = _tiny_data(), torch.device("cpu")
    torch.manual_seed(0)
    net = _conv_net()
    assert _channels_last_ok(net, data.x_train[:8], cpu)
    assert _channels_last_ok(torch.jit.script(_conv_net()), data.x_train[:8], cpu)
    assert not _channels_last_ok(_ViewsFeatureMap(), data.x_train[:8], cpu)
    assert not _channels_last_ok(torch.jit.script(_ViewsFeatureMap()), data.x_train[:8], cpu)
    assert not _channels_last_ok(nn.Sequential(nn.Flatten(), nn.Linear(8, 2)), data.x_train, cpu)
    w = net[0].weight
    mask = torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    cons = {"0.weight": Constraint(w, dense=w.detach().clone(), keep=int(mask.sum()))}
    cons["0.weight"].refresh()
    kw = dict(lr=0.05, batch_size=8, device=cpu)
    train_epochs(net, cons, data, epochs=2, generator=torch.Generator().manual_seed(0), **kw)
    assert w.is_contiguous() and cons["0.weight"].dense.is_contiguous()
    assert int((w != 0).sum()) <= int(mask.sum())
    # the same training in the default layout reaches the same weights (to float rounding)
    torch.manual_seed(0)
    ref = _conv_net()
    ref_w = ref[0].weight
    ref_cons = {"0.weight": Constraint(ref_w, dense=ref_w.detach().clone(), keep=int(mask.sum()))}
    ref_cons["0.weight"].refresh()
    g = torch.Generator().manual_seed(0)
    train_epochs(ref, ref_cons, data, epochs=2, generator=g, channels_last=False, **kw)
    assert torch.allclose(w, ref_w, atol=1e-5)


def test_a_model_that_views_its_feature_map_still_trains():
    data = _tiny_data()
    net = _ViewsFeatureMap()
    before = net.fc.weight.detach().clone()
    train_epochs(
        net,
        {},
        data,
        epochs=1,
        lr=0.05,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    assert not torch.equal(net.fc.weight, before)


def test_mixed_inputs_are_convex_pairs_within_the_share():
    from weightless_core.method.training import _mixed

    x = torch.arange(24, dtype=torch.float32).reshape(6, 1, 2, 2)
    mixed, share, other = _mixed(x, 0.4, torch.Generator().manual_seed(3))
    assert torch.all((share >= 0) & (share < 0.4)) and sorted(other.tolist()) == list(range(6))
    w = share.reshape(-1, 1, 1, 1)
    assert torch.allclose(mixed, (1 - w) * x + w * x[other])
    again, _, _ = _mixed(x, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(mixed, again)  # the run's generator decides, so runs repeat


class _Recording(nn.Module):
    """A fixed teacher that keeps every input it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.net(x)


def _train_moved(teacher: nn.Module, *, mixup: float = 0.0, shift: int = 0) -> nn.Module:
    """A tiny model trained 2 epochs distilling from ``teacher`` on mixed or shifted inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    data = _tiny_data()
    logits = teacher.net(data.x_train).detach() if isinstance(teacher, _Recording) else None
    train_epochs(
        model,
        {},
        data,
        epochs=2,
        lr=0.05,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        teacher_logits=logits,
        distill=0.5,
        mixup=mixup,
        dense_model=teacher,
        shift=shift,
    )
    return model


def test_mixup_distils_on_mixed_inputs_and_changes_training():
    teacher = _Recording()
    with_mixup = _train_moved(teacher, mixup=0.5)
    seen = torch.cat(teacher.seen).flatten(1)
    rows = _tiny_data().x_train.flatten(1)
    assert len(seen) == 2 * len(rows)  # the dense model saw each step's batch, once an epoch
    exact = (seen[:, None, :] == rows[None, :, :]).all(-1).any(1)
    assert not exact.all()  # mixed inputs, not the training rows
    # each one lies between two training rows: inside their range, coordinate by coordinate
    assert torch.all(seen >= rows.min(0).values - 1e-6)
    assert torch.all(seen <= rows.max(0).values + 1e-6)
    plain = _train_moved(_Recording())
    assert not torch.equal(with_mixup[1].weight, plain[1].weight)
    assert torch.equal(with_mixup[1].weight, _train_moved(_Recording(), mixup=0.5)[1].weight)


def test_shifted_moves_each_image_by_its_own_offset_and_repeats_the_edge():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, 5, 6, generator=g)
    moved = _shifted(x, 2, torch.Generator().manual_seed(4))
    dy, dx = torch.randint(-2, 3, (2, 40, 1), generator=torch.Generator().manual_seed(4))
    assert set(dy.flatten().tolist()) == {-2, -1, 0, 1, 2}  # every offset drawn, none beyond
    for i in range(40):  # by hand: pad with the edge, then cut the window the offset names
        a, b = int(dy[i]), int(dx[i])
        padded = torch.nn.functional.pad(x[i : i + 1], (2, 2, 2, 2), mode="replicate")[0]
        assert torch.equal(moved[i], padded[:, 2 - a : 2 - a + 5, 2 - b : 2 - b + 6])
    assert torch.equal(moved, _shifted(x, 2, torch.Generator().manual_seed(4)))


def test_shifted_training_distils_on_the_moved_images():
    teacher = _Recording()
    shifted = _train_moved(teacher, shift=1)
    seen = torch.cat(teacher.seen)
    rows = _tiny_data().x_train
    assert len(seen) == 2 * len(rows)  # the dense model answered each moved batch
    exact = (seen.flatten(1)[:, None, :] == rows.flatten(1)[None, :, :]).all(-1).any(1)
    assert 0 < int(exact.sum()) < len(seen)  # a ninth of the offsets is (0, 0)
    plain = _train_moved(_Recording())
    assert not torch.equal(shifted[1].weight, plain[1].weight)
    assert torch.equal(shifted[1].weight, _train_moved(_Recording(), shift=1)[1].weight)


def _mlp_8_6_2(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))


def test_layer_distillation_pulls_each_layer_towards_the_dense_one():
    teacher = _mlp_8_6_2(0).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    data = _tiny_data()

    def train(weight: float) -> float:
        student = _mlp_8_6_2(1)  # another start: far from the teacher's layers
        train_epochs(student, {}, data, epochs=30, lr=0.02, batch_size=16,
                     generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                     dense_model=teacher, layer_distill=weight,
                     layer_names=["1.weight", "3.weight"])  # fmt: skip
        match = LayerMatch(student, teacher, ["1.weight"])
        with torch.no_grad():
            student(data.x_train)
            gap = float(match.loss(data.x_train))
        match.close()
        return gap

    assert train(5.0) < 0.5 * train(0.0)
