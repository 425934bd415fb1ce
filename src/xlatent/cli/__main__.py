"""``python -m xlatent.cli``: the same as the ``xlatent`` command."""

from xlatent.cli import app

app(prog_name="xlatent")
