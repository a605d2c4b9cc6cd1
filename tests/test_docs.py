"""The README stays true to the code it documents."""

from __future__ import annotations

from pathlib import Path

from flowsight.cli import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_setting_as_the_code_defines_it() -> None:
    assert settings_table() in README.read_text()


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "sh scripts/bootstrap.sh && make test" in ci
    assert "sh scripts/bootstrap.sh && make test" in README.read_text()
