"""AdamW whose state covers only the selected entries of each masked parameter: phase 2's optimizer.

Phase 2 lets only the K masked entries move. A dense AdamW with masked gradients gives the same
result, but keeps two moments for every maskable parameter (2 x 4 bytes each) and updates all of
them every step. :class:`SparseAdamW` keeps, per masked parameter, the flat indices of its selected
entries and two moment vectors of that length; a step gathers the gradient at those indices, updates
the moments and scatters the new values back. Weight decay (decoupled, as AdamW) touches the selected
entries only. Parameters given without a mask (a new classifier or MLM head) are trained densely, as
AdamW does.

The arithmetic of a step is AdamW's (``torch.optim.AdamW``, foreach form: one multi-tensor kernel per
operation over all of a group's tensors), entry by entry, so the result equals a dense masked AdamW on
the same gradients to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

INDEX = "index"


class SparseAdamW(torch.optim.Optimizer):
    """AdamW over the entries of each parameter selected by a boolean mask (all entries where no
    mask is given). ``masks`` maps a parameter to its mask (same shape). ``state_dict()`` holds,
    per masked parameter, ``index`` (sorted flat int64 indices), ``exp_avg`` and ``exp_avg_sq``
    (one value per index) and ``step``; it loads back with ``load_state_dict``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        masks: Mapping[torch.Tensor, torch.Tensor] | None = None,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid SparseAdamW settings: lr {lr}, betas {betas}, eps {eps}, weight decay {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        by_id = {id(p): m for p, m in (masks or {}).items()}
        self._gathered: dict[int, torch.Tensor] | None = None
        for group in self.param_groups:
            for p in group["params"]:
                mask = by_id.pop(id(p), None)
                if mask is None:
                    continue
                if tuple(mask.shape) != tuple(p.shape):
                    raise ValueError(f"a mask of shape {tuple(mask.shape)} for a parameter of shape {tuple(p.shape)}")
                if not p.is_contiguous():
                    raise ValueError("SparseAdamW needs contiguous parameters")
                index = torch.nonzero(mask.reshape(-1).to(p.device)).reshape(-1)
                self.state[p] = {
                    "step": torch.tensor(0.0),
                    INDEX: index,
                    "exp_avg": torch.zeros(index.numel(), dtype=p.dtype, device=p.device),
                    "exp_avg_sq": torch.zeros(index.numel(), dtype=p.dtype, device=p.device),
                }
        if by_id:
            raise ValueError("a mask was given for a parameter the optimizer does not train")

    def index_of(self, p: torch.Tensor) -> torch.Tensor | None:
        """The flat indices of ``p``'s selected entries, or None for a dense parameter."""
        return self.state.get(p, {}).get(INDEX)

    @torch.no_grad()
    def gather_gradients(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(parameter, gradient, index)`` for every parameter with a gradient: for a masked one its
        gradient at the selected entries, gathered into a new flat vector (``index`` says where they
        sit); for a dense one ``p.grad`` itself (``index`` None). The next :meth:`step` uses these
        vectors, so changes made to them in place (an L1 term, clipping) reach the update."""
        out = []
        self._gathered = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                index = self.index_of(p)
                g = p.grad if index is None else p.grad.reshape(-1).index_select(0, index)
                self._gathered[id(p)] = g
                out.append((p, g, index))
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """``torch.optim.Optimizer.load_state_dict``, with the indices kept exact: the base class casts
        every state tensor but ``step`` to its parameter's dtype, and float32 holds integers exactly
        only up to 2**24 (a word-embedding matrix has more entries), so the indices are set aside
        and put back as int64 after it."""
        saved_state = state_dict.get("state") or {}
        indices = {key: entry[INDEX] for key, entry in saved_state.items() if isinstance(entry, dict) and INDEX in entry}
        stripped = {**state_dict, "state": {key: {k: v for k, v in entry.items() if k != INDEX} if key in indices else entry
                                            for key, entry in saved_state.items()}}
        super().load_state_dict(stripped)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        by_saved_id = dict(zip(saved_ids, params))
        for key, index in indices.items():
            p = by_saved_id[key]
            self.state[p][INDEX] = torch.as_tensor(index).to(device=p.device, dtype=torch.long)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        gathered, self._gathered = self._gathered, None
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            values, grads, exp_avgs, exp_avg_sqs, steps, scatter = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                index = state.get(INDEX)
                if index is not None and index.numel() == 0:
                    continue
                g = gathered.get(id(p)) if gathered is not None else None
                if g is None:
                    g = p.grad if index is None else p.grad.reshape(-1).index_select(0, index)
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                steps.append(float(state["step"]))
                values.append(p if index is None else p.view(-1).index_select(0, index))
                scatter.append((p, index))
                grads.append(g)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            if not values:
                continue
            # torch.optim.AdamW's foreach step, on the selected entries: decay, moments, bias-corrected update.
            if wd != 0:
                torch._foreach_mul_(values, 1 - lr * wd)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            step_sizes = [(lr / (1 - beta1**step)) * -1 for step in steps]
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, [(1 - beta2**step) ** 0.5 for step in steps])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(values, exp_avgs, denom, step_sizes)
            for (p, index), updated in zip(scatter, values):
                if index is not None:
                    p.view(-1).index_copy_(0, index, updated)
        return loss


def moment_bytes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes an optimizer holds: ``moments`` (exp_avg, exp_avg_sq) and ``indices`` apart."""
    out = {"moments": 0, "indices": 0}
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key in ("exp_avg", "exp_avg_sq", INDEX):
                out["indices" if key == INDEX else "moments"] += value.numel() * value.element_size()
    return out
