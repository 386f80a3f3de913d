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
