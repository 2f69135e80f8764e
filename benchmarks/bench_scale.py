"""A checkpoint without code at GPT-2-small scale: compression and decode throughput, peak RSS.

    python benchmarks/bench_scale.py            # 124M parameters (~500 MB of float32, ~3 GB disk)
    python benchmarks/bench_scale.py --quick --out-dir DIR   # a tiny one (the tests)

Builds a safetensors checkpoint with GPT-2-small's shapes (a 50257 x 768 token embedding, 1024 x
768 positions, 12 blocks of 768-wide attention and 3072-wide MLP, layer norms and biases; random
weights, as issue 14 allows: data-free compression does not care), then runs ``weightless
compress`` on it with no architecture and no data (tensor mode, streamed tensor by tensor) and
``weightless decode`` back to safetensors, each in a child process whose own peak RSS is read
from the kernel (``VmHWM``). Throughput is MB of float32 weights per second. The references in
the same process: the checkpoint's own size, and ``weightless inspect`` of the encoded file
(libraries loaded, nothing decoded: the floor every command pays). Writes the ``scale``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, record

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def gpt2_shapes(*, vocab: int = 50257, width: int = 768, blocks: int = 12, context: int = 1024):
    """Name -> shape of GPT-2 small (Conv1D weights stored (in, out) as its checkpoints do)."""
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (vocab, width),
        "wpe.weight": (context, width),
    }
    for i in range(blocks):
        p = f"h.{i}."
        shapes |= {
            p + "ln_1.weight": (width,), p + "ln_1.bias": (width,),
            p + "attn.c_attn.weight": (width, 3 * width), p + "attn.c_attn.bias": (3 * width,),
            p + "attn.c_proj.weight": (width, width), p + "attn.c_proj.bias": (width,),
            p + "ln_2.weight": (width,), p + "ln_2.bias": (width,),
            p + "mlp.c_fc.weight": (width, 4 * width), p + "mlp.c_fc.bias": (4 * width,),
            p + "mlp.c_proj.weight": (4 * width, width), p + "mlp.c_proj.bias": (width,),
        }  # fmt: skip
    return shapes | {"ln_f.weight": (width,), "ln_f.bias": (width,)}


def write_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """Random weights (std 0.02, as GPT-2 initialises), written once; returns the parameters."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    state = {n: torch.randn(s, generator=g) * 0.02 for n, s in shapes.items()}
    if not path.exists():
        save_file(state, path)
    return sum(t.numel() for t in state.values())


_CHILD = (  # its own peak: VmHWM belongs to the process's memory map, which exec replaces
    "import atexit, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('PEAK_KIB', line.split()[1], file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "from weightless_core.cli import main\n"
    "sys.argv = ['weightless', *sys.argv[1:]]\n"
    "main()\n"
)


def child(args: list[str]) -> tuple[float, int, str]:
    """(seconds, its own peak RSS in bytes, output) of ``weightless ARGS`` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"weightless {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    peak = next(int(line.split()[1]) for line in proc.stderr.splitlines()
                if line.startswith("PEAK_KIB"))  # fmt: skip
    return seconds, peak * 1024, proc.stdout


def measure(shapes: dict[str, tuple[int, ...]], folder: Path, settings: list[str]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, out, back = folder / "gpt2.safetensors", folder / "gpt2.wlss", folder / "back.safetensors"
    params = write_checkpoint(ckpt, shapes)
    compress_s, compress_peak, text = child(["compress", str(ckpt), "--out", str(out), *settings])
    _, floor, _ = child(["inspect", str(out)])  # the libraries loaded, the file read
    decode_s, decode_peak, _ = child(["decode", str(out), "--out", str(back)])
    mb = params * 4 / 1e6
    return {
        "parameters": params,
        "checkpoint_bytes": ckpt.stat().st_size,
        "largest_tensor_bytes": max(4 * torch.Size(s).numel() for s in shapes.values()),
        "file_bytes": out.stat().st_size,
        "compress_s": round(compress_s, 1),
        "decode_s": round(decode_s, 1),
        "compress_mb_per_s": round(mb / compress_s, 2),
        "decode_mb_per_s": round(mb / decode_s, 2),
        "floor_rss": floor,
        "compress_peak_rss": compress_peak,
        "decode_peak_rss": decode_peak,
        "summary": [line for line in text.splitlines() if "->" in line or "smaller" in line],
    }


SERVICE_BROKER = "redis://127.0.0.1:6379/11"  # bench_service: 13, load_service: 12
SERVICE_TIMEOUT = 1800.0


def job_settings(cli: list[str]) -> dict:
    """The CLI's ``--name value`` pairs as a job's settings body."""
    pairs = zip(cli[::2], cli[1::2], strict=True)
    return {k.removeprefix("--"): float(v) if "." in v else int(v) if v.isdigit() else v
            for k, v in pairs}  # fmt: skip


def measure_service(ckpt: Path, folder: Path, settings: list[str]) -> dict:
    """The checkpoint through the service as a team sends it: ``POST /v1/models``, a job with
    no data set and no architecture, polled until it ends (each distinct progress message
    kept), the artifact downloaded and decoded. The API, one Celery worker (solo pool: the job
    runs in the worker process itself, so its ``VmHWM`` is the job's peak) and SeaweedFS run
    on loopback as in production (``bench_service.services``)."""
    import contextlib
    import secrets

    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from bench_service import RssSampler, services
    from servicekit import start_worker, stop_worker, worker_values

    out = folder / "service.wlss"
    back = folder / "service-back.safetensors"
    with services(SERVICE_BROKER) as api, contextlib.ExitStack() as stack:
        values = worker_values(api.db_url, api.s3, api.s3.bucket, SERVICE_BROKER, api.tmp / "w")
        for test_only in ("progress_interval_seconds", "job_lease_seconds"):
            values.pop(test_only, None)
        values.update(environment="production", secret_key=secrets.token_urlsafe(32))
        worker = start_worker(values, api.tmp / "celery.log")
        stack.callback(stop_worker, worker)
        auth = {"Authorization": f"Bearer {api.key}"}
        client = stack.enter_context(
            httpx.Client(base_url=api.api_url, headers=auth, timeout=600, follow_redirects=True)
        )
        with RssSampler(api.api_pid, 0.05) as api_rss, open(ckpt, "rb") as f:
            start = time.perf_counter()
            r = client.post(
                "/v1/models", files={"file": (ckpt.name, f, "application/octet-stream")}
            )
            upload_s = time.perf_counter() - start
        if r.status_code != 201:
            raise SystemExit(f"upload refused: {r.status_code} {r.text[:500]}")
        body = {"model_id": r.json()["id"], "settings": job_settings(settings)}
        r = client.post("/v1/jobs", json=body)
        if r.status_code != 202:
            raise SystemExit(f"job refused: {r.status_code} {r.text[:500]}")
        job_id = r.json()["id"]
        start = time.perf_counter()
        messages: list[str] = []
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            message = (job.get("progress") or {}).get("message")
            if message and (not messages or messages[-1] != message):
                messages.append(message)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            if time.perf_counter() - start > SERVICE_TIMEOUT:
                raise SystemExit(f"job {job_id} still {job['status']} after {SERVICE_TIMEOUT} s")
            time.sleep(0.5)
        job_s = time.perf_counter() - start
        worker_peak = _vm_hwm(worker.process.pid)
        if job["status"] != "succeeded":
            raise SystemExit(f"job {job['status']}: {job.get('error')}\n{worker.log()[-3000:]}")
        start = time.perf_counter()
        with client.stream("GET", f"/v1/jobs/{job_id}/artifact") as resp, open(out, "wb") as f:
            resp.raise_for_status()
            for chunk in resp.iter_bytes(1 << 20):
                f.write(chunk)
        download_s = time.perf_counter() - start
    decode_s, decode_peak, _ = child(["decode", str(out), "--out", str(back)])
    same = _same_tensors(ckpt, back)
    return {
        "upload_s": round(upload_s, 1),
        "job_s": round(job_s, 1),
        "download_s": round(download_s, 1),
        "service_decode_s": round(decode_s, 1),
        "worker_peak_rss": worker_peak,
        "api_peak_rss": api_rss.peak(),
        "service_decode_peak_rss": decode_peak,
        "service_file_bytes": out.stat().st_size,
        "progress_messages": len(messages),
        "progress_sample": [*messages[:3], "...", *messages[-3:]],
        "decoded_matches": same,
        "result": job.get("result"),
    }


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def _same_tensors(ckpt: Path, back: Path) -> bool:
    """The decoded file holds the checkpoint's names, shapes and dtypes (values are encoded)."""
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as a, safe_open(str(back), "pt") as b:
        names = list(a.keys())
        if sorted(names) != sorted(b.keys()):
            return False
        return all(
            a.get_slice(n).get_shape() == b.get_slice(n).get_shape()
            and a.get_slice(n).get_dtype() == b.get_slice(n).get_dtype()
            for n in names
        )


def markdown(m: dict, settings: list[str]) -> str:
    ck = m["checkpoint_bytes"]
    budget = ck + 1024 * MiB
    lines = [
        f"A GPT-2-small-shaped checkpoint ({m['parameters'] / 1e6:.1f}M parameters, random "
        f"weights, {ck / MiB:.0f} MiB of float32 safetensors, largest tensor "
        f"{m['largest_tensor_bytes'] / MiB:.0f} MiB) compressed without architecture or data "
        f"(`weightless compress CKPT --out F {' '.join(settings)}`: tensor mode, streamed) and "
        "decoded back to safetensors, each command in a fresh process. Peak RSS is the whole "
        "process's (`VmHWM`); the floor is `weightless inspect` of the encoded file (libraries "
        "loaded, nothing decoded).",
        "",
        "| step | seconds | MB of float32 per second | peak RSS (MiB) | within ckpt + 1 GiB |",
        "|---|---|---|---|---|",
    ]
    for step in ("compress", "decode"):
        peak = m[f"{step}_peak_rss"]
        lines.append(
            f"| {step} | {m[f'{step}_s']} | {m[f'{step}_mb_per_s']} | {peak / MiB:.0f} | "
            f"{'yes' if peak <= budget else 'no'} |"
        )
    lines.append(f"| (floor: `inspect`) | | | {m['floor_rss'] / MiB:.0f} | |")
    if "worker_peak_rss" in m:
        lines += _service_lines(m, budget)
    lines += [
        "",
        f"Encoded file: {m['file_bytes']:,} bytes ({ck / m['file_bytes']:.1f}x the checkpoint). "
        "Random weights have no structure to find: the ratio says what the settings' pruning "
        "and clustering give, not what a trained model reaches.",
    ]
    return "\n".join(lines)


def _service_lines(m: dict, budget: int) -> list[str]:
    mb = m["parameters"] * 4 / 1e6
    ok = lambda peak: "yes" if peak <= budget else "no"  # noqa: E731
    job, worker = m["job_s"], m["worker_peak_rss"]
    sample = "; ".join(f"`{x}`" for x in m["progress_sample"])
    return [
        "",
        "The same checkpoint through the service: uploaded to the API (`POST /v1/models`), "
        "compressed by a job with no data set and no architecture (the same settings as a "
        "job body) on one Celery worker, downloaded (`GET /v1/jobs/{id}/artifact`) and "
        "decoded with `weightless decode`. The worker runs the job in its own process (solo "
        "pool), so its `VmHWM` is the job's peak, Celery and the S3 transfers included.",
        "",
        "| step | seconds | MB of float32 per second | peak RSS (MiB) | within ckpt + 1 GiB |",
        "|---|---|---|---|---|",
        f"| upload (API) | {m['upload_s']} | {mb / m['upload_s']:.1f} | "
        f"{m['api_peak_rss'] / MiB:.0f} (API) | {ok(m['api_peak_rss'])} |",
        f"| job (worker) | {job} | {mb / job:.2f} | {worker / MiB:.0f} (worker) | {ok(worker)} |",
        f"| download | {m['download_s']} | | | |",
        f"| decode | {m['service_decode_s']} | {mb / m['service_decode_s']:.2f} | "
        f"{m['service_decode_peak_rss'] / MiB:.0f} | {ok(m['service_decode_peak_rss'])} |",
        "",
        f"The job reported {m['progress_messages']} distinct progress messages, tensor by "
        f"tensor ({sample}). The decoded file has the checkpoint's names, shapes and dtypes: "
        f"{'yes' if m['decoded_matches'] else '**no**'}.",
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny model of the same layout")
    ap.add_argument("--out-dir", type=Path, help="with --quick: where to write the table")
    ap.add_argument("--no-service", action="store_true", help="the CLI only, not the service")
    args = ap.parse_args(argv)
    settings = ["--sparsity", "0.95", "--r", "3", "--t", "8", "--structure", "auto"]
    if args.quick:
        shapes = gpt2_shapes(vocab=500, width=32, blocks=2, context=64)
        out = args.out_dir or Path("scale-quick")
        m = measure(shapes, out, settings)
        if not args.no_service:
            m |= measure_service(out / "gpt2.safetensors", out, settings)
        (out / "scale.md").write_text(markdown(m, settings) + "\n", encoding="utf-8")
        (out / "scale.json").write_text(json.dumps(m, indent=1) + "\n", encoding="utf-8")
        return
    folder = ROOT / ".cache" / "scale"
    m = measure(gpt2_shapes(), folder, settings)
    if not args.no_service:
        m |= measure_service(folder / "gpt2.safetensors", folder, settings)
    record(
        "scale",
        title="Scale: a 124M-parameter checkpoint without code, compressed and decoded",
        command=command_line(__file__, argv),
        markdown=markdown(m, settings),
        data=m | {"cpus": os.cpu_count()},
    )
    print(markdown(m, settings))


if __name__ == "__main__":
    main()
