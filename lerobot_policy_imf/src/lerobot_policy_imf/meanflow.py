"""improved MeanFlow (Geng et al., arXiv 2512.02012): the training loss of the average-velocity head and the walk
that samples an action chunk with it, with data at t = 0 and noise at t = 1:
    z_t = (1 - t) x + t e,            the conditional velocity is e - x
    v(z_t, t) = u(z_t, t, t)          the network's own instantaneous velocity
    du/dt = d/dt u(z_t, r, t) along (dz/dt = v, dr/dt = 0, dt/dt = 1)       one torch.func.jvp
    V = u(z_t, r, t) + (t - r) sg(du/dt)  is regressed onto e - x           (at r = t this is flow matching)
and one step of sampling is x = e - u(e, 0, 1); k steps walk t = 1 -> 0 with z_r = z_t - (t - r) u(z_t, r, t).
Also their torch.compile forms: the loss for compile_train, a frozen copy of a module for compile_inference.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .configuration_imf import IMFConfig


def sample_times(
    batch: int, config: IMFConfig, device: torch.device | str, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(r, t) with 0 <= r <= t <= 1: two logit-normal draws sorted, and r = t for `equal_time_share` of them."""
    draws = torch.sigmoid(
        config.time_mu + config.time_sigma * torch.randn(2, batch, device=device, generator=generator)
    )
    t, r = draws.max(dim=0).values, draws.min(dim=0).values
    equal = torch.rand(batch, device=device, generator=generator) < config.equal_time_share
    return torch.where(equal, t, r), t


def imf_loss_terms(
    net: Callable[..., Tensor], x: Tensor, e: Tensor, r: Tensor, t: Tensor, condition: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The compound V = u + (t - r) sg(du/dt) and its regression target e - x, each (B, H, A); also u and du/dt.

    `net(z, r, t, condition)` is the average-velocity network. The tangent of z is the network's own
    instantaneous velocity u(z_t, t, t), computed without gradient (iMF), so the target does not depend on
    which noise sample met which action chunk.
    """
    tt = t.view(-1, 1, 1)
    z = (1 - tt) * x + tt * e
    with torch.no_grad():
        v = net(z, t, t, condition)
    u, dudt = torch.func.jvp(
        lambda z_, r_, t_: net(z_, r_, t_, condition), (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t))
    )
    dudt = dudt.detach()
    return u + (t - r).view(-1, 1, 1) * dudt, e - x, u, dudt


def imf_loss(
    net: Callable[..., Tensor],
    x: Tensor,
    e: Tensor,
    r: Tensor,
    t: Tensor,
    condition: Tensor,
    power: float,
    eps: float,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample loss (B,) and squared error (B, H, A) of the compound against e - x: the mean over valid
    (unpadded) action steps, divided by sg((error + eps)^power), the adaptive weight of the iMF code."""
    compound, target, _, _ = imf_loss_terms(net, x, e, r, t, condition)
    error = (compound - target) ** 2
    mask = torch.ones_like(error) if valid is None else valid.to(error).unsqueeze(-1).expand_as(error)
    per_sample = (error * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)
    if power:
        per_sample = per_sample / (per_sample.detach() + eps) ** power
    return per_sample, error


@torch.no_grad()
def sample_chunk(
    net: Callable[..., Tensor], noise: Tensor, condition: Tensor, steps: int, guide: Callable | None = None
) -> Tensor:
    """Walk t = 1 -> 0 in `steps` jumps of the average velocity: z_r = z_t - (t - r) u(z_t, r, t).

    With `guide` (real-time chunking: LeRobot's `RTCProcessor.denoise_step`), each jump follows the guided average
    velocity to 0 instead: z_t - t u(z_t, 0, t) is then exactly the clean chunk the guidance compares with the
    previous chunk's leftover, and the jump z_t - (t - r) u(z_t, 0, t) is the deterministic DDIM step toward it
    (the same as the plain walk when steps = 1)."""
    z = noise
    times = torch.linspace(1.0, 0.0, steps + 1, device=noise.device, dtype=noise.dtype)
    for t, r in itertools.pairwise(times):
        tb, rb = t.expand(z.shape[0]), r.expand(z.shape[0])
        if guide is None:
            u = net(z, rb, tb, condition)
        else:
            u = guide(z, t, r, lambda x, tb=tb: net(x, torch.zeros_like(tb), tb, condition))
        z = z - (t - r) * u
    return z


class CompiledLoss:
    """`imf_loss` through torch.compile, falling back to eager (with a warning) when inductor fails to build it:
    on one H200 with torch 2.11 Triton's make_ttgir pass rejects a fused kernel of this loss ("PassManager::run
    failed", an upstream compiler bug), which would otherwise end a training run at its first step. Eager gives
    the same loss and gradients, only slower."""

    def __init__(self, mode: str):
        import torch._dynamo.exc
        import torch._inductor.exc  # the errors caught below: torch.compile imports them lazily

        self.mode = mode
        self.compiled = torch.compile(imf_loss, mode=mode, dynamic=False)
        self.failed: str | None = None  # the compile error, once it happened

    def __call__(self, *args) -> tuple[Tensor, Tensor]:
        if self.failed is None:
            try:
                return self.compiled(*args)
            except (torch._inductor.exc.InductorError, torch._dynamo.exc.BackendCompilerFailed) as e:
                self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
                warnings.warn(
                    f"compile_train (mode {self.mode!r}): torch.compile could not build imf's loss on this "
                    f"machine ({self.failed}); training goes on in eager mode, same loss, slower",
                    stacklevel=2,
                )
        return imf_loss(*args)


def frozen_compiled(module: nn.Module) -> Callable[..., Tensor]:
    """A copy of `module` through torch.compile with inductor's freezing, for inference: its weights become
    constants of the compiled code. A copy, because dynamo would hand a later compile of the same module the
    frozen code of the first (its guards check which tensors, not their values). The config is patched around every
    call: compilation is lazy, and `torch.compile(options={"freezing": True})` does not reach the freezing pass."""
    import torch._inductor.config

    compiled = torch.compile(copy.deepcopy(module), dynamic=False)

    def call(*args: Tensor) -> Tensor:
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args)

    return call
