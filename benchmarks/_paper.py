"""Shared by the paper-grade benchmarks: dense references, test accuracy, held-out splits.

Dense models are trained with fixed seeds and epoch counts, so a fresh clone reproduces them;
scripts that compare runs of one reference may cache it in ``.cache/dense`` (``train_dense``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightless_core.io.data import Dataset
from weightless_core.method.training import accuracy, logits_of, train_epochs
from weightless_core.models.lenet import build_model

# Epochs for the dense references (cosine learning rate): enough that validation accuracy has
# flattened on this data. Full MNIST and Fashion-MNIST train on 55,000 images, MNIST-10k on 5,996.
DENSE_EPOCHS = {
    ("lenet-300-100", "fashion-mnist"): 20,
    ("lenet-300-100", "mnist"): 20,
    ("lenet-5", "fashion-mnist"): 15,
    ("lenet-5", "mnist"): 15,
    ("lenet-300-100", "mnist-10k"): 30,
    ("lenet-5", "mnist-10k"): 20,
}
SEED = 0
SEEDS = (0, 1, 2)  # every headline figure is a mean over these
DENSE_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "dense"
CPU_LOCK = DENSE_CACHE.parent / "benchmark.lock"
_held: list[int] = []  # the lock's file descriptor, open until the process ends


def hold_cpus(lock: Path = CPU_LOCK) -> None:
    """Take the machine's benchmark lock for the rest of the process, or stop with a message
    naming the run that holds it.

    Two seeded benchmarks on the same 2 CPUs each run at about half speed and record
    minutes that mean nothing, and each pass of `bench_max_change` takes an hour; so a second
    one refuses to start rather than starve the first. The lock is an ``flock`` on
    ``.cache/benchmark.lock``: the kernel releases it when the process ends, however it ends.
    ``--share-cpus`` skips it (runs started side by side on purpose, one thread each)."""
    if _held:
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        sys.exit(
            f"another benchmark holds the CPUs ({holder}); wait for it to end, or pass "
            "--share-cpus to run beside it on purpose"
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}".encode(), 0)
    _held.append(fd)


class _HoldingParser(argparse.ArgumentParser):
    """Parses as usual, then takes the benchmark lock unless the run is ``--quick``,
    ``--share-cpus`` or ``--rerecord`` (which trains nothing) (``hold_cpus``)."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        if not any(getattr(parsed, k, False) for k in ("quick", "share_cpus", "rerecord")):
            hold_cpus()
        return parsed


def add_share_cpus(ap: argparse.ArgumentParser) -> None:
    """``--share-cpus``: run without the benchmark lock (``hold_cpus``), beside another run."""
    ap.add_argument(
        "--share-cpus", action="store_true", help="run beside another benchmark on purpose"
    )


def bench_parser(doc: str, quick: str) -> argparse.ArgumentParser:
    """The options every seeded benchmark takes: ``--quick`` (a tiny smoke run, described by
    ``quick``), ``--out-dir`` for its table, and ``--threads``; the first line of ``doc`` is
    the description. Parsing takes the benchmark lock (``hold_cpus``) unless ``--quick``,
    ``--share-cpus`` or ``--rerecord`` is given."""
    ap = _HoldingParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"tiny smoke run ({quick})")
    add_share_cpus(ap)
    ap.add_argument("--out-dir", type=Path, help="with --quick: where to write the table")
    ap.add_argument(
        "--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads"
    )
    return ap


def write_quick(out_dir: Path | None, name: str, text: str) -> Path:
    """Where a ``--quick`` smoke run's table goes: ``out_dir`` (``--out-dir``) or
    ``NAME-quick`` here, as ``NAME.md``; never BENCHMARKS.md."""
    out = out_dir or Path(f"{name}-quick")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def fresh_model(arch: str, data: Dataset, state: dict[str, torch.Tensor] | None = None):
    model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes)
    if state is not None:
        model.load_state_dict(state)
    return model


def train_dense(
    arch: str,
    data: Dataset,
    epochs: int,
    *,
    seed: int = SEED,
    cache: bool = False,
    device: str = "cpu",
) -> tuple[dict[str, torch.Tensor], float, float]:
    """(state_dict, validation accuracy %, seconds) of ``arch`` trained from scratch.

    With ``cache`` the state is kept in ``.cache/dense`` under its (arch, data, epochs, seed)
    and reused by later scripts (seconds is then the original training time); delete the folder
    to train again. Dense training is not bit-identical between processes on every CPU, so
    scripts that compare runs share one cached reference rather than each training its own.
    """
    path = DENSE_CACHE / f"{arch}_{data.name}_e{epochs}_s{seed}.pt"
    if cache and path.is_file():
        saved = torch.load(path, weights_only=True)
        model = fresh_model(arch, data, saved["state"])
        acc = accuracy(model, data.x_val, data.y_val, device=torch.device("cpu"))
        return saved["state"], acc, float(saved["seconds"])
    torch.manual_seed(seed)
    on = torch.device(device)
    model = fresh_model(arch, data).to(on)
    start = time.perf_counter()
    train_epochs(
        model,
        {},
        data,
        epochs=epochs,
        lr=1e-3,
        batch_size=128,
        generator=torch.Generator().manual_seed(seed),
        device=on,
        schedule="cosine",
    )
    seconds = time.perf_counter() - start
    acc = accuracy(model, data.x_val, data.y_val, device=on)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"state": state, "seconds": seconds}, tmp)
        tmp.replace(path)
    return state, acc, seconds


def scores(model: nn.Module, dense: nn.Module, data: Dataset) -> dict[str, float]:
    """Every figure of one final model, for `bench_criteria` to ask which follows test:
    accuracy (%) and loss on both splits, KL from and agreement with the dense model on
    validation, and test accuracy on its even and odd images (the split-half ceiling)."""
    out: dict[str, float] = {}
    for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
        assert x is not None and y is not None, f"the data set needs a labelled {split} split"
        logits = logits_of(model, x, device=torch.device("cpu")).float()
        y = y.long()
        right = (logits.argmax(1) == y).float()
        out[f"{split}_acc"] = 100 * float(right.mean())
        out[f"{split}_nll"] = float(nn.functional.cross_entropy(logits, y))
        if split == "val":
            ref = logits_of(dense, x, device=torch.device("cpu")).float()
            logp, logq = ref.log_softmax(1), logits.log_softmax(1)
            out["val_kl"] = float((logp.exp() * (logp - logq)).sum(1).mean())
            out["val_agree"] = 100 * float((logits.argmax(1) == ref.argmax(1)).float().mean())
        else:
            out["test_acc_even"] = 100 * float(right[0::2].mean())
            out["test_acc_odd"] = 100 * float(right[1::2].mean())
    return out


def test_accuracy(model: torch.nn.Module, data: Dataset) -> float:
    """Top-1 accuracy (%) on the data set's test split (which no choice ever sees)."""
    assert data.x_test is not None and data.y_test is not None, f"{data.name} has no test split"
    return accuracy(model, data.x_test, data.y_test, device=torch.device("cpu"))


def held_out(data: Dataset, fraction: float = 0.2, *, seed: int = SEED) -> Dataset:
    """Train on part of the training set and validate on the rest (the real val set unused)."""
    n = data.x_train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * (1 - fraction))
    keep, hold = order[:cut].sort().values, order[cut:].sort().values
    return replace(
        data,
        name=f"{data.name} (held out {fraction:.0%} of train)",
        x_train=data.x_train[keep],
        y_train=data.y_train[keep],
        x_val=data.x_train[hold],
        y_val=data.y_train[hold],
    )


def pair_key(pair: dict[str, Any]) -> str:
    return f"{pair['arch']}/{pair['dataset']}"


Checkpoint = Callable[[dict[str, Any]], None]


def run_in_parts(
    names: list[str],
    chosen: list[str],
    earlier: list[dict[str, Any]],
    run: Callable[[str, str, Checkpoint], dict[str, Any]],
    save: Callable[[list[dict[str, Any]], list[str]], None],
) -> None:
    """Run the ``chosen`` "arch/data" pairs in ``names`` order, timing each (``seconds``).

    After every pair, ``save(pairs, missing)`` gets the finished pairs with those ``earlier``
    runs recorded that were not run again, in ``names`` order, and the names still missing: a
    table too long for one sitting is completed by later ``--pairs`` runs, and a crash loses
    no finished pair. ``run`` may also hand its pair over unfinished (``checkpoint(pair)``,
    e.g. after each sparsity level of an hour-long pair): it is saved marked ``partial``, with
    no ``seconds``, and its name stays missing, so an interrupted pair still leaves its rows.
    """
    done = {pair_key(p): p for p in earlier if pair_key(p) not in chosen}

    def ordered() -> list[dict[str, Any]]:
        return [done[k] for k in names if k in done]

    for key in names:
        if key not in chosen:
            continue

        def checkpoint(pair: dict[str, Any], key: str = key) -> None:
            done[key] = pair | {"partial": True}
            missing = [k for k in names if k not in done or done[k].get("partial")]
            save(ordered(), missing)

        start = time.perf_counter()
        pair = run(*key.split("/"), checkpoint)
        pair["seconds"] = round(time.perf_counter() - start, 1)
        done[key] = pair
        save(ordered(), [k for k in names if k not in done or done[k].get("partial")])
        print(f"{key} done in {pair['seconds'] / 60:.1f} min; recorded", flush=True)


def with_missing(text: str, missing: list[str]) -> str:
    """A table run in parts says which parts it still lacks (a pair saved unfinished shows the
    rows it has and is named here too)."""
    return text + (f"\n\nNot yet run, or not finished: {', '.join(missing)}." if missing else "")
