"""The Layers view's figures and Rich renderings, from `core.events.LayerStats` (no Textual here).

A statistic is read per row: a block (0, 1, ...) or, for the parameter statistics, a top-level module of the
kind shown (tok_emb, pos_emb, out_head, final_norm). A row's parameter figures combine all its tensors of that
kind: the RMS over all their numbers, so a big matrix counts for more than its bias.
"""

import math
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from core.events import BlockStats, LayerStats

KINDS = ("attention", "mlp", "norms", "embeddings")


@dataclass(frozen=True)
class Statistic:
    name: str  # as in layers.jsonl
    label: str
    per_kind: bool  # a parameter statistic (one of KINDS at a time), else one of the blocks' forward pass
    log: bool = False  # shown as log10
    guide: float | None = None  # in the units shown


STATISTICS = (
    Statistic("update_data", "update:data (log10)", per_kind=True, log=True, guide=-3.0),
    Statistic("grad_data", "grad:data (log10)", per_kind=True, log=True),
    Statistic("grad_rms", "gradient RMS (log10)", per_kind=True, log=True),
    Statistic("weight_rms", "weight RMS", per_kind=True),
    Statistic("resid_attn_rms", "residual RMS after attention", per_kind=False),
    Statistic("resid_mlp_rms", "residual RMS after MLP", per_kind=False),
    Statistic("act_mean", "MLP activation mean", per_kind=False),
    Statistic("act_std", "MLP activation std", per_kind=False),
    Statistic("act_near_zero", "MLP activations near zero (fraction)", per_kind=False),
    Statistic("head_entropy", "attention entropy, mean of heads (nats)", per_kind=False),
)


def row_values(event: LayerStats, statistic: Statistic, kind: str) -> dict[str, float | None]:
    """Each row's value of `statistic` (of `kind`'s tensors, for a parameter statistic) at one measurement."""
    if not statistic.per_kind:
        return {str(b.layer): _block_value(b, statistic.name) for b in event.blocks}
    sums: dict[str, dict[str, float | None]] = {}  # row -> numel-weighted sums of squares
    for p in event.params:
        if p.kind != kind:
            continue
        row = sums.setdefault(p.layer, {"n": 0.0, "weight": 0.0, "grad": 0.0, "update": 0.0})
        row["n"] += p.numel
        row["weight"] += p.numel * p.weight_rms**2
        for name, value in (("grad", p.grad_rms), ("update", _update_rms(p.update_data, p.weight_rms))):
            row[name] = None if value is None or row[name] is None else row[name] + p.numel * value**2
    return {layer: _combined(row, statistic) for layer, row in sums.items()}


def _block_value(block: BlockStats, name: str) -> float:
    if name == "head_entropy":
        return sum(block.head_entropy) / len(block.head_entropy)
    return getattr(block, name)


def _update_rms(update_data: float | None, weight_rms: float) -> float | None:
    return None if update_data is None else update_data * weight_rms


def _combined(row: dict, statistic: Statistic) -> float | None:
    weight = math.sqrt(row["weight"] / row["n"])
    if statistic.name == "weight_rms":
        return weight
    figure = row["grad" if statistic.name in ("grad_rms", "grad_data") else "update"]
    if figure is None:
        return None
    value = math.sqrt(figure / row["n"])
    if statistic.name == "grad_rms":
        return value
    return value / weight if weight > 0 else None


def shown_value(value: float | None, statistic: Statistic) -> float | None:
    """The value as the view shows it: log10 for the ratios (None where there is nothing to show)."""
    if value is None or not math.isfinite(value):
        return None
    if statistic.log:
        return math.log10(value) if value > 0 else None
    return value


def series(events: list[LayerStats], statistic: Statistic, kind: str) -> tuple[list[str], list[list[float | None]]]:
    """(the rows, in model order; each row's shown values, one per measurement)."""
    rows: list[str] = []
    per_event = [row_values(event, statistic, kind) for event in events]
    for values in per_event:
        rows += [row for row in values if row not in rows]
    return rows, [[shown_value(values.get(row), statistic) for values in per_event] for row in rows]


def colour(fraction: float) -> str:
    """Dark blue (0) through teal and green to yellow (1): a perceptually even-ish scale."""
    stops = ((20, 30, 90), (30, 130, 140), (90, 190, 80), (250, 230, 60))
    x = max(0.0, min(1.0, fraction)) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    t = x - i
    r, g, b = (round(a + (c - a) * t) for a, c in zip(stops[i], stops[i + 1], strict=True))
    return f"rgb({r},{g},{b})"


def value_range(values: list[list[float | None]], guide: float | None) -> tuple[float, float]:
    finite = [v for row in values for v in row if v is not None]
    if guide is not None:
        finite.append(guide)
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def heatmap(
    rows: list[str], values: list[list[float | None]], statistic: Statistic, selected: int, width: int
) -> Group:
    """Rows × measurements (the latest `width` of them), each cell coloured by its value; then the scale."""
    low, high = value_range(values, statistic.guide)
    label = max((len(row) for row in rows), default=1) + 1
    columns = max(1, width - label - 1)
    measurements = len(values[0]) if values else 0
    cell = max(1, min(3, columns // max(1, measurements)))  # a few measurements: wider cells
    lines = []
    for i, (row, row_values_) in enumerate(zip(rows, values, strict=True)):
        line = Text(f"{row:>{label}} ", style="bold reverse" if i == selected else "dim")
        for value in row_values_[-(columns // cell) :]:
            if value is None:
                line.append("·" * cell, style="dim")
            else:
                line.append("█" * cell, style=colour((value - low) / (high - low)))
        lines.append(line)
    scale = Text(" " * (label + 1))
    scale.append(f"{low:.3g} ", style="dim")
    for i in range(8):
        scale.append("█", style=colour(i / 7))
    scale.append(f" {high:.3g}", style="dim")
    if statistic.guide is not None:
        where = round((statistic.guide - low) / (high - low) * 7)
        scale.append(f"  guide {statistic.guide:g} at ", style="dim")
        scale.append("█", style=colour(where / 7))
    lines.append(scale)
    return Group(*lines)


def latest_table(rows: list[str], values: list[list[float | None]], statistic: Statistic, selected: int) -> Table:
    """The latest value of each row; beside update:data, how far it is from the guide."""
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="dim")
    table.add_column("layer", justify="right", no_wrap=True)
    table.add_column("latest", justify="right", no_wrap=True)
    if statistic.guide is not None:
        table.add_column("vs guide", no_wrap=True)
    for i, (row, row_values_) in enumerate(zip(rows, values, strict=True)):
        value = row_values_[-1] if row_values_ else None
        cells = [Text(row, style="bold reverse" if i == selected else ""), "—" if value is None else f"{value:.3g}"]
        if statistic.guide is not None:
            cells.append(_against_guide(value, statistic.guide))
        table.add_row(*cells)
    return table


def _against_guide(value: float | None, guide: float) -> Text:
    if value is None:
        return Text("")
    off = value - guide
    if abs(off) < 0.5:  # within about 3× of it
        return Text("near", style="green")
    return Text(f"{'↑' if off > 0 else '↓'} {10 ** abs(off):.0f}×", style="yellow" if abs(off) < 2 else "red")


def head_grid(event: LayerStats | None, selected: int | None) -> Group:
    """Each block's heads' attention entropy as cells (dark: collapsed onto one token; bright: spread evenly),
    and the selected block's values."""
    if event is None or not event.blocks:
        return Group(Text("no attention entropies yet", style="dim"))
    spread = math.log(event.context_length)  # the entropy of attention spread evenly over all T tokens
    n_heads = len(event.blocks[0].head_entropy)
    header = Text("heads ", style="dim")
    header.append(" ".join(f"{h:>2}" for h in range(n_heads)), style="dim")
    lines = [Text(f"head entropy (0: one token … {spread:.2f}: all {event.context_length})", style="dim")]
    lines.append(header)
    for b in event.blocks:
        line = Text(f"{b.layer:>5} ", style="bold reverse" if b.layer == selected else "dim")
        for h, entropy in enumerate(b.head_entropy):
            line.append("██", style=colour(entropy / spread))
            if h < n_heads - 1:
                line.append(" ")
        lines.append(line)
    chosen = next((b for b in event.blocks if b.layer == selected), None)
    if chosen is not None:
        lines.append(Text(f"block {chosen.layer}: " + " ".join(f"{e:.2f}" for e in chosen.head_entropy)))
    return Group(*lines)
