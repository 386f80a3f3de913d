"""Instruction data, as chapter 7 of *Build a Large Language Model (From Scratch)* prepares it: records of
{instruction, input, output}, written out in a prompt template, split in file order, and batched with padding
that the loss ignores.

    records ──Template.example──▶ text ──encode──▶ Example(ids, prompt_length) ──collate──▶ (inputs, targets)
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from core.documents import CorpusError
from core.generate import END_OF_TEXT_ID
from core.tokenizer import ASSETS, END_OF_TEXT, encode, token_pieces

DEFAULT_INSTRUCTIONS = ASSETS / "instruction-data.json"  # the book's 1,100 records (see assets/NOTICE)
IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index: targets the loss leaves out
PAD_ID = END_OF_TEXT_ID  # the book pads with <|endoftext|> (50256)
TRAIN_RATIO, TEST_RATIO = 0.85, 0.10  # the book's split, in file order; validation is what is left (5%)
FIELDS = ("instruction", "input", "output")
TYPED_INPUT = re.compile(r"\s*\n---\n\s*|\s+---\s+")  # parts a typed instruction from its input (split_typed)


@dataclass(frozen=True)
class Template:
    """How a record is written out for the model: `prompt` (everything the model is given) then the output."""

    name: str
    preamble: str  # before the instruction
    input_header: str  # between the instruction and a non-empty input
    response_header: str  # between the instruction (and input) and the output

    def prompt(self, instruction: str, input: str = "") -> str:
        """What the model is given, up to where its response begins."""
        return self.preamble + instruction + (self.input_header + input if input else "") + self.response_header

    def example(self, record: dict) -> str:
        """The whole training text of a record: its prompt, then its output."""
        return self.prompt(record["instruction"], record.get("input", "")) + record["output"]

    def parts(self, record: dict) -> list[tuple[str, str]]:
        """The record's text cut into named parts (for showing what the loss sees): (name, text) in order."""
        parts = [("template", self.preamble), ("instruction", record["instruction"])]
        if record.get("input"):
            parts += [("template", self.input_header), ("input", record["input"])]
        return parts + [("template", self.response_header), ("output", record["output"])]


TEMPLATES = {
    # The book's Alpaca-style prompt (section 7.2).
    "alpaca": Template(
        "alpaca",
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\n",
        "\n\n### Input:\n",
        "\n\n### Response:\n",
    ),
    # The Phi-3 style of the book's exercise 7.1.
    "phi3": Template("phi3", "<|user|>\n", "\n", "\n<|assistant|>\n"),
}


def template_of(task: str, template: str) -> Template | None:
    """The template a run's model answers in: that of an instruct run (its --template), else None."""
    return TEMPLATES[template] if task == "instruct" else None


def split_typed(text: str) -> tuple[str, str]:
    """(instruction, input) of what a person types for an instruct model: an input, if any, follows the
    instruction after `---` (on a line of its own, or between spaces in a one-line prompt box)."""
    instruction, *input = TYPED_INPUT.split(text, maxsplit=1)
    return instruction.strip(), "".join(input).strip()


def read_records(path: str | Path | None) -> list[dict]:
    """The instruction records of a .json file (a list of objects) or a .jsonl file (one object a line); the
    bundled ones when `path` is None. A CorpusError naming the file and the record that is not usable."""
    path = Path(path) if path is not None else DEFAULT_INSTRUCTIONS
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: is not UTF-8 text (invalid byte at offset {e.start})") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror or e})") from None
    if path.suffix.lower() == ".jsonl":
        records = [_parsed(line, path, f"line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        where = [f"line {n}" for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        records = _parsed(text, path, "the file")
        if not isinstance(records, list):
            raise CorpusError(f"{path}: holds a JSON {type(records).__name__}, not a list of instruction records")
        where = [f"record {n}" for n in range(1, len(records) + 1)]
    for record, place in zip(records, where, strict=True):
        _check_record(record, f"{path}: {place}")
    if not records:
        raise CorpusError(f"{path}: holds no instruction records")
    return records


def _parsed(text: str, path: Path, place: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}: {place} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def _check_record(record, where: str) -> None:
    if not isinstance(record, dict):
        raise CorpusError(f"{where} is a JSON {type(record).__name__}, not an object with instruction and output")
    for name in FIELDS:
        if name not in record:
            if name != "input":  # may be left out: no input
                raise CorpusError(f"{where} has no {name!r} field")
        elif not isinstance(record[name], str):
            raise CorpusError(f"{where} has a {name!r} that is {type(record[name]).__name__}, not a text")


@dataclass(frozen=True)
class Split:
    train: list[dict]
    test: list[dict]
    val: list[dict]


def split_records(records: list[dict], source: str) -> Split:
    """The book's split, in file order: the first 85% train, the next 10% test, the last 5% validation."""
    train_end = int(len(records) * TRAIN_RATIO)
    test_end = train_end + int(len(records) * TEST_RATIO)
    split = Split(records[:train_end], records[train_end:test_end], records[test_end:])
    parts = (("training", split.train, "85%"), ("test", split.test, "10%"), ("validation", split.val, "5%"))
    for name, part, share in parts:
        if not part:
            raise CorpusError(
                f"{source}: its {len(records)} records leave the {name} split ({share}) empty; give at least 10"
            )
    return split


@dataclass(frozen=True)
class Example:
    ids: list[int]  # the record's text in the template, tokenized, without the <|endoftext|> that batching adds
    prompt_length: int  # how many of them are the prompt (template, instruction and input)


class InstructionDataset(Dataset):
    """The records of one split, each tokenized once."""

    def __init__(self, records: list[dict], template: Template):
        self.records, self.template = records, template
        self.examples = [
            Example(encode(template.example(r)), len(encode(template.prompt(r["instruction"], r.get("input", "")))))
            for r in records
        ]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def longer_than(self, context_length: int) -> int:
        """How many examples do not fit the context with their <|endoftext|>: batching cuts them."""
        return sum(len(e.ids) > context_length for e in self.examples)


def as_the_loss_sees_it(
    record: dict, template: Template, context_length: int, mask_prompt: bool = False
) -> list[tuple[str, str, bool]]:
    """One example as the loss sees it: each target token's text, the template part it comes from (template,
    instruction, input, output; "end" for the <|endoftext|>), and whether the loss trains on it (not -100)."""
    ids = encode(template.example(record))
    prompt_length = len(encode(template.prompt(record["instruction"], record.get("input", ""))))
    targets = collate([Example(ids, prompt_length)], context_length, mask_prompt)[1][0].tolist()
    pieces = token_pieces(ids) + [END_OF_TEXT]
    part_names = [name for name, text in template.parts(record) for _ in text]  # the part of each character
    view, offset = [], len(pieces[0])
    for piece, target in zip(pieces[1:], targets, strict=False):  # target j is token j + 1
        name = part_names[offset] if offset < len(part_names) else "end"
        view.append((piece, name, target != IGNORE_INDEX))
        offset += len(piece)
    return view


def collate(batch: list[Example], context_length: int, mask_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's batches: each example plus one <|endoftext|>, padded with <|endoftext|> to the longest in the
    batch, inputs and targets shifted by one, every padding target after the first set to -100 (ignored); then
    cut to `context_length`. With `mask_prompt`, the targets that are prompt tokens are ignored too (the book's
    exercise 7.2), so only the response and its <|endoftext|> are learned. Returns (inputs, targets), (B, T)."""
    longest = max(len(e.ids) for e in batch) + 1  # with the <|endoftext|>
    inputs, targets = [], []
    for e in batch:
        padded = torch.tensor(e.ids + [PAD_ID] * (longest - len(e.ids)))  # (longest,)
        x, y = padded[:-1], padded[1:].clone()  # target j is token j + 1
        y[len(e.ids) :] = IGNORE_INDEX  # target len - 1 is the <|endoftext|> to learn; after it, only padding
        if mask_prompt:
            y[: e.prompt_length - 1] = IGNORE_INDEX  # the targets that are the prompt's tokens (all but its first)
        inputs.append(x[:context_length])
        targets.append(y[:context_length])
    return torch.stack(inputs), torch.stack(targets)
