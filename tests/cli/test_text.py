"""Terminal text: credentials masked in every message, stored names printed as text."""

from __future__ import annotations

import pytest
from rich.console import Console

from labctl.cli.text import as_text, escape_control, mask_credentials


@pytest.mark.parametrize(("message", "secret"), [
    ("unsupported database URL 'mysql://lab:s3cret@db:3306/x'", "s3cret"),
    ("cannot reach postgresql+psycopg://postgres:hunter2@127.0.0.1:5432/labctl", "hunter2"),
    ("refused --notify slack://T000/B000/XXXXTOKEN", "T000"),
    ("json://user:pw@hooks.example/path failed", "pw@"),
])
def test_credentials_are_masked(message: str, secret: str) -> None:
    masked = mask_credentials(message)
    assert secret not in masked and "***" in masked


def test_urls_without_credentials_are_unchanged() -> None:
    text = "no database at sqlite:///tmp/x.db or postgresql://127.0.0.1:5432/labctl"
    assert mask_credentials(text) == text


def test_stored_names_are_not_markup_or_escapes() -> None:
    console = Console(record=True, width=200, color_system=None)
    for name in ("[/bold]", "[red]x[/red]", "cell\x1b[31m-red\x07\nnext"):
        console.print(as_text(name))  # rich would raise on '[/bold]' read as markup
    out = console.export_text()
    assert "[/bold]" in out and "[red]x[/red]" in out
    assert "\x1b" not in out and "\\x1b[31m-red\\x07\\nnext" in out
    assert escape_control("tab\there") == "tab\\there"


def test_cli_error_lines_mask_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["runs", "--db", "mysql://lab:s3cret@127.0.0.1:1/x"])
    assert exit_.value.code in (1, 2)
    err = capsys.readouterr().err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1
