"""State lives with its owner (the loaded configuration, the running daemon, one command's run), never in a module:
two of each in one process (two daemons, two tests, the configurations either side of a reload) share nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ticketd.daemon.config import parse_config
from ticketd.mailtemplates.render import render


def base(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    (tmp_path / "secret").write_text("s" * 32)
    return {"helpdesk": {"address": "support@acme.example"}, "security": {"secret_file": str(tmp_path / "secret")},
            **sections}


# --- the configuration's own derived state ----------------------------------------------------------------------

def test_a_reload_reads_edited_templates_without_clearing_anything(tmp_path: Path) -> None:
    """The template environment belongs to the loaded configuration: SIGHUP loads a new one, so an edited
    template is read then, and the running configuration keeps reading none from disk per mail."""
    template = tmp_path / "templates" / "en" / "received.txt.j2"
    template.parent.mkdir(parents=True)
    template.write_text("Subject: Received (first wording)\n\nThanks.\n")
    data = base(tmp_path, helpdesk={"address": "support@acme.example", "templates_dir": str(tmp_path / "templates")})
    running = parse_config(data)
    assert running.templates is running.templates
    assert render(running.templates, "received", "en", {}).subject == "Received (first wording)"

    template.write_text("Subject: Received (second wording)\n\nThanks.\n")
    assert render(running.templates, "received", "en", {}).subject == "Received (first wording)"
    reloaded = parse_config(data)
    assert reloaded.templates is not running.templates
    assert render(reloaded.templates, "received", "en", {}).subject == "Received (second wording)"
