"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6).

One conditional network, trained with its label dropped to the null class some of the time,
predicts both with the label, out(x_t, c), and without it, out(x_t, null). Sampling follows

    out~ = out(x_t, null) + w (out(x_t, c) - out(x_t, null))

w = 1 is the conditional model alone, w = 0 the unconditional one, w > 1 pushes the sample
further towards what distinguishes its label (the "guidance scale" of diffusers and of most
tools; Ho & Salimans write the same rule with w' = w - 1). The rule is applied to the network's
output, eps or v alike: both are linear in it, so the guided eps and x_0 follow.

The two predictions come from one forward call on the batch stacked twice (the conditional
half first), not from two calls: on a CPU one call of 2B images costs less than two of B
(benchmarks/RESULTS.md, "Conditioning"). The scale's bounds and default are in
``diffusion.model.config`` (torch-free, for the command line).
"""

from __future__ import annotations

import torch

__all__ = ["needs_both", "guided_output"]


def needs_both(labels: torch.Tensor | None, guidance: float, null_label: int) -> bool:
    """Whether sampling ``labels`` at ``guidance`` needs the prediction with and without the label.

    Not for an unconditional model, at w = 0 or 1, or when no sample has a label: then one
    prediction is the guided one exactly, at half the cost.
    """
    if labels is None or guidance in (0.0, 1.0):
        return False
    if labels.dtype == torch.long:
        return bool((labels != null_label).any())
    return bool((labels[:, :null_label] != 0).any())


def _null_like(labels: torch.Tensor, null_label: int) -> torch.Tensor:
    if labels.dtype == torch.long:
        return torch.full_like(labels, null_label)
    null = torch.zeros_like(labels)
    null[:, null_label] = 1.0
    return null


def guided_output(
    model: torch.nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None,
    guidance: float,
    both: bool,
) -> torch.Tensor:
    """The network's output at (x, t) for ``labels``, guided with scale ``guidance``.

    ``labels``: None for an unconditional model, else [B] label indices or [B, K + 1] label
    weights (``diffusion.model.unet.UNet.forward``). ``both`` (from :func:`needs_both`, decided
    once per recording so that every call has the same shape): stack the batch twice, with and
    without the labels, and combine; otherwise one call, with the labels (w != 0) or with the
    null class (w = 0). The combination is computed in float32.
    """
    if labels is None:
        return model(x, t)
    null_label = model.config.null_label
    if not both:
        return model(x, t, labels if guidance != 0.0 else _null_like(labels, null_label))
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, _null_like(labels, null_label)]))
    cond, uncond = out.float().chunk(2)
    return uncond + guidance * (cond - uncond)
