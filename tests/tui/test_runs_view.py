"""The runs view (`minigpt-tui runs`): selecting runs onto one chart, their colours and legend, the reference line,
the settings that differ, sorting and filtering from the keyboard, and opening a run and coming back."""

import time
from pathlib import Path

import pytest
from runs_helpers import make_run
from tui_helpers import screen_text, wait_for

from core.config import GPTConfig
from core.runs import COLUMNS
from minigpt_tui import cli
from minigpt_tui.runs_app import OpenRun, RunsApp, RunsViewState
from minigpt_tui.sources import FollowedRun
from minigpt_tui.widgets.config_diff import ConfigDiff
from minigpt_tui.widgets.overlay_chart import OverlayChart, Series
from minigpt_tui.widgets.runs_table import RunsTable


@pytest.fixture
def three_runs(tmp_path, monkeypatch):
    """Three finished runs of the tiny model, by learning rate, started a minute apart (lr-1e-3 newest), under a
    relative directory, so the screen holds no temp path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    for i, lr in enumerate((1e-4, 4e-4, 1e-3)):
        losses = ((10.0, 10.2), (9.0 - i, 9.4 - i / 2), (8.0 - 2 * i, 9.3 - i / 2))
        make_run(Path("results") / f"lr-{lr:g}", losses=losses, lr=lr, started=1_780_000_000 + 60 * i)
    yield Path("results")
    monkeypatch.delenv("TZ")
    time.tzset()


def names_in_table(app) -> list[str]:
    table = app.query_one(RunsTable)
    return [table.get_row_at(i)[1].plain for i in range(table.row_count)]


async def test_selected_runs_are_overlaid_each_in_a_colour_the_legend_names(three_runs):
    app = RunsApp([three_runs])
    async with app.run_test(size=(100, 30)) as pilot:
        assert names_in_table(app) == ["lr-0.001", "lr-0.0004", "lr-0.0001"]  # newest first
        await pilot.press("space", "down", "space")
        chart = app.query_one(OverlayChart)
        assert [(s.name, s.color) for s in chart.series] == [("lr-0.001", "cyan"), ("lr-0.0004", "orange")]
        assert [len(s.evaluations) for s in chart.series] == [3, 3]
        assert "[cyan]━━[/] lr-0.001" in chart.legend() and "[orange]━━[/] lr-0.0004" in chart.legend()
        await pilot.press("up", "space", "down", "down", "space")  # off with the first, on with the third
        assert [(s.name, s.color) for s in chart.series] == [("lr-0.0004", "orange"), ("lr-0.0001", "cyan")]

        await pilot.press("x")
        assert chart.x_axis == "tokens"
        await pilot.press("v")
        assert chart.view == "lr" and "Learning rate" in chart.border_title


async def test_the_settings_that_differ_are_shown_side_by_side(three_runs):
    app = RunsApp([three_runs])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("space", "down", "space")
        diff = app.query_one(ConfigDiff)
        assert [diff.get_row_at(i) for i in range(diff.row_count)] == [["lr", "0.001", "0.0004"]]
        await pilot.press("d")
        assert diff.row_count > 20 and not diff.only_different


async def test_sorting_and_filtering_from_the_keyboard(three_runs):
    app = RunsApp([three_runs])
    async with app.run_test(size=(100, 30)) as pilot:
        columns = list(COLUMNS)  # o sorts by the next column, from "started" on
        await pilot.press(*["o"] * ((columns.index("best_val") - columns.index("started")) % len(columns)))
        assert app.state.sort_column == "best_val"
        assert names_in_table(app) == ["lr-0.001", "lr-0.0004", "lr-0.0001"]  # lowest best val loss first
        await pilot.press("O")
        assert names_in_table(app) == ["lr-0.0001", "lr-0.0004", "lr-0.001"]
        await pilot.press("slash", *"0.0004", "enter")
        assert names_in_table(app) == ["lr-0.0004"]
        assert "1 of 3 runs shown" in app.query_one(RunsTable).border_subtitle


async def test_the_reference_line_is_drawn_only_for_a_run_that_matches_it(tmp_path):
    make_run(tmp_path / "default", model=GPTConfig())  # the default run: the book's chapter 5 settings
    make_run(tmp_path / "tiny")
    app = RunsApp([tmp_path], RunsViewState(sort_column="name", descending=False))
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(OverlayChart)
        await pilot.press("down", "space")  # tiny
        assert chart.references == [] and "book" not in chart.legend()
        await pilot.press("up", "space")  # and default
        assert [curve.name for curve in chart.references] == ["book ch. 5", "OpenAI GPT-2 124M"]
        assert "[gray]┄┄[/] book ch. 5" in chart.legend()
        await pilot.press("v")  # not a loss view: no loss references
        assert chart.drawn_references() == []


async def test_enter_opens_a_finished_run_by_its_checkpoint_and_a_live_one_by_its_files(tmp_path):
    make_run(tmp_path / "done")
    (tmp_path / "done" / "last.pt").write_bytes(b"")
    make_run(tmp_path / "live", state="running", started=1_790_000_000)
    state = RunsViewState()
    app = RunsApp([tmp_path], state)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("space", "enter")
    assert app.return_value == OpenRun(tmp_path / "live", None)

    app = RunsApp([tmp_path], state)  # back: the same view
    async with app.run_test(size=(100, 30)) as pilot:
        assert [s.name for s in app.query_one(OverlayChart).series] == ["live"]
        await pilot.press("down", "enter")
    assert app.return_value == OpenRun(tmp_path / "done", tmp_path / "done" / "last.pt")


def test_the_cli_opens_the_run_and_comes_back_to_the_runs_view(tmp_path, monkeypatch):
    make_run(tmp_path / "done")
    (tmp_path / "done" / "last.pt").write_bytes(b"not a checkpoint")
    exits = [OpenRun(tmp_path / "done", tmp_path / "done" / "last.pt"), None]
    views, opened = [], []

    def run(self):
        views.append(self.state)
        return exits.pop(0)

    monkeypatch.setattr(RunsApp, "run", run)
    monkeypatch.setattr(cli, "tui_main", lambda source, chat_dtype=None: opened.append(source) or 0)
    assert cli.main(["runs", str(tmp_path)]) == 0
    assert len(views) == 2 and views[0] is views[1]  # the view came back with its state
    (source,) = opened  # an unreadable checkpoint: its run's files are followed instead
    assert isinstance(source, FollowedRun) and source.follower.dir == tmp_path / "done"


async def test_the_table_refreshes_while_runs_go_on_and_a_sweeps_view_charts_each_run_as_it_starts(tmp_path):
    make_run(tmp_path / "first")
    app = RunsApp([tmp_path], RunsViewState(select_new=True))
    async with app.run_test(size=(100, 30)) as pilot:
        make_run(tmp_path / "second", state="running", started=1_790_000_000)
        # The files are written one after another: the row may show the run "waiting" for a moment first.
        await wait_for(pilot, lambda: "running (pid" in screen_text(app), "the new run in the table")
        assert app.query_one(RunsTable).row_count == 2
        assert [s.name for s in app.query_one(OverlayChart).series] == ["first", "second"]


def test_the_runs_view_at_80_by_24(snap_compare, three_runs):
    assert snap_compare(RunsApp([three_runs]), press=["space", "down", "space"], terminal_size=(80, 24))


def test_a_run_named_like_markup_is_named_as_typed_in_the_legend():
    chart = OverlayChart()
    chart.series = [Series(name="[bold]lr[/]", color="cyan", evaluations=())]
    assert "[cyan]━━[/] \\[bold]lr\\[/]" in chart.legend()
