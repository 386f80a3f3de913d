"""The samples pane: the model's continuation of the sample prompt after each epoch (and every --sample-every
steps), newest at the bottom; its lower edge says when the next one comes."""

from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from core.events import EpochSampled, Restarted, RunStarted, StepDone
from core.progress import RunLength, next_sample_step
from minigpt_tui.text import printable, visible


class SamplesLog(OptionList):
    """The samples are kept as data; an `OptionList` draws only the lines on screen and caches their heights,
    so that showing one more costs the same with 10 samples or 10,000. A long sample shows its first
    `SHOWN` characters until Enter shows it whole (up to `SHOWN_WHOLE`: more would take seconds to lay out).
    Model output is shown as `Content`, never parsed as markup: it may hold `[/]` or backslashes."""

    SHOWN = 2_000
    SHOWN_WHOLE = 100_000
    prompt = ""  # what the run's samples continue, shown in bold

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.samples: list[tuple[EpochSampled, str]] = []  # each with the prompt it continues
        self.expanded: set[int] = set()  # samples shown whole
        self._scroll_to_newest = False  # the newest sample will be scrolled to once the list is laid out
        self.run: RunStarted | None = None  # the run whose samples these are, once it has started

    @property
    def count(self) -> int:
        return len(self.samples)

    def on_mount(self) -> None:
        self.border_title = "Samples"
        self.clear()

    def show_event(self, event) -> None:
        match event:
            case RunStarted():
                self.prompt, self.run = event.sample_prompt, event
                self.show_next_sample(event.start_step)
            case StepDone():
                self.show_next_sample(event.global_step)
            case EpochSampled():
                self.add(event, self.prompt)
            case Restarted():
                self.run = None
                self.clear()
                self.border_subtitle = ""
                self.remove_class("-next-sample")

    def show_next_sample(self, global_step: int) -> None:
        """Say on the lower edge at which step the next sample comes (nothing once the run is through)."""
        run = self.run
        if run is None:
            return
        length = RunLength(run.epochs, run.steps_per_epoch, run.max_steps)
        step = next_sample_step(global_step, length, run.sample_every)
        subtitle = f"next sample at step {step:,}" if step else ""  # a pane 36 columns wide at 100
        if subtitle != self.border_subtitle:
            self.border_subtitle = subtitle
            self.set_class(bool(subtitle), "-next-sample")

    def clear(self) -> None:
        self.samples.clear()
        self.expanded.clear()
        self.set_options([Option("A sample appears after each epoch (the lower edge says when).", disabled=True)])

    def add(self, event: EpochSampled, prompt: str = "") -> None:
        """Show a sample; its first `prompt` characters (what the model was given) in bold."""
        newest = len(self.samples) - 1
        following = self._scroll_to_newest or (self.highlighted in (None, newest) and self.is_vertical_scroll_end)
        if not self.samples:
            self.clear_options()
        self.samples.append((event, prompt if event.text.startswith(prompt) else ""))
        self.add_option(self._view(newest + 1))
        if following:  # follow new samples unless the reader has moved up to an older one
            self.set_reactive(OptionList.highlighted, newest + 1)
            if not self._scroll_to_newest:  # once for a whole run's samples added at once
                self._scroll_to_newest = True
                self.call_after_refresh(self._show_newest)

    def watch_virtual_size(self) -> None:
        # Laid out again (shown for the first time, a scrollbar appearing, the Inspect tab moving the chart
        # aside), the samples' heights change and the end moves: a reader following the newest sample keeps
        # seeing it, unless it is shown whole, being read.
        newest = len(self.samples) - 1
        if self.samples and self.highlighted == newest and newest not in self.expanded:
            self.call_after_refresh(self._show_newest)

    def _show_newest(self) -> None:
        self._scroll_to_newest = False
        self.scroll_end(animate=False, immediate=True)

    def _view(self, index: int) -> Content:
        event, prompt = self.samples[index]
        limit = self.SHOWN_WHOLE if index in self.expanded else self.SHOWN
        continuation = event.text[len(prompt) : limit]
        parts = [
            Content.styled(f"epoch {event.epoch} · step {event.global_step:,}", "bold $text-accent"),
            Content("\n"),
            Content.styled(printable(prompt[:limit]), "bold"),
            visible(continuation),
        ]
        if continuation and not continuation.strip():
            parts.append(Content.styled("  (whitespace only)", "dim italic"))
        hidden = len(event.text) - limit
        if hidden > 0:
            where = "enter shows it whole" if index not in self.expanded else "the whole sample is in samples.txt"
            parts.append(Content.styled(f"\n… {hidden:,} more characters: {where}", "dim italic"))
        elif index in self.expanded:
            parts.append(Content.styled("\n(enter shows less)", "dim italic"))
        return Content.assemble(*parts, "\n")  # a blank line between samples

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        """Enter (or a click) shows a long sample whole, or shortens it again."""
        message.stop()
        index = message.option_index
        if len(self.samples[index][0].text) <= self.SHOWN:
            return
        self.expanded ^= {index}
        self.replace_option_prompt_at_index(index, self._view(index))
        self.scroll_to_highlight(top=True)

    # Up and down move from sample to sample, but first scroll through one that is taller than the pane.
    def action_cursor_down(self) -> None:
        top, bottom = self._highlighted_lines()
        if bottom > self.scroll_offset.y + self.scrollable_content_region.height:
            self.scroll_down(animate=False)
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        top, bottom = self._highlighted_lines()
        if top < self.scroll_offset.y:
            self.scroll_up(animate=False)
        else:
            super().action_cursor_up()

    def _highlighted_lines(self) -> tuple[int, int]:
        """The first line of the highlighted sample and the line after its last."""
        if self.highlighted is None:
            return self.scroll_offset.y, self.scroll_offset.y
        top = self._index_to_line[self.highlighted]
        return top, top + self._heights[self.highlighted]
