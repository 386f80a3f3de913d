"""The `minigpt-tui` command: the training app by default, and the train, generate, inspect, export, serve, runs
and sweep subcommands.

The arguments are parsed before torch or Textual loads (a few seconds on a busy machine): `--help` and bad flags
answer at once, and each command imports what it runs.
"""

import argparse
import sys
import threading
from pathlib import Path

from core.config import DTYPE_NAMES, HUB_MODELS, TrainConfig
from core.flags import add_training_args, configs_from_args, path_text, positive
from core.sampling import check_sampling
from minigpt_tui.inspect_command import add_inspect_command

CHAT_DTYPES = ["auto", *DTYPE_NAMES]


def sampling_setting(name: str, kind: type):
    """An argparse type for one of generate()'s sampling settings: a number it accepts."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            check_sampling(**{name: value})
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt-tui",
        description="Train a GPT-2-style model from scratch and watch it learn; chat with it while it trains.",
        epilog="Without a subcommand it opens the training app (in it, F1 lists the keys and i types a prompt for "
        "the chat). To continue a run in it: --resume CHECKPOINT; to chat with a checkpoint without training: "
        "--checkpoint PATH; to watch a run started elsewhere: --attach RUN_DIR.",
    )
    add_training_args(parser)
    parser.add_argument(
        "--checkpoint",
        dest="chat_checkpoint",
        metavar="PATH",
        help="open the app with this checkpoint's weights to chat with, training nothing (the loss chart and "
        "samples show its run); with --device and --out only",
    )
    parser.add_argument(
        "--attach",
        metavar="RUN_DIR",
        help="open the app on a run started elsewhere (`minigpt-tui train --out RUN_DIR`, torchrun in another "
        "session): it follows the run's files as they grow, training nothing, and the chat answers from the "
        "run's newest checkpoint; with --device (the chat's, default cpu, to leave the GPU to training) and --out "
        "(where s saves the plot, default RUN_DIR) only",
    )
    parser.add_argument(
        "--chat-dtype",
        choices=CHAT_DTYPES,
        help="the dtype of the chat's copy of the weights: auto (default) = bfloat16 on a CUDA GPU that has it "
        "(half the bytes to read per token), float32 elsewhere; float32 gives exactly the model's tokens",
    )
    # A flag may stand before its subcommand or after it (`minigpt-tui --preset tiny train`): the subcommands'
    # parsers leave out what they were not given (SUPPRESS), instead of overwriting what the main parser read.
    commands = parser.add_subparsers(dest="command", metavar="{train,generate,inspect,export,serve,runs,sweep}")
    train = commands.add_parser(
        "train", help="train without the UI, printing the log", argument_default=argparse.SUPPRESS
    )
    add_training_args(train)
    generate_cmd = commands.add_parser(
        "generate",
        help="continue a prompt with a checkpoint or GPT-2's weights",
        argument_default=argparse.SUPPRESS,
        epilog="It needs --checkpoint or --init.",
    )
    generate_cmd.add_argument("prompt", help="text to continue")
    weights = generate_cmd.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", dest="chat_checkpoint", metavar="PATH", help="e.g. results/last.pt")
    weights.add_argument(
        "--init", metavar="WEIGHTS", help=f"pretrained GPT-2 instead: {', '.join(HUB_MODELS)} or a model.safetensors"
    )
    generate_cmd.add_argument(
        "--max-new-tokens", type=positive(int), default=50, metavar="N", help="default: %(default)s"
    )
    generate_cmd.add_argument(
        "--temperature",
        type=sampling_setting("temperature", float),
        default=0.0,
        metavar="T",
        help="0 = greedy (default); higher = more random",
    )
    generate_cmd.add_argument(
        "--top-k",
        type=sampling_setting("top_k", int),
        default=None,
        metavar="K",
        help="sample only from the K most likely tokens",
    )
    generate_cmd.add_argument(
        "--top-p",
        type=sampling_setting("top_p", float),
        default=None,
        metavar="P",
        help="sample only from the most likely tokens that add up to P (0 < P <= 1)",
    )
    generate_cmd.add_argument(
        "--seed", type=sampling_setting("seed", int), help="makes sampling reproducible (0 to 2**64 - 1)"
    )
    generate_cmd.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: auto")
    generate_cmd.add_argument(
        "--chat-dtype",
        choices=CHAT_DTYPES,
        help="the weights' dtype while generating: float32 (default) gives exactly the model's greedy tokens; "
        "bfloat16 reads half the bytes per token; auto = bfloat16 on a CUDA GPU that has it, else float32",
    )
    add_inspect_command(commands)
    export = commands.add_parser(
        "export",
        help="write a checkpoint's model as a Hugging Face GPT-2 directory",
        description="Write a checkpoint's model as a Hugging Face GPT-2 directory (config.json and "
        "model.safetensors) that transformers' GPT2LMHeadModel.from_pretrained(DIR) loads, and --init DIR reads "
        "back. Its tokenizer is GPT-2's.",
    )
    export.add_argument("checkpoint", type=path_text, metavar="CHECKPOINT", help="e.g. results/best.pt")
    export.add_argument(
        "--to", type=path_text, required=True, metavar="DIR", help="the directory to write (created if need be)"
    )
    export.add_argument("--format", choices=["hf"], default="hf", help="hf: Hugging Face transformers' GPT-2")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in DIR")
    serve = commands.add_parser(
        "serve",
        help="the dashboard of a run directory in a browser",
        argument_default=argparse.SUPPRESS,  # the training flags may also stand before `serve`, as for train
        description="Serve the --attach dashboard of a run directory in a browser (needs the [web] extra): each "
        "browser tab gets its own app, following the run's files; a page load never trains. With --train, start "
        "the run too, headless (its log in RUN_DIR/train.log), with any training flags; stopping the server "
        "(Ctrl+C) stops the run after its current step and saves.",
        epilog="Only a browser with the token that serve prints in its address gets in. From another machine: "
        "ssh -L 8000:localhost:8000 THIS_BOX, then open that address there (http://localhost:8000/?token=...).",
    )
    serve.add_argument(
        "run_dir",
        nargs="?",
        default=None,
        metavar="RUN_DIR",
        help="the run's output directory (with --train: default --out's)",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; any other is reachable by whoever can reach the port)",
    )
    serve.add_argument("--port", type=port_number, default=8000, help="default: %(default)s")
    serve.add_argument(
        "--token",
        type=token_text,
        default=None,
        help="the secret a browser needs, in the URL printed (default: a new random one each start)",
    )
    serve.add_argument(
        "--max-sessions",
        type=positive(int),
        default=3,
        metavar="N",
        help="app processes at a time, one per browser tab (default: %(default)s; each holds the model)",
    )
    serve.add_argument(
        "--train", action="store_true", default=False, help="start the training run too (with the training flags)"
    )
    add_training_args(serve)
    runs = commands.add_parser(
        "runs",
        help="every run under some directories in one table, to compare",
        description="Every run directory under DIR (subdirectories included), live and finished, in one table "
        "refreshed while runs go on: space selects runs to overlay on one chart beside their settings' differences, "
        "Enter opens one (live as --attach, finished as --checkpoint), q leaves. See docs/runs.md.",
    )
    runs.add_argument("dirs", nargs="*", metavar="DIR", help="where to look (default: results)")
    table_format = runs.add_mutually_exclusive_group()
    table_format.add_argument("--csv", action="store_true", help="print the table as CSV instead, for scripts")
    table_format.add_argument("--json", action="store_true", help="print the table as JSON instead, for scripts")
    sweep = commands.add_parser(
        "sweep",
        help="train a small grid of runs one after another, and compare them",
        usage="minigpt-tui sweep [TRAINING FLAGS, some with several values] [--out DIR] [--resume]",
        description="Train every combination of the training flags given several values (e.g. --lr 1e-4 4e-4 1e-3 "
        "--batch-size 2 4), one run after another, each into its own subdirectory of --out (default: results), "
        "named by its values (lr-1e-4); the runs view follows them as they go (q stops the current run after "
        "saving, keeping the finished ones). --resume continues the sweep in --out where it stopped. Without a "
        "terminal, or under torchrun (each run uses all processes), it prints each run's log instead.",
        argument_default=argparse.SUPPRESS,
    )
    add_sweep_flags(sweep)
    return parser


def add_sweep_flags(sweep: argparse.ArgumentParser) -> None:
    """The training flags as the sweep takes them, each with one value or several, for its --help (core/sweep.py
    reads the command line itself: argparse keeps no order of flags with several values)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_training_args(probe)
    for action in probe._actions:
        if action.dest == "resume":
            sweep.add_argument("--resume", nargs="?", help="continue the sweep in --out where it stopped")
        elif action.dest == "out":
            sweep.add_argument("--out", metavar="DIR", help="the sweep's directory; each run in a subdirectory")
        elif action.nargs == 0:
            sweep.add_argument(*action.option_strings, action="store_true", help=action.help)
        else:
            sweep.add_argument(*action.option_strings, nargs="+", metavar="VALUE", help=action.help)


def runs_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    roots = [Path(d) for d in args.dirs] or [Path(TrainConfig.out_dir)]
    for root in args.dirs:
        if not Path(root).is_dir():
            parser.error(f"runs {root}: not a directory (give directories that hold runs, e.g. results)")
    if args.csv or args.json:
        from core.runs import RunsTable, as_csv, as_json, ordered

        table = RunsTable(roots)
        table.refresh()
        rows = ordered(table.rows())
        print(as_csv(rows) if args.csv else as_json(rows), end="" if args.csv else "\n")
        return 0
    return browse_runs(roots)


def browse_runs(roots: list[Path], sweep_note: str = "") -> int:
    """The runs view until it is left; a run opened from it is shown in the training app, then the view is back.
    A sweep's view (`sweep_note`: what q does to it) puts each of its runs on the chart as it starts."""
    from core.checkpoint import CheckpointError
    from core.config import preset_name
    from core.run import resolve_device
    from minigpt_tui.opened_checkpoint import OpenedCheckpoint  # Textual loads only for the app
    from minigpt_tui.runs_app import RunsApp, RunsViewState
    from minigpt_tui.sources import FollowedRun, OpenedRun

    state = RunsViewState(select_new=bool(sweep_note))
    while (opened := RunsApp(roots, state, sweep_note).run()) is not None:
        source = None
        if opened.checkpoint is not None:
            try:
                checkpoint = OpenedCheckpoint.load(opened.checkpoint, resolve_device("auto"))
                source = OpenedRun(checkpoint, preset_name=preset_name(checkpoint.model.cfg))
            except CheckpointError as e:  # its files still show its record
                print(f"minigpt-tui: note: {e}; following the run's files instead", file=sys.stderr)
        tui_main(source or FollowedRun(opened.dir))
    return 0


def sweep_main(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    sweep_parser = parser._subparsers._group_actions[0].choices["sweep"]  # type: ignore[union-attr]
    sweep_parser.parse_args(argv)  # --help, and flags that are not training flags (exit 2)
    from core.control import TrainingControl
    from core.distributed import from_environment
    from core.sweep import Sweep, SweepError, train_sweep, train_sweep_headless

    dist = from_environment()
    try:
        sweep, resume = Sweep.from_argv(argv, main_process=dist.is_main)
    except SweepError as e:
        sweep_parser.error(str(e))
    sweep.check()  # every run's flags, before the first run starts (exit 2 here)
    if dist.is_main:
        sweep.save()
    if dist.enabled or not sys.stdout.isatty():
        return train_sweep_headless(sweep, resume)
    control = TrainingControl()
    trainer = threading.Thread(target=train_sweep, args=(sweep, resume, control), name="sweep")
    trainer.start()
    try:
        return browse_runs([sweep.out_dir], sweep_note="training the sweep: q stops its current run after saving")
    finally:
        if trainer.is_alive():
            print("Stopping the sweep's current run after its step, and saving...", file=sys.stderr)
        control.stop()
        trainer.join()
        print(f"Sweep in {sweep.out_dir}; to continue it: minigpt-tui sweep --resume --out {sweep.out_dir}")


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return int(text)


def token_text(text: str) -> str:
    if not text or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError("expected a token of printable characters, without spaces")
    return text


def training_dests() -> set[str]:
    """Where the training flags store their values (`args.<dest>`)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_training_args(probe)
    return set(vars(probe.parse_args([])))


# Of the training flags, those that mean the same to generate (given before it or after); the others do not apply.
GENERATE_FLAGS = ("init", "seed", "device")


# The training flags that mean the same to inspect: whose weights, and where to run them.
INSPECT_FLAGS = ("init", "preset", "device")


def refuse_other_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, command: str, flags) -> None:
    """An argparse error for --attach or a training flag (given before the command or after) that `command` does
    not take."""
    if args.attach:
        parser.error(f"--attach follows a run started elsewhere; it does not go with the {command} command")
    not_for_command = training_dests() - set(flags)
    others = [option(name) for name, value in vars(args).items() if value is not None and name in not_for_command]
    if others:
        parser.error(f"the {command} command does not take {', '.join(others)} (see minigpt-tui {command} --help)")


def generate_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from core.checkpoint import CheckpointError, load_model, saved_train_config
    from core.generate import END_OF_TEXT_ID, generate, prepare_prompt
    from core.instruct import split_typed, template_of
    from core.precision import inference_dtype
    from core.pretrained import PretrainedError, load_pretrained
    from core.tokenizer import decode_stream, encode

    refuse_other_flags(parser, args, "generate", GENERATE_FLAGS)
    if bool(args.chat_checkpoint) == bool(args.init):
        parser.error("the generate command needs one of --checkpoint PATH or --init WEIGHTS")
    device = device_or_error(parser, args.device or "auto")
    template = None
    try:
        if args.init:
            model = load_pretrained(args.init, device=device)
        else:
            model, ckpt = load_model(args.chat_checkpoint, device)
            if (train_cfg := saved_train_config(ckpt, args.chat_checkpoint)) is not None:
                template = template_of(train_cfg.task, train_cfg.template)  # an instruct run's model
    except (CheckpointError, PretrainedError) as e:
        print(f"minigpt-tui: error: {e}", file=sys.stderr)
        return 1
    model = model.to(inference_dtype(args.chat_dtype or "float32", device))
    context_length = model.cfg.context_length
    # An instruct model is given the prompt as the instruction in its template, and shows only its response.
    prompt = template.prompt(*split_typed(args.prompt)) if template else args.prompt
    prompt_ids, cropped = prepare_prompt(encode(prompt), context_length)
    if cropped:
        print(
            f"minigpt-tui: note: the prompt is longer than the model's context; using its last {context_length} tokens",
            file=sys.stderr,
        )
    new_ids = generate(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    if template:
        new_ids = (token for token in new_ids if token != END_OF_TEXT_ID)
    else:
        print(args.prompt, end="", flush=True)
    try:
        for piece in decode_stream(new_ids):
            print(piece, end="", flush=True)  # each piece as soon as it is generated
    except KeyboardInterrupt:
        print()
        return 130
    print()
    return 0


def export_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from core.checkpoint import CheckpointError, load_model
    from core.export import EXPORTED_FILES, export_hf
    from core.lora import merge
    from core.pretrained import PretrainedError

    # --overwrite is export's own too (replace an earlier export), wherever it stands.
    others = [
        option(name) for name in sorted(training_dests() - {"overwrite"}) if getattr(args, name, None) is not None
    ]
    if others:
        parser.error(f"the export command does not take {', '.join(others)} (see minigpt-tui export --help)")
    out_dir = Path(args.to)
    if out_dir.exists() and not out_dir.is_dir():
        parser.error(f"--to {out_dir}: is not a directory")
    earlier = [name for name in EXPORTED_FILES if (out_dir / name).exists()]
    if earlier and not args.overwrite:
        parser.error(f"--to {out_dir}: already holds {', '.join(earlier)}; add --overwrite to replace them")
    try:
        model, _ = load_model(args.checkpoint, mmap=True)  # the weights only: the optimizer's state stays on disk
        model = merge(model)  # LoRA adapters folded into the weights (export_hf would do it too)
        written = export_hf(model, out_dir)
    except (CheckpointError, PretrainedError) as e:
        print(f"minigpt-tui: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"minigpt-tui: error: cannot write to {out_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"Wrote {', '.join(map(str, written))}: a Hugging Face GPT-2 of {model.num_parameters():,} parameters")
    print(
        f"Load it with transformers' GPT2LMHeadModel.from_pretrained({str(out_dir)!r}) and"
        f" AutoTokenizer.from_pretrained({str(out_dir)!r}), or train on with --init"
    )
    return 0


def serve_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from minigpt_tui import serve

    train_argv = serve_training_argv(args)
    if args.train:
        if args.run_dir and args.out and Path(args.run_dir) != Path(args.out):
            parser.error(f"serve {args.run_dir} --out {args.out}: give the run directory once")
        args.out = args.out or args.run_dir
        train_cfg = configs_from_args(parser, args)[1]  # bad flags end here, before anything starts
        run_dir, device = Path(train_cfg.out_dir), "cpu"  # the chat's device: the GPU is training's
    elif train_argv:
        parser.error(f"serve without --train only follows a run, so {train_argv[0]} does not apply; add --train")
    elif not args.run_dir:
        parser.error("serve: give the run directory to follow (RUN_DIR), or --train to start a run")
    else:
        run_dir, device = Path(args.run_dir), args.device or "cpu"
    if run_dir.exists() and not run_dir.is_dir():
        parser.error(f"serve {run_dir}: is not a directory (give the run's output directory, its --out)")
    for problem in (serve.textual_serve_missing(), serve.port_in_use(args.host, args.port)):
        if problem:
            print(f"minigpt-tui: error: {problem}", file=sys.stderr)
            return 1
    if args.train:
        training = serve.start_training([*train_argv, "--out", str(run_dir)], run_dir)
    else:
        training = None
    return serve.serve(run_dir, args.host, args.port, device, training, args.token, args.max_sessions)


def serve_training_argv(args: argparse.Namespace) -> list[str]:
    """The training flags given to `serve`, as `minigpt-tui train` takes them (--device aside when not training)."""
    flags = argparse.ArgumentParser(add_help=False)
    add_training_args(flags)
    argv: list[str] = []
    for action in flags._actions:
        value = getattr(args, action.dest, None)
        if value is None or action.dest == "out" or (action.dest == "device" and not args.train):
            continue
        name = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):  # --qkv-bias, or --no-qkv-bias
            argv.append(name if value else action.option_strings[1])
        elif action.nargs == 0:
            argv.append(name)
        else:  # a repeatable flag (--include) is given once per value
            argv += [part for each in (value if isinstance(value, list) else [value]) for part in (name, str(each))]
    return argv


def main(argv: list[str] | None = None) -> int:
    from core.headless import tolerant_output

    tolerant_output()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:  # its flags are training flags with several values, which argparse cannot take
        return sweep_main(parser, argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        from core.distributed import from_environment

        if from_environment().enabled:
            parser.error("the app is one process; under torchrun, use `minigpt-tui train`")
    if args.command == "generate":
        return generate_main(parser, args)
    if args.command == "inspect":
        from minigpt_tui.inspect_command import inspect_main

        refuse_other_flags(parser, args, "inspect", INSPECT_FLAGS)
        return inspect_main(parser, args)
    if args.command in ("export", "serve") and (args.attach or args.chat_checkpoint):
        flag = "--attach" if args.attach else "--checkpoint"
        parser.error(f"{flag} does not go with the {args.command} command")
    if args.command == "export":
        return export_main(parser, args)
    if args.command == "serve":
        return serve_main(parser, args)
    if args.command == "runs":
        refuse_other_flags(parser, args, "runs", ())
        return runs_main(parser, args)
    if args.attach:
        return attach_main(parser, args)
    if args.chat_checkpoint:
        return chat_only_main(parser, args)
    if args.command is None and not args.resume and not args.overwrite:
        ask_about_earlier_run(parser, args)
    model_cfg, train_cfg = configs_from_args(parser, args)  # bad flags end here, before any screen opens
    if args.command == "train":
        if args.chat_dtype:
            parser.error("--chat-dtype sets the precision of the app's chat; the train command has no chat")
        from core.headless import run_headless

        return run_headless(args.preset, model_cfg, train_cfg)
    from minigpt_tui.sources import LiveRun

    return tui_main(LiveRun(model_cfg, train_cfg, args.preset), args.chat_dtype)


def chat_only_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`minigpt-tui --checkpoint PATH`: the app with a checkpoint's weights, for chat only."""
    refuse_training_flags(
        parser,
        args,
        "--checkpoint",
        "opens the app for chat only",
        "to continue training from a checkpoint, use --resume",
    )
    from core.checkpoint import CheckpointError
    from core.config import preset_name
    from minigpt_tui.opened_checkpoint import OpenedCheckpoint
    from minigpt_tui.sources import OpenedRun

    device = device_or_error(parser, args.device or "auto")

    print(f"Loading {args.chat_checkpoint}...", file=sys.stderr)
    try:
        checkpoint = OpenedCheckpoint.load(args.chat_checkpoint, device)
    except CheckpointError as e:
        print(f"minigpt-tui: error: {e}", file=sys.stderr)
        return 1
    return tui_main(OpenedRun(checkpoint, args.out, preset_name(checkpoint.model.cfg)), args.chat_dtype)


def attach_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`minigpt-tui --attach RUN_DIR`: the app following a run that another process trains."""
    refuse_training_flags(
        parser, args, "--attach", "follows a run started elsewhere", "to train here, leave out --attach"
    )
    run_dir = Path(args.attach)
    if run_dir.exists() and not run_dir.is_dir():
        parser.error(f"--attach {run_dir}: is not a directory (give the run's output directory, its --out)")
    device = device_or_error(parser, args.device or "cpu")
    from minigpt_tui.sources import FollowedRun

    return tui_main(FollowedRun(run_dir, str(device), args.out), args.chat_dtype)


def ask_about_earlier_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The app started again where an earlier run left its checkpoints (plain `minigpt-tui`, twice): ask, before
    the app opens, whether to continue that run or start over in its place; sets --resume or --overwrite. Without
    a terminal to ask on, it is refused as `minigpt-tui train` refuses it."""
    from core.checkpoint import CheckpointError, load_checkpoint
    from core.run import RunOutputs

    outputs = RunOutputs(args.out or TrainConfig.out_dir)
    earlier = outputs.earlier_checkpoints()
    if not earlier:
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        parser.exit(1, f"minigpt-tui: error: {outputs.refusal(earlier)}\n")
    try:
        progress = load_checkpoint(earlier[0], mmap=True)["progress"]
        done = f"{progress['global_step']} steps, to epoch {progress['epoch'] + (progress['step'] > 0)}"
    except (CheckpointError, KeyError, TypeError):
        done = "unreadable"
    print(f"{outputs.dir}/ holds an earlier run ({earlier[0].name}: {done}).")
    choice = ask_resume_new_or_quit(
        f"[r]esume it, start a [n]ew run (its files move into {outputs.dir / outputs.REPLACED_PREFIX}DATE-TIME/), "
        "or [q]uit? [r/n/q] "
    )
    if choice == "quit":
        parser.exit(0, f"Nothing started. To open that run's weights for chat: minigpt-tui --checkpoint {earlier[0]}\n")
    if choice == "resume":
        args.resume = str(earlier[0])
    else:
        args.overwrite = True


ANSWERS = {"r": "resume", "resume": "resume", "n": "new", "new": "new", "q": "quit", "quit": "quit"}


def ask_resume_new_or_quit(prompt: str) -> str:
    """resume, new or quit, as typed in full or by its first letter; anything else (a "no" is neither "new" nor
    "quit") asks again, and the end of input or Ctrl+C quits."""
    while True:
        try:
            answer = input(prompt)
        except (EOFError, KeyboardInterrupt):
            print()
            return "quit"
        if (choice := ANSWERS.get(answer.strip().lower())) is not None:
            return choice
        print(f"{answer.strip()!r} is not one of the answers: type r (resume), n (new) or q (quit).")


def refuse_training_flags(parser: argparse.ArgumentParser, args, flag: str, what: str, instead: str) -> None:
    """--checkpoint and --attach open the app without training: an argparse error names any flag that would."""
    if args.command:
        parser.error(f"{flag} {what}; it does not go with the {args.command} command")
    given = [option(name) for name, value in vars(args).items() if value is not None and name != "command"]
    training_flags = [name for name in given if name not in (flag, "--device", "--out", "--chat-dtype")]
    if training_flags:
        verb = "does" if len(training_flags) == 1 else "do"
        parser.error(f"{flag} {what}, without training, so {', '.join(training_flags)} {verb} not apply; {instead}")


def option(dest: str) -> str:
    """The command-line flag that sets `args.<dest>`."""
    return "--checkpoint" if dest == "chat_checkpoint" else f"--{dest.replace('_', '-')}"


def device_or_error(parser: argparse.ArgumentParser, name: str):
    from core.run import resolve_device

    try:
        return resolve_device(name)
    except ValueError as e:
        parser.error(str(e))


def tui_main(source, chat_dtype: str | None = None) -> int:
    """Run the app on a `minigpt_tui.sources.RunSource`, its chat in `chat_dtype` (--chat-dtype; default auto).
    The exit status: 1 for a failed run or a crash of the app itself, 128 + the signal for a signal (as
    headless), else 0."""
    from core.events import Failed, Finished
    from minigpt_tui.app import MiniGPTApp

    source.chat_dtype = chat_dtype or "auto"
    app = MiniGPTApp(source)
    result = app.run()
    if isinstance(result, Failed):
        print(f"minigpt-tui: error: {result.message}", file=sys.stderr)
        return app.return_code or 1
    if isinstance(result, Finished):
        print(f"Saved {', '.join(result.outputs.values())}")
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
