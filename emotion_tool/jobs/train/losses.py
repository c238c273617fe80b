"""The loss terms: 1 − CCC on valence/arousal/dominance, and class weights for the cross-entropy.

Layer 4, jobs (`emotion_tool.jobs`).
"""

from __future__ import annotations

import numpy as np
import torch

from emotion_tool.science.data import Manifest

__all__ = ["ccc_loss"]


def ccc_loss(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean over dimensions of 1 − CCC, over the rows where the target is not NaN.

    Args:
        prediction: (B, D); target: (B, D) with NaN where a dimension is not annotated.

    Returns:
        (loss, dimensions scored); dimensions with fewer than 2 annotated rows are left out, and the
        loss is 0 (with a gradient of 0) when none is scored.
    """
    terms = []
    for d in range(prediction.shape[1]):
        ok = ~torch.isnan(target[:, d])
        if int(ok.sum()) < 2:
            continue
        x, y = prediction[ok, d].float(), target[ok, d].float()
        mx, my = x.mean(), y.mean()
        cov = ((x - mx) * (y - my)).mean()
        denom = x.var(unbiased=False) + y.var(unbiased=False) + (mx - my) ** 2
        terms.append(1.0 - 2.0 * cov / (denom + 1e-8))
    if not terms:
        return prediction.sum() * 0.0, 0
    return torch.stack(terms).mean(), len(terms)


def _class_weights(manifest: Manifest, labels: list[str], mode: str) -> torch.Tensor:
    counts = np.array([sum(1 for it in manifest.items if it.label == lab) for lab in labels], dtype=np.float64)
    weights = np.ones(len(labels))
    if mode == "balanced":
        present = counts > 0
        weights[present] = counts.sum() / (present.sum() * counts[present])  # absent classes keep weight 1
    return torch.tensor(weights, dtype=torch.float32)
