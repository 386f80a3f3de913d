import subprocess
import sys


def test_core_does_not_import_the_ui():
    """The import-linter contract in pyproject.toml: "core is usable without the TUI"."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "core is usable without the TUI KEPT" in result.stdout


def test_importing_core_loads_no_ui_package():
    code = (
        "import sys, core, core.run, core.train\n"
        "print(sorted(m for m in ('textual', 'plotext', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_and_bad_flags_answer_before_torch_loads():
    """`minigpt-tui --help` parses its arguments first: torch and Textual (seconds to import on a busy machine)
    load only for a command that runs."""
    code = (
        "import sys\n"
        "from minigpt_tui import cli\n"
        "helps = [[command, '--help'] for command in ('generate', 'inspect', 'serve', 'export', 'train')]\n"
        "for argv in (['--help'], *helps, ['--epochs', 'x'], ['generate', '--top-p', '2', 'a']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--top-p: invalid sampling_setting" not in result.stderr and "top-p must be" in result.stderr
