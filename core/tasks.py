"""What a run trains the model to do (`--task`): a task builds the data loaders, says what identifies its data,
writes the samples that show progress, and leaves what the run ends with. The trainer's loop is the same for all.

- `PretrainTask` (`--task pretrain`, the default): continue text; windows of a corpus (core/data.py), and the
  sample prompt's continuation.
- `InstructTask` (`--task instruct`): follow instructions (core/instruct.py); the sample is the model's response
  to a few validation instructions beside their expected outputs, and the end writes responses.json.
"""

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from core.config import GPTConfig, TrainConfig
from core.data import TokenWindows, fingerprint, sequential_loader
from core.documents import CorpusError
from core.fileio import atomic_write
from core.generate import END_OF_TEXT_ID, generate
from core.heldout import spread_windows
from core.instruct import (
    TEMPLATES,
    InstructionDataset,
    Template,
    as_the_loss_sees_it,
    collate,
    read_records,
    split_records,
)
from core.model import GPTModel
from core.tokenizer import encode, token_ids_to_text

Loaders = tuple[DataLoader, DataLoader]
RESPONSES = "responses.json"
RESPONSE_TOKENS = 256  # at most, as the book generates the test set's responses
SAMPLED_INSTRUCTIONS = 3  # the first validation records, answered in each sample


class Task(Protocol):
    name: str

    def data_loaders(self) -> Loaders:
        """(train loader, val loader) for this process; a CorpusError if the data cannot be trained on."""
        ...

    def train_eval_loader(self, train_loader: DataLoader, batch_size: int, rank: int, world_size: int) -> DataLoader:
        """The training data in order, for measuring the train loss on the same batches each time."""
        ...

    def val_eval_loader(
        self, val_loader: DataLoader, windows: int, batch_size: int, seed: int, rank: int, world_size: int
    ) -> DataLoader:
        """The held-out data an evaluation measures, the same each time: `windows` examples in all, or fewer."""
        ...

    def fingerprint(self, train_loader: DataLoader, val_loader: DataLoader) -> str:
        """Identifies the data, so that a resumed run cannot silently switch to other data."""
        ...

    def sample(self, model: GPTModel) -> str:
        """What the model makes of the task now (the model is in eval mode)."""
        ...

    def notices(self) -> list[str]:
        """Things about the data a person should know (one line each)."""
        ...

    def loss_example(self) -> list[tuple[str, str, bool]] | None:
        """One training example as the loss sees it (core.instruct.as_the_loss_sees_it); None where the loss
        trains on every token."""
        ...

    def finish(self, model: GPTModel, out_dir: Path, stopping: Callable[[], bool]) -> dict[str, str]:
        """The task's own files at the end of a completed run (name -> path)."""
        ...


class PretrainTask:
    """Next-token prediction on a corpus; the loaders come from `corpus_loaders` (the run's, which reads or
    tokenizes the corpus)."""

    name = "pretrain"

    def __init__(self, cfg: TrainConfig | None = None, corpus_loaders: Callable[[], Loaders] | None = None):
        self.cfg = cfg or TrainConfig()
        self.corpus_loaders = corpus_loaders

    def data_loaders(self) -> Loaders:
        assert self.corpus_loaders is not None
        return self.corpus_loaders()

    def train_eval_loader(self, train_loader: DataLoader, batch_size: int, rank: int, world_size: int) -> DataLoader:
        windows = cast(TokenWindows, train_loader.dataset).non_overlapping()
        return sequential_loader(windows, batch_size, rank, world_size)

    def val_eval_loader(
        self, val_loader: DataLoader, windows: int, batch_size: int, seed: int, rank: int, world_size: int
    ) -> DataLoader:
        """Windows spread across the held-out text (core/heldout.py), placed by the seed."""
        held_out = cast(TokenWindows, val_loader.dataset)
        return sequential_loader(spread_windows(held_out, windows, seed), batch_size, rank, world_size)

    def fingerprint(self, train_loader: DataLoader, val_loader: DataLoader) -> str:
        return fingerprint(cast(TokenWindows, train_loader.dataset), cast(TokenWindows, val_loader.dataset))

    def sample(self, model: GPTModel) -> str:
        """The prompt and its greedy continuation."""
        # The KV-cached `generate` picks greedily the same tokens as the seed notebook's generate_text_simple,
        # several times faster: 50 tokens of gpt2-124m on 2 busy CPU cores took 7.8 s instead of 45 s.
        new_ids = generate(model, encode(self.cfg.sample_prompt), self.cfg.sample_tokens, stop_at_eot=False)
        return self.cfg.sample_prompt + token_ids_to_text(list(new_ids))

    def notices(self) -> list[str]:
        return []

    def loss_example(self) -> list[tuple[str, str, bool]] | None:
        return None

    def finish(self, model: GPTModel, out_dir: Path, stopping: Callable[[], bool]) -> dict[str, str]:
        return {}


class InstructTask:
    """Instruction fine-tuning on records of {instruction, input, output}, as the book's chapter 7 does it."""

    name = "instruct"

    def __init__(self, cfg: TrainConfig, model_cfg: GPTConfig, rank: int = 0, world_size: int = 1):
        self.cfg, self.context_length = cfg, model_cfg.context_length
        self.rank, self.world_size = rank, world_size
        self.source = str(cfg.data or "the bundled instruction-data.json")
        self.template: Template = TEMPLATES[cfg.template]
        self.split = split_records(read_records(cfg.data), self.source)
        self.train_set = InstructionDataset(self.split.train, self.template)
        self.val_set = InstructionDataset(self.split.val, self.template)
        self.collate = functools.partial(collate, context_length=self.context_length, mask_prompt=cfg.mask_prompt)

    def data_loaders(self) -> Loaders:
        cfg = self.cfg
        per_step = cfg.batch_size * cfg.grad_accum * self.world_size
        if len(self.train_set) < per_step:
            raise CorpusError(
                f"{self.source}: its training split has {len(self.train_set)} records, too few for a step of "
                f"{per_step}; use a smaller --batch-size, or more records"
            )
        # Shuffled per epoch from (seed, epoch) alone, as pretraining's windows are: resuming stays exact.
        sampler: DistributedSampler = DistributedSampler(
            self.train_set, self.world_size, self.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        train = DataLoader(
            self.train_set,
            batch_size=cfg.batch_size,
            sampler=sampler,
            drop_last=True,
            collate_fn=self.collate,
            generator=torch.Generator(),
        )
        return train, self._in_order(self.val_set, cfg.batch_size, self.rank, self.world_size)

    def _in_order(self, dataset: Dataset, batch_size: int, rank: int, world_size: int) -> DataLoader:
        sampler: DistributedSampler = DistributedSampler(dataset, world_size, rank, shuffle=False)
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, collate_fn=self.collate, generator=torch.Generator()
        )

    def train_eval_loader(self, train_loader: DataLoader, batch_size: int, rank: int, world_size: int) -> DataLoader:
        return self._in_order(self.train_set, batch_size, rank, world_size)

    def val_eval_loader(
        self, val_loader: DataLoader, windows: int, batch_size: int, seed: int, rank: int, world_size: int
    ) -> DataLoader:
        """The validation records in file order, as the book evaluates them."""
        return val_loader

    def fingerprint(self, train_loader: DataLoader, val_loader: DataLoader) -> str:
        digest = hashlib.sha256(f"{self.template.name} instructions:".encode())
        for dataset in (self.train_set, self.val_set):
            digest.update(json.dumps([(e.ids, e.prompt_length) for e in dataset.examples]).encode())
        return digest.hexdigest()

    def respond(self, model: GPTModel, record: dict, max_new_tokens: int) -> str:
        """The model's greedy response to a record's instruction (and input), up to <|endoftext|> and at most
        as long as the context has room for after the prompt (past it, every token costs a whole window)."""
        prompt = encode(self.template.prompt(record["instruction"], record.get("input", "")))
        room = max(self.context_length - len(prompt), 1)
        ids = [t for t in generate(model, prompt, min(max_new_tokens, room)) if t != END_OF_TEXT_ID]
        return token_ids_to_text(ids).strip()

    def sample(self, model: GPTModel) -> str:
        """The responses to the first few validation instructions, each beside its expected output."""
        entries = []
        for record in self.split.val[:SAMPLED_INSTRUCTIONS]:
            given = record["instruction"] + (f"\nInput: {record['input']}" if record.get("input") else "")
            response = self.respond(model, record, self.cfg.sample_tokens)
            entries.append(f"Instruction: {given}\nResponse: {response}\nExpected: {record['output']}")
        return "\n\n".join(entries)

    def notices(self) -> list[str]:
        cut = self.train_set.longer_than(self.context_length) + self.val_set.longer_than(self.context_length)
        if not cut:
            return []
        total = len(self.train_set) + len(self.val_set)
        return [
            f"{cut} of {total} training and validation examples are longer than the context of "
            f"{self.context_length} tokens: they are cut to it"
        ]

    def loss_example(self) -> list[tuple[str, str, bool]] | None:
        return as_the_loss_sees_it(self.split.train[0], self.template, self.context_length, self.cfg.mask_prompt)

    def finish(self, model: GPTModel, out_dir: Path, stopping: Callable[[], bool]) -> dict[str, str]:
        """responses.json: the test records, each with the model's `model_response` (as the book's
        instruction-data-with-response.json), for any judge to score."""
        answered = []
        for record in self.split.test:
            if stopping():
                return {}
            answered.append({**record, "model_response": self.respond(model, record, RESPONSE_TOKENS)})
        path = out_dir / RESPONSES
        with atomic_write(path) as f:
            f.write((json.dumps(answered, indent=4, ensure_ascii=False) + "\n").encode("utf-8"))
        return {"responses": str(path)}


def make_task(
    cfg: TrainConfig, model_cfg: GPTConfig, corpus_loaders: Callable[[], Loaders], rank: int = 0, world_size: int = 1
) -> Task:
    if cfg.task == "instruct":
        return InstructTask(cfg, model_cfg, rank, world_size)
    return PretrainTask(cfg, corpus_loaders)
