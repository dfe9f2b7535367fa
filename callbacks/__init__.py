"""Monitoring callbacks (FID, mode-collapse diversity, gradient norms, samples) live here."""

__all__: list[str] = []
