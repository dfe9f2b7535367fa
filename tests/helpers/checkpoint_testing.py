"""A crafted checkpoint: a pickle whose unpickling without restrictions (``torch.load(weights_only=False)``) writes
a marker file, as a hostile file planted in a run folder could run any code."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch


class WritesMarker:
    """Unpickled without restrictions, it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def plant(path: Path, marker: Path, base: Optional[dict] = None) -> Path:
    """Write at ``path`` a complete-looking checkpoint (``base``, else the keys a resume needs) that also carries
    the payload."""
    base = base if base is not None else {"state_dict": {}, "optimizer_states": [], "loops": {}}
    torch.save({**base, "payload": WritesMarker(marker)}, path)
    return path
