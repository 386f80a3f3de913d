"""The runs table (`minigpt-tui runs`) without the app: finding runs, their rows, sorting, filtering, the
configuration diff, the reference curves that match a run, and --csv / --json."""

import csv
import io
import json
from dataclasses import asdict

from runs_helpers import TINY, evaluation, make_run

from core.config import GPTConfig, TrainConfig
from core.reference_curves import matching_curves
from core.runs import RunsTable, config_differences, ordered
from minigpt_tui.cli import main


def rows_by_name(table: RunsTable) -> dict:
    table.refresh()
    return {row.name: row for row in table.rows()}


def test_the_table_lists_live_finished_failed_and_unreadable_runs(tmp_path):
    make_run(tmp_path / "done", lr=1e-3)
    make_run(tmp_path / "sweep" / "lr-4e-4", state="running", losses=((10.0, 10.2),))
    make_run(tmp_path / "crashed", state="failed")
    make_run(tmp_path / "garbled")
    (tmp_path / "garbled" / "status.json").write_text("{not json")
    (tmp_path / "not-a-file").mkdir()
    (tmp_path / "not-a-file" / "metrics.jsonl").mkdir()  # reading it fails: the run is listed, with why
    (tmp_path / "not-a-run").mkdir()

    rows = rows_by_name(RunsTable([tmp_path]))

    assert set(rows) == {"done", "sweep/lr-4e-4", "crashed", "garbled", "not-a-file"}
    done = rows["done"]
    assert (done.state, done.pid, done.task, done.shape, done.params) == (
        "finished",
        None,
        "pretrain",
        "tiny ctx16",
        6_533_632,
    )
    assert (done.lr, done.lr_schedule, done.batch, done.data) == (1e-3, "constant", "2", "the-verdict.txt")
    assert (done.steps, done.total_steps, done.tokens) == (15, 20, 480)
    assert (done.best_val_loss, done.best_val_step) == (9.5, 10)  # the lowest val loss, not the last
    live = rows["sweep/lr-4e-4"]
    assert live.state == "running" and live.cells()["state"] == f"running (pid {live.pid})"
    assert rows["crashed"].state == "failed" and "out of GPU memory" in rows["crashed"].note
    assert (
        rows["garbled"].state == "unreadable" and "status.json: not a status this version reads" in rows["garbled"].note
    )
    assert rows["not-a-file"].state == "unreadable" and "metrics.jsonl" in rows["not-a-file"].note


def test_a_live_run_whose_process_is_gone_is_failed(tmp_path):
    run = make_run(tmp_path / "killed", state="running")
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(status | {"pid": 2**22 + 12345}))  # beyond any pid in use

    row = rows_by_name(RunsTable([tmp_path]))["killed"]

    assert row.state == "failed" and "has ended without recording how" in row.note


def test_sorting_by_any_column_puts_empty_cells_last_and_filtering_keeps_rows_with_every_word(tmp_path):
    make_run(tmp_path / "a", losses=((10.0, 7.0),), lr=1e-4)
    make_run(tmp_path / "b", losses=((10.0, 6.0),), lr=1e-3, lr_schedule="cosine")
    make_run(tmp_path / "c", losses=(), lr=4e-4)
    table = RunsTable([tmp_path])
    table.refresh()
    rows = table.rows()

    assert [r.name for r in ordered(rows, "best_val")] == ["b", "a", "c"]
    assert [r.name for r in ordered(rows, "best_val", descending=True)] == ["a", "b", "c"]
    assert [r.name for r in ordered(rows, "lr", descending=True)] == ["b", "c", "a"]
    assert [r.name for r in ordered(rows, "name", text="COSINE")] == ["b"]
    assert [r.name for r in ordered(rows, "name", text="tiny constant")] == ["a", "c"]


def test_the_table_follows_runs_as_they_go(tmp_path):
    run = make_run(tmp_path / "a", state="running", losses=((10.0, 10.0),))
    table = RunsTable([tmp_path])
    assert rows_by_name(table)["a"].best_val_loss == 10.0

    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(evaluation(10, 9.0, 9.25)) + "\n")
    make_run(tmp_path / "b")

    assert table.refresh()
    rows = {row.name: row for row in table.rows()}
    assert set(rows) == {"a", "b"} and rows["a"].best_val_loss == 9.25
    assert [e.global_step for e in table.records[run].evaluations] == [5, 10]
    assert not table.refresh()  # nothing new


def test_the_configuration_diff_shows_only_what_differs_by_default(tmp_path):
    base = {"model": asdict(TINY), "train": asdict(TrainConfig(out_dir="runs/a"))}
    other = {"model": asdict(TINY), "train": asdict(TrainConfig(lr=1e-3, out_dir="runs/b"))}

    assert config_differences({"a": base, "b": other}) == [("train.lr", ["0.0004", "0.001"])]
    everything = dict(config_differences({"a": base, "b": other}, only_different=False))
    assert everything["model.emb_dim"] == ["64", "64"] and everything["train.out_dir"] == ["runs/a", "runs/b"]


GPT2 = GPTConfig()  # the default preset, gpt2-124m


def config(model=GPT2, **train) -> dict:
    return {"model": asdict(model), "train": asdict(TrainConfig(**train))}


def names(config: dict) -> list[str]:
    return [curve.name for curve in matching_curves(config)]


def test_reference_curves_are_shown_only_for_the_configurations_they_were_measured_with():
    assert names(config()) == ["book ch. 5", "OpenAI GPT-2 124M"]  # the default run is the book's
    assert names(config(epochs=2, data="elsewhere/the-verdict.txt")) == ["book ch. 5", "OpenAI GPT-2 124M"]
    assert names(config(lr=1e-3)) == ["OpenAI GPT-2 124M"]  # another run of that model on that split
    assert names(config(data="my-corpus.txt")) == []
    assert names(config(model=TINY)) == []


def test_the_book_curve_is_its_published_log():
    book = matching_curves(config())[0]
    first, last = book.evaluations[0], book.evaluations[-1]
    assert (first.global_step, first.train_loss, first.val_loss) == (1, 9.781, 9.933)
    assert (last.global_step, last.tokens_seen, last.train_loss, last.val_loss) == (86, 86 * 512, 0.391, 6.452)
    assert "chapter 5" in book.source


def test_csv_and_json_print_the_table_for_scripts(tmp_path, capsys):
    make_run(tmp_path / "a", lr=1e-3)
    make_run(tmp_path / "b", state="failed")

    assert main(["runs", str(tmp_path), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["name"], r["state"], r["lr"], r["best_val_loss"]) for r in rows] == [
        ("a", "finished", "0.001", "9.5"),
        ("b", "failed", "0.0004", "9.5"),
    ]

    assert main(["runs", str(tmp_path), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["steps"], r["best_val_step"], r["pid"]) for r in runs] == [
        ("a", 15, 10, None),
        ("b", 15, 10, None),
    ]


def test_runs_of_a_directory_that_is_not_there_is_a_usage_error(tmp_path, capsys):
    try:
        main(["runs", str(tmp_path / "nowhere"), "--csv"])
    except SystemExit as e:
        assert e.code == 2
    assert "not a directory" in capsys.readouterr().err
