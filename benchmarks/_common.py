"""Shared pieces of the speed-and-memory benchmarks: the machine header, peak-memory measurement,
XLM-R base parameter shapes, difference matrices with a realistic spectrum, and a plain-text table.

Peak memory is read from the kernel, not from ``tracemalloc`` (which does not see torch's
allocations): on Linux the process's peak resident set (``VmHWM``) is reset by writing ``5`` to
``/proc/self/clear_refs`` before a measurement and read afterwards; the figure reported is that
peak minus the resident set just before the measured code ran. Where the reset is not available
the benchmarks run each measurement in a fresh subprocess and use ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from deftx.records.provenance import cpu_model, git_commit

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEFTX_SHARED_DIR", REPO.parent / "shared"))

# K of the LT-SFT paper (XLM-R base): language and task SFTs.
K_LANG = 7_667_712
K_TASK = 14_155_776
MB = 1 << 20
GIB = 1 << 30


# ------------------------------------------------------------------------------------ the machine


def short_commit() -> str:
    commit = git_commit()
    if commit is None:
        return "unknown"
    return commit[:7] + ("+dirty" if commit.endswith("+dirty") else "")


def machine_header(title: str, command: Sequence[str] | None = None) -> str:
    import torch

    try:
        import transformers

        tf = transformers.__version__
    except ImportError:
        tf = "-"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        f"# {title}",
        f"date      {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"commit    {short_commit()}",
        f"command   {' '.join(command or ['python', *sys.argv])}",
        f"cpu       {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, RAM {mem:.1f} GiB",
        f"gpu       {cuda}",
        f"software  python {platform.python_version()}, torch {torch.__version__}, transformers {tf}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ memory


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """The resident set now (bytes)."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The peak resident set since the process started or since the last :func:`reset_peak`."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def reset_peak() -> bool:
    """Reset the peak resident set to the current one (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.extra``: the peak resident set during the block minus
    the resident set at its start (bytes)."""

    def __enter__(self) -> PeakMemory:
        import gc

        gc.collect()
        self.exact = reset_peak()
        self.base = rss_bytes()
        self.extra = 0
        return self

    def __exit__(self, *exc) -> None:
        self.extra = max(0, peak_rss_bytes() - self.base)


@contextmanager
def timer():
    """``with timer() as t: ...`` then ``t()`` gives the seconds the block took."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def run_worker(script: Path, args: Iterable[str], timeout: float = 900) -> dict:
    """Run ``script --worker ARGS`` in a fresh interpreter; it prints one JSON object as its last line."""
    cmd = [sys.executable, str(script), "--worker", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise RuntimeError(f"worker {' '.join(cmd[1:])} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ shapes


def xlmr_base_shapes(layers: int = 12, vocab: int = 250_002, pooler: bool = True) -> dict[str, tuple[int, ...]]:
    """Maskable parameters of XLM-R base (every encoder parameter except LayerNorm), by the
    base-relative names ``XLMRobertaModel`` gives them, in its order."""
    h, ff = 768, 3072
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (vocab, h),
        "embeddings.position_embeddings.weight": (514, h),
        "embeddings.token_type_embeddings.weight": (1, h),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + part + ".weight"] = (h, h)
            shapes[p + part + ".bias"] = (h,)
        shapes[p + "intermediate.dense.weight"] = (ff, h)
        shapes[p + "intermediate.dense.bias"] = (ff,)
        shapes[p + "output.dense.weight"] = (h, ff)
        shapes[p + "output.dense.bias"] = (h,)
    if pooler:
        shapes["pooler.dense.weight"] = (h, h)
        shapes["pooler.dense.bias"] = (h,)
    return shapes


def xlmr_base_config(**overrides):
    """XLM-R base's configuration (``XLMRobertaConfig()`` defaults to BERT's vocabulary and position
    sizes, so XLM-R's are set here)."""
    from transformers import XLMRobertaConfig

    values = dict(vocab_size=250_002, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                  bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    values.update(overrides)
    return XLMRobertaConfig(**values)


def numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def random_differences(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict:
    """Signed Gaussian differences, scaled per tensor (as a phase-1 difference is: some tensors move
    more than others). Written in place: no temporaries beside the result."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out = {}
    for i, (name, shape) in enumerate(shapes.items()):
        scale = float(torch.empty(1).uniform_(0.5, 2.0, generator=generator)) * 1e-3
        out[name] = torch.empty(shape).normal_(0.0, scale, generator=generator)
    return out


SPECTRA = {
    # name: (share of the energy in the rank-32 part, its decay length, power of the noise spectrum)
    "steep": ((0.88, 0.96), 8.0, 0.5),
    "heavy": ((0.55, 0.85), 16.0, 0.5),
}


def realistic_difference(shape: tuple[int, int], seed: int, spectrum: str = "heavy", low_rank: int = 32) -> object:
    """A difference matrix whose spectrum looks like a fine-tuning update's: a rank-``low_rank`` part
    with exponentially decaying singular values (``exp(-i/tau)``) holding most of the energy (a share
    drawn per matrix), plus dense Gaussian noise whose column space has a power-law spectrum
    (``Z diag(j^-alpha) Q^T``, Z Gaussian, Q a random rotation). Built in row chunks.

    ``spectrum="steep"``: the rank-32 part holds 88-96% (tau 8): ``energy:0.9`` keeps ranks of
    about 10-30. ``"heavy"``: it holds 55-85% (tau 16): ``energy:0.9`` keeps about 30-200 of 768."""
    import torch

    (low_share, high_share), tau, alpha = SPECTRA[spectrum]
    g = torch.Generator().manual_seed(seed)
    m, n = (shape[0], shape[1]) if shape[0] >= shape[1] else (shape[1], shape[0])
    p = n
    share = float(torch.empty(1).uniform_(low_share, high_share, generator=g))
    s = torch.exp(-torch.arange(low_rank, dtype=torch.float64) / tau)
    s = (s * (share / s.pow(2).sum()).sqrt()).float()
    d = torch.arange(1, p + 1, dtype=torch.float64).pow(-alpha)
    d = (d * ((1 - share) / d.pow(2).sum()).sqrt()).float()
    v_low, _ = torch.linalg.qr(torch.randn(n, low_rank, generator=g))  # n x r, orthonormal
    rotation, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    noise_basis = (rotation * d).T.contiguous()  # rows scaled: diag(d) Q^T
    low_basis = (v_low * s).T.contiguous()  # diag(s) V^T
    out = torch.empty(m, n)
    scale = 1.0 / m**0.5  # U and Z columns have norm ~1 after this: ||Delta||_F ~ 1
    for start in range(0, m, 1 << 15):
        rows = min(1 << 15, m - start)
        z = torch.randn(rows, p, generator=g)
        block = out[start : start + rows]
        torch.mm(z, noise_basis, out=block)
        u = torch.randn(rows, low_rank, generator=g)
        block.addmm_(u, low_basis)
        block.mul_(scale)
    if shape[0] < shape[1]:
        out = out.T.contiguous()
    return out


# ------------------------------------------------------------------------------------ output


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table (Markdown pipe syntax, so it pastes into docs as it is)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def mib(n_bytes: float) -> float:
    return n_bytes / MB


def trainable_maskable(model):
    """Freeze every parameter of ``model`` but the maskable ones; returns those (by name) and a copy of
    their values, the start point that phase 1's difference and phase 2's reset are taken from."""
    from deftx.model import maskable_parameters

    maskable = maskable_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in maskable.values():
        p.requires_grad_(True)
    return maskable, {name: p.detach().clone() for name, p in maskable.items()}
