from dataclasses import replace

import pytest

from core.config import TrainConfig, preset
from core.data import read_corpus

QUICK = TrainConfig(eval_freq=5, eval_batches=2, lr=1e-3, device="cpu", sample_tokens=10)


@pytest.fixture(scope="session")
def story() -> str:
    return read_corpus(None)  # the bundled the-verdict.txt


@pytest.fixture
def tiny_cfg():
    return preset("tiny", context_length=32)


@pytest.fixture
def small_corpus(tmp_path, story):
    """About 1,400 tokens of the story: 20 training steps per epoch at batch 2, context 32."""
    path = tmp_path / "story.txt"
    path.write_text(story[:6000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def short_corpus(tmp_path_factory, story):
    """About 350 tokens of the story: 10 training steps per epoch at batch 2, context 16 (helpers.TINY16)."""
    path = tmp_path_factory.mktemp("corpus") / "short.txt"
    path.write_text(story[:1500], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def short_train_cfg(short_corpus, tmp_path_factory):
    """20 steps with dropout on (the tiny preset's drop_rate is 0.1), evaluating and saving every 5."""
    out_dir = tmp_path_factory.mktemp("out") / "run"
    return replace(QUICK, epochs=2, data=str(short_corpus), out_dir=str(out_dir), save_every=5)


@pytest.fixture
def quick_train_cfg(small_corpus, tmp_path):
    return replace(QUICK, epochs=1, data=str(small_corpus), out_dir=str(tmp_path / "out"))
