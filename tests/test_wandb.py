"""--wandb PROJECT: a run logged to Weights & Biases in offline mode, its files read back; without the package or
a login, one line says so and the run trains all the same."""

import json
import struct
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import of, train

from core.events import Finished, Notice

wandb_internal = pytest.importorskip("wandb.proto.wandb_internal_pb2")


def wandb_records(path: Path):
    """The records of an offline run's .wandb file: W&B's log format, records of protobuf Records in 32 KiB blocks
    (a 7-byte file header, then each chunk as crc32, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal.Record()
            record.ParseFromString(pending)
            yield record


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The file's records once W&B's own process has written them all, up to the run's exit record (it writes on
    after `finish()` returns)."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, "W&B never wrote the run's exit record"
        time.sleep(0.1)


def test_an_offline_run_logs_scalars_samples_config_and_checkpoint(short_train_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    run, events = train(replace(short_train_cfg, out_dir=str(out), wandb="minigpt-test", epochs=1, save_every=None))

    assert not of(events, Notice) and of(events, Finished)[0].completed
    (run_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    records = finished_records(run_file)
    started = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert started.project == "minigpt-test" and started.display_name == "run"
    assert config["model"]["context_length"] == 16 and config["train"]["lr"] == short_train_cfg.lr
    history = [
        {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    losses = [(h["_step"], round(h["loss/val"], 4)) for h in history if "loss/val" in h]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses == [(m["global_step"], round(m["val_loss"], 4)) for m in metrics]
    summary = {
        "/".join(item.nested_key) or item.key: json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "summary"
        for item in r.summary.update
    }
    assert summary["checkpoint"] == str(out / "last.pt")
    (table,) = sorted(out.glob("wandb/offline-run-*/files/media/table/samples_*.table.json"))[-1:]
    rows = json.loads(table.read_text())
    samples = (out / "samples.txt").read_text()
    assert rows["columns"] == ["epoch", "global_step", "text"]
    assert rows["data"][-1][:2] == [1, 10] and rows["data"][-1][2] in samples


def test_without_the_package_one_line_says_so_and_training_goes_on(short_train_cfg, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    run, events = train(replace(short_train_cfg, out_dir=str(tmp_path / "run"), wandb="p", epochs=1, save_every=None))

    (notice,) = of(events, Notice)
    assert "pip install 'minigpt-tui[wandb]'" in notice.message and "\n" not in notice.message
    assert of(events, Finished)[0].completed


def test_without_a_login_one_line_says_so_and_training_goes_on(short_train_cfg, tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: never logged in
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    run, events = train(replace(short_train_cfg, out_dir=str(tmp_path / "run"), wandb="p", epochs=1, save_every=None))

    (notice,) = of(events, Notice)
    assert "not logged in" in notice.message and "WANDB_MODE=offline" in notice.message
    assert of(events, Finished)[0].completed
    assert not (tmp_path / "run" / "wandb").exists()
