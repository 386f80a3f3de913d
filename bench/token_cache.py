"""Large corpora: tokenizing throughput and the memory training takes, against the corpus's size on disk.

Generates a corpus of about --mb MB (default 200) in a temporary directory (random words of the bundled story
in paragraphs, in 100 files in subdirectories), then measures:
  - plain `encode` of each file on one thread (what the small-corpus path does), in MB/s;
  - the token cache's tokenize_files (pieces, tiktoken's batch encoding on one thread per CPU, uint16 file);
  - finding the tokens in the cache again (hashing the corpus), what a restart costs;
  - peak RSS of the tokenizing process, and of training the tiny preset for a few steps from the cache,
    next to the same training on the bundled story (the memory the corpus adds).
Prints a table and writes bench/results/token_cache.json. (Not bench/tokenize.py: that name would shadow
Python's own tokenize module for everything the script imports.)

    python bench/token_cache.py             # about 3 minutes on 2 cores
    python bench/token_cache.py --mb 50
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.data import DEFAULT_CORPUS, corpus_files, read_corpus
from core.token_cache import cache_path, load_tokens, usable_cpus
from core.tokenizer import END_OF_TEXT, gpt2_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "token_cache.json"
FILES = 100


def generate_corpus(root: Path, megabytes: int) -> None:
    words = read_corpus(None).split()
    rng = random.Random(0)
    for i in range(FILES):
        path = root / f"part{i // 10}" / f"doc{i:03}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        paragraphs, size = [], 0
        while size < megabytes * 1_000_000 // FILES:
            paragraph = " ".join(rng.choices(words, k=rng.randint(20, 200)))
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        path.write_text("\n\n".join(paragraphs), encoding="utf-8")


def peak_rss_mb(argv: list[str]) -> tuple[float, float, float, str]:
    """Run a Python child process; (its peak resident memory in MB, the peak of its anonymous part in MB, its wall
    time in s, its stdout). Resident memory also counts the pages of a memory-mapped file the process has read,
    which the kernel can drop at any time; the anonymous part is the process's own memory (sampled every 50 ms)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
    anon_kb = 0
    while not (waited := os.wait4(proc.pid, os.WNOHANG))[0]:
        anon_kb = max(anon_kb, _rss_anon_kb(proc.pid))
        time.sleep(0.05)
    _, status, usage = waited
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}")
    return usage.ru_maxrss / 1024, anon_kb / 1024, time.perf_counter() - started, out  # ru_maxrss: KiB on Linux


def _rss_anon_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it has just ended
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:")), 0)


TOKENIZE = """
import sys, time
from pathlib import Path
from core.token_cache import tokenize_files
from core.data import corpus_files
started = time.perf_counter()
tokens = tokenize_files(corpus_files(sys.argv[1]), Path(sys.argv[2]))
print(tokens, time.perf_counter() - started)
"""


def train_argv(data: str, cache: str, out: str, steps: int) -> list[str]:
    flags = ["--preset", "tiny", "--device", "cpu", "--max-steps", str(steps), "--eval-freq", "10"]
    return ["-m", "core.train", *flags, "--eval-batches", "2", "--data", data, "--token-cache", cache, "--out", out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size to generate (default: 200)")
    parser.add_argument("--steps", type=int, default=20, help="training steps for the memory figure")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, float] = {"cpus": usable_cpus()}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus, cache = tmp / "corpus", tmp / "cache"
        generate_corpus(corpus, args.mb)
        files = corpus_files(corpus)
        disk_mb = sum(f.stat().st_size for f in files) / 1e6
        results["corpus_mb"] = disk_mb

        tokenizer, started, plain_tokens = gpt2_tokenizer(), time.perf_counter(), 0
        for f in files:
            plain_tokens += len(tokenizer.encode(f.read_text(encoding="utf-8"), allowed_special={END_OF_TEXT}))
        results["plain_encode_mb_s"] = disk_mb / (time.perf_counter() - started)

        bin_path = cache / "tokens.bin"
        rss, _, _, out = peak_rss_mb(["-c", TOKENIZE, str(corpus), str(bin_path)])
        tokens, seconds = out.split()
        assert int(tokens) == plain_tokens + len(files) - 1, "the cache holds the plain tokens and the separators"
        results |= {"cache_mb_s": disk_mb / float(seconds), "tokenize_peak_rss_mb": rss, "tokens": int(tokens)}
        results["cache_file_mb"] = bin_path.stat().st_size / 1e6

        started = time.perf_counter()
        real_path = cache_path(files, corpus, cache)
        results["cache_lookup_s"] = time.perf_counter() - started
        bin_path.rename(real_path)
        assert len(load_tokens(real_path)) == int(tokens)

        rss, anon, seconds, _ = peak_rss_mb(train_argv(str(corpus), str(cache), str(tmp / "run"), args.steps))
        results |= {"train_peak_rss_mb": rss, "train_peak_anon_mb": anon, "train_s": seconds}
        rss, anon, _, _ = peak_rss_mb(train_argv(str(DEFAULT_CORPUS), str(cache), str(tmp / "story"), args.steps))
        results |= {"train_story_peak_rss_mb": rss, "train_story_peak_anon_mb": anon}

    results["load_average"] = [load_before, os.getloadavg()[0]]
    rows = [
        ("corpus on disk", f"{results['corpus_mb']:.0f} MB in {FILES} files, {results['tokens']:,} tokens"),
        ("plain encode, 1 thread", f"{results['plain_encode_mb_s']:.1f} MB/s"),
        (f"token cache, {results['cpus']} threads", f"{results['cache_mb_s']:.1f} MB/s"),
        ("token cache file", f"{results['cache_file_mb']:.0f} MB (uint16)"),
        ("finding it again (hash)", f"{results['cache_lookup_s']:.2f} s"),
        ("peak RSS, tokenizing", f"{results['tokenize_peak_rss_mb']:.0f} MB"),
        (
            f"peak RSS, training {args.steps} steps",
            f"{results['train_peak_rss_mb']:.0f} MB from the cache, of which its own (anonymous) "
            f"{results['train_peak_anon_mb']:.0f} MB: the rest is pages of the token file",
        ),
        (
            "  same, on the 20 KB story",
            f"{results['train_story_peak_rss_mb']:.0f} MB, of which its own "
            f"{results['train_story_peak_anon_mb']:.0f} MB",
        ),
    ]
    for name, value in rows:
        print(f"{name:<32} {value}")
    # Other work on the machine skews the figures: the load average says how busy it was.
    print(f"load average (1 min) before: {load_before:.2f}, after: {results['load_average'][1]:.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
