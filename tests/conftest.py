import pytest

from core.config import TrainConfig, preset
from core.data import read_corpus


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


@pytest.fixture
def quick_train_cfg(small_corpus, tmp_path):
    return TrainConfig(
        epochs=1,
        eval_freq=5,
        eval_batches=2,
        lr=1e-3,
        device="cpu",
        data=str(small_corpus),
        out_dir=str(tmp_path / "out"),
        sample_tokens=10,
    )
