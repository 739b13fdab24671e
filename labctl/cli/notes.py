"""The operator's words about a run: `note` and `tag`.

Both are recorded as events of the run (kinds 'note' and 'tag') through the recorder, so they
need no schema of their own and nothing is rewritten: removing a tag records that it was
removed, and `labctl show` / `labctl runs --tag` read the tags as they stand now.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from labctl.cli.app import DbOption, RunArgument, UserError, app, out


def _recorder_for(db: str | None, run_id: int):  # type: ignore[no-untyped-def]
    from labctl.recording.database import open_database
    from labctl.recording.queries import get_run
    from labctl.recording.recorder import Recorder

    engine = open_database(db)
    if get_run(engine, run_id) is None:
        raise UserError(f"no run {run_id} in this database")
    return Recorder(engine)


def _author(author: str | None) -> str | None:
    if author:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return None


@app.command()
def note(
    run_id: RunArgument,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The note (quote it).",
                                        show_default=False)],
    author: Annotated[str | None, typer.Option(metavar="NAME",
                                               help="Who writes it (default: your login).")]
    = None,
    db: DbOption = None,
) -> None:
    """Add a note to a run (shown by `labctl show` and in the report)."""
    from labctl.recording.reads_report import NOTE_KIND

    text = text.strip()
    if not text:
        raise UserError("the note is empty")
    who = _author(author)
    _recorder_for(db, run_id).event(run_id, NOTE_KIND, text, data={"author": who})
    out.print(f"noted on run {run_id}")


@app.command()
def tag(
    run_id: RunArgument,
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="Tags to add (or remove).",
                                              show_default=False)],
    remove: Annotated[bool, typer.Option("--remove", "-r", help="Remove these tags.")]
    = False,
    db: DbOption = None,
) -> None:
    """Add tags to a run (or remove them); `labctl runs --tag TAG` finds the runs."""
    from labctl.recording.reads_report import TAG_KIND, run_tags

    bad = [t for t in tags if not t.strip() or any(c.isspace() for c in t.strip())]
    if bad:
        raise UserError(f"tag {bad[0]!r}: a tag is one word (no spaces)")
    recorder = _recorder_for(db, run_id)
    held = set(run_tags(recorder.engine, run_id))
    for t in dict.fromkeys(x.strip() for x in tags):
        if remove and t in held:
            recorder.event(run_id, TAG_KIND, t, data={"tag": t, "removed": True})
        elif not remove and t not in held:
            recorder.event(run_id, TAG_KIND, t, data={"tag": t})
    now = run_tags(recorder.engine, run_id)
    out.print(f"run {run_id} tags: {', '.join(now) if now else '(none)'}")
