"""Rich renderings of a `core.inspection.Trace`, shared by `minigpt-tui inspect` and the app's Inspect tab.

Each fits a given width: the tokens as coloured spans, the next tokens as a bar chart, the attention weights
as a heatmap of Unicode shades, the logit lens as a column.
"""

from rich.console import Group
from rich.table import Table
from rich.text import Text

from core.inspection import LensEntry, Prediction

# Every control character shows as a symbol (a token can be a newline or a tab; the terminal must not act on it).
_TOKEN_PICTURES = {code: 0x2400 + code for code in range(32)} | {0x7F: 0x2421, ord("\n"): "↵", ord("\t"): "⇥"}
_SPAN_COLOURS = ["on #3a3a6a", "on #3a5a3a", "on #6a4a2a", "on #5a3a5a"]  # neighbouring tokens told apart
_SHADES = " ░▒▓█"


def shown(token: str) -> str:
    return token.translate(_TOKEN_PICTURES)


def quoted(token: str, width: int = 12) -> str:
    """A token in quotes, so leading spaces show, cut to `width` characters."""
    text = shown(token)
    return f'"{text}"' if len(text) <= width - 2 else f'"{text[: width - 3]}…'


def percent(prob: float) -> str:
    """A probability as a percentage with three significant digits: 21.4%, 0.0207%."""
    return f"{prob * 100:.3g}%"


def token_spans(tokens: list[str], position: int | None = None) -> Text:
    """The text cut into its tokens, each on a background of its own; the token at `position` reversed."""
    text = Text()
    for i, token in enumerate(tokens):
        style = "bold reverse" if i == position else _SPAN_COLOURS[i % len(_SPAN_COLOURS)]
        text.append(shown(token), style=style)
    return text


def bar(fraction: float, width: int) -> str:
    """A horizontal bar `fraction` of `width` long, in eighths of a character."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def next_tokens_chart(predictions: list[Prediction], width: int = 80, token_width: int = 16) -> Table:
    """The most probable next tokens, most probable first, as a bar chart of their probabilities."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column(no_wrap=True, min_width=token_width)
    table.add_column(justify="right", no_wrap=True, min_width=7)
    table.add_column(no_wrap=True, style="cyan")
    bar_width = max(4, width - token_width - 10)
    top = predictions[0].prob if predictions else 1.0
    for p in predictions:
        table.add_row(Text(quoted(p.token, token_width)), percent(p.prob), bar(p.prob / top, bar_width))
    return table


def logit_lens_column(entries: list[LensEntry], token_width: int = 16) -> Table:
    """The top next token after each block: how the prediction forms through the depth of the model."""
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="dim")
    table.add_column("block", justify="right", no_wrap=True)
    table.add_column("top token", no_wrap=True, min_width=token_width)
    table.add_column("prob", justify="right", no_wrap=True)
    for e in entries:
        table.add_row(str(e.layer), Text(quoted(e.token, token_width)), percent(e.prob))  # Text: never markup
    return table


def _shade(weight: float) -> tuple[str, str]:
    """A character and colour for one attention weight: blank under 2%, then four shades of a warming colour."""
    level = 0 if weight < 0.02 else 1 + min(3, int(weight * 4))
    warmth = int(80 + 175 * weight)
    return _SHADES[level], f"rgb({warmth},{warmth},{max(0, 200 - warmth)})"


def heatmap(weights, tokens: list[str], position: int, width: int = 80, height: int = 16, label: int = 14) -> Group:
    """Attention weights (T, T) as a heatmap: one row per token up to `position` (the query), one column per token
    it may attend to (the key), in `width` x `height` characters, the token's text in the first `label` columns.
    When the tokens do not all fit, it shows the last ones before `position` and, apart, the first token's
    column, which many heads lean on. Cells above the diagonal (the future, masked) show `·`."""
    cell = 2 if label + 2 * (position + 1) <= width else 1
    fit = max(3, min(height - 1, (width - label) // cell))
    if position + 1 <= fit:
        rows = keys = list(range(position + 1))
    else:
        rows = list(range(position + 1 - (fit - 2), position + 1))
        keys = [0, None, *rows]  # None: a gap between the first token's column and the rest
    header = Text(" " * label)
    for j in keys:
        header.append((" ┊" if j is None else f"{j % 100:>2}")[-cell:], style="dim")
    lines = [header]
    for i in rows:
        name = f"{quoted(tokens[i], label - 4)} {i % 100:>2} "
        row = Text(f"{name:>{label}}"[-label:], style="bold reverse" if i == position else "dim")
        for j in keys:
            if j is None:
                row.append(" ┊"[-cell:], style="dim")
            elif j > i:
                row.append("·".rjust(cell), style="dim")
            else:
                char, colour = _shade(float(weights[i][j]))
                row.append(char * cell, style=colour)
        lines.append(row)
    return Group(*lines)
