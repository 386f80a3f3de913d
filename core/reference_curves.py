"""Published loss curves a run can be held against ("is my loss normal?"), kept as data with their sources in
core/assets/reference_curves.json, so that more can be added without code. A curve is shown only for a run whose
configuration matches the one it was measured with."""

import json
from dataclasses import dataclass
from pathlib import Path

from core.events import Evaluated

REFERENCE_FILE = Path(__file__).parent / "assets" / "reference_curves.json"


@dataclass(frozen=True)
class ReferenceCurve:
    name: str  # short, for a chart's legend
    source: str  # where the figures were published
    match: dict  # {"data": file name, "model": {...}, "train": {...}}: settings a run's config.json must have
    evaluations: tuple[Evaluated, ...] = ()  # the published curve, point by point
    level: dict | None = None  # or one figure per loss ({"train_loss": ..., "val_loss": ...}), drawn flat

    def matches(self, config: dict) -> bool:
        """Whether a run's config.json ({"model": ..., "train": ...}) has every setting this curve was made with."""
        for section in ("model", "train"):
            settings = config.get(section)
            if not isinstance(settings, dict):
                return False
            if any(settings.get(key) != value for key, value in self.match.get(section, {}).items()):
                return False
        train = config["train"]
        data = Path(str(train["data"])).name if train.get("data") else "the-verdict.txt"  # None: the bundled story
        return self.match.get("data") in (None, data)


def reference_curves(path: Path = REFERENCE_FILE) -> list[ReferenceCurve]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return [
        ReferenceCurve(
            name=curve["name"],
            source=curve["source"],
            match=curve["match"],
            evaluations=tuple(Evaluated(epoch=0, step=0, elapsed_s=0.0, **point) for point in curve.get("points", ())),
            level=curve.get("level"),
        )
        for curve in document["curves"]
    ]


def matching_curves(config: dict, curves: list[ReferenceCurve] | None = None) -> list[ReferenceCurve]:
    """The reference curves measured with this run's configuration."""
    return [curve for curve in (reference_curves() if curves is None else curves) if curve.matches(config)]
