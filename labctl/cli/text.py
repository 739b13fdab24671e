"""Text that reaches the terminal: credentials masked, stored names shown as they are.

Two things an operator's terminal must never get from labctl:

* a password or token from a URL (``postgresql://lab:s3cret@db/labctl``, an apprise
  ``slack://TOKEN/...``) echoed in an error message — `mask_credentials` replaces the user-info
  part of every URL in a message with ``***``;
* a stored name interpreted instead of printed: a cell id ``[/bold]`` is rich markup and an
  ANSI escape sequence in a protocol name would reach the terminal raw — `as_text` escapes
  control characters and returns a `rich.text.Text`, which rich never parses for markup.
"""

from __future__ import annotations

import re

from rich.text import Text

# scheme://user-info@host... — user-info is everything up to the last '@' before the path
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^\s/@]+)@")
# scheme://TOKEN/... for notification services whose first path part is the secret
_TOKEN_SCHEMES = re.compile(
    r"(?P<scheme>\b(?:slack|discord|tgram|pover|pushover|gotify|ntfy|matrix|teams|msteams|"
    r"pbul|join|signal|twilio)s?://)(?P<token>[^\s/]+)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def mask_credentials(message: str) -> str:
    """`message` with the user-info of every URL, and the token of token-first notification
    URLs, replaced by ``***``."""
    masked = _URL_USERINFO.sub(lambda m: f"{m['scheme']}***@", message)
    return _TOKEN_SCHEMES.sub(lambda m: f"{m['scheme']}***", masked)


def escape_control(value: str) -> str:
    """Control characters (ESC, BEL, CR, ...) as visible escapes: ``\\x1b``; tabs and newlines
    as ``\\t`` and ``\\n``, so one stored name stays on one line."""
    value = value.replace("\t", "\\t").replace("\n", "\\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def as_text(value: object) -> Text:
    """A stored value for a rich table or console: escaped, never read as markup."""
    return Text(escape_control(str(value)))
