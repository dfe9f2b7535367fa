"""Improved precision and recall (Kynkäänniemi et al. 2019) as a torchmetrics metric, for FIDCallback."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


class PrecisionRecall(Metric):
    """Improved precision and recall of generated images (Kynkäänniemi et al. 2019, "Improved Precision and Recall
    Metric for Assessing Generative Models"): each real feature vector gets a ball reaching its k-th nearest real
    neighbour; **precision** is the share of generated samples inside some real ball (fidelity), **recall** the
    share of real samples inside some generated ball (coverage: low under mode collapse even when FID looks fine).

    Features are kept (not running sums) and gathered across DDP ranks by torchmetrics; the computation is
    torch-fidelity's (``prc_features_to_metric``), so values match its ``precision``/``recall`` on the same features.
    The paper and torch-fidelity use VGG-16 features (:class:`~lit_gans.callbacks.features.VGG16Features`);
    ``FIDCallback`` passes its FID extractor's features unless ``precision_recall_features="vgg16"``, and logs
    which.

    Args:
        feature: module mapping images to ``(N, d)`` features.
        neighborhood: k.
        reset_real_features: whether ``reset`` also forgets the real features (as in torchmetrics' FID and KID).
    """

    full_state_update = False

    def __init__(self, feature: nn.Module, neighborhood: int = 3, reset_real_features: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.feature, self.neighborhood, self.reset_real_features = feature, neighborhood, reset_real_features
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: Tensor, real: bool) -> None:
        features = self.feature(images).flatten(1).double()
        (self.real_features if real else self.fake_features).append(features)

    def compute(self) -> tuple[Tensor, Tensor]:
        from torch_fidelity.metric_prc import prc_features_to_metric

        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        if min(len(real), len(fake)) <= self.neighborhood:
            raise ValueError(f"precision/recall need more than neighborhood={self.neighborhood} real and fake samples")
        out = prc_features_to_metric(fake, real, prc_neighborhood=self.neighborhood, prc_batch_size=10_000,
                                     save_cpu_ram=False, verbose=False)  # fmt: skip
        return torch.tensor(out["precision"]), torch.tensor(out["recall"])

    def reset(self) -> None:
        real = list(self.real_features)  # torchmetrics clears list states in place
        super().reset()
        if not self.reset_real_features:
            self.real_features = real


__all__ = ["PrecisionRecall"]
