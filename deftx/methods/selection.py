"""Global top-K selection over many score tensors, without concatenating them.

The K largest scores over all tensors together are found by a radix select on the bit patterns of
non-negative float32 values (whose integer order equals their float order): one histogram pass over
the high 16 bits finds the bucket holding the K-th largest score, a second pass over the low 16 bits
inside that bucket gives its exact value, a third pass builds the masks. Each pass works on chunks of
one tensor at a time, so the extra memory is a few chunk-sized temporaries, not a copy of the scores.

Ties at the threshold are broken deterministically: entries of earlier tensors (in the order given)
and, within a tensor, lower flat indices win.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from deftx.errors import UsageError
from deftx.sparsity import check_count

CHUNK = 1 << 22  # elements per pass step (16 MiB of float32)


def _bits(chunk: torch.Tensor) -> torch.Tensor:
    """int32 view of non-negative float32 scores (order-preserving)."""
    return chunk.to(torch.float32).abs().contiguous().view(torch.int32)


def _chunks(t: torch.Tensor):
    """Chunks of the flattened tensor, on the CPU (the histograms and masks live there, whatever
    device the scores are on)."""
    flat = t.detach().reshape(-1)
    for start in range(0, flat.numel(), CHUNK):
        yield start, flat[start : start + CHUNK].cpu()


def _kth_from_top(hist: torch.Tensor, k: int) -> tuple[int, int]:
    """Index of the bucket holding the k-th largest element, and the count in buckets above it."""
    above = torch.flip(torch.cumsum(torch.flip(hist, [0]), 0), [0])  # above[i] = count in buckets >= i
    # the highest bucket i with above[i] >= k
    idx = int(torch.nonzero(above >= k).max())
    count_above = int(above[idx + 1]) if idx + 1 < hist.numel() else 0
    return idx, count_above


def kth_largest_bits(scores: Mapping[str, torch.Tensor], k: int) -> tuple[int, int]:
    """The int32 bit pattern of the k-th largest score and the number of scores strictly above it."""
    hist_hi = torch.zeros(1 << 15, dtype=torch.int64)
    for tensor in scores.values():
        for _, chunk in _chunks(tensor):
            bits = _bits(chunk)
            if (bits >= 0x7F800000).any():
                raise UsageError("scores contain NaN or infinity; the training diverged")
            hist_hi += torch.bincount(bits >> 16, minlength=1 << 15)
    hi, above_hi = _kth_from_top(hist_hi, k)
    hist_lo = torch.zeros(1 << 16, dtype=torch.int64)
    for tensor in scores.values():
        for _, chunk in _chunks(tensor):
            bits = _bits(chunk)
            inside = bits[(bits >> 16) == hi]
            if inside.numel():
                hist_lo += torch.bincount(inside & 0xFFFF, minlength=1 << 16)
    lo, above_lo = _kth_from_top(hist_lo, k - above_hi)
    return (hi << 16) | lo, above_hi + above_lo


def select_top_k(scores: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Boolean masks (one per score tensor, same shape) marking the K largest scores over all
    tensors together. Scores are compared by absolute value (taken chunk by chunk), so signed differences can be passed directly. Exactly K entries are selected."""
    total = sum(t.numel() for t in scores.values())
    k = check_count(int(k), total, k)
    threshold, n_greater = kth_largest_bits(scores, k)
    ties_needed = k - n_greater
    masks: dict[str, torch.Tensor] = {}
    for name, tensor in scores.items():
        mask = torch.empty(tensor.numel(), dtype=torch.bool)
        for start, chunk in _chunks(tensor):
            bits = _bits(chunk)
            part = bits > threshold
            if ties_needed > 0:
                equal = torch.nonzero(bits == threshold).flatten()
                if equal.numel():
                    take = equal[:ties_needed]
                    part[take] = True
                    ties_needed -= take.numel()
            mask[start : start + chunk.numel()] = part
        masks[name] = mask.view(tensor.shape)
    return masks


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, float | int]:
    """How many selected entries two masks share: counts and the fraction of |a| (both have K)."""
    shared = n_a = n_b = 0
    for name, mask in a.items():
        n_a += int(mask.sum())
        if name in b:
            shared += int((mask & b[name]).sum())
    for mask in b.values():
        n_b += int(mask.sum())
    return {"shared": shared, "a": n_a, "b": n_b, "fraction": shared / n_a if n_a else 0.0}
