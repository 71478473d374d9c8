"""Rendering of the mails ticketd sends.

Templates run in Jinja2's sandbox with StrictUndefined: an operator's template cannot reach Python internals,
and a misspelt variable is an error at render time instead of an empty hole in a customer's mail. A template
starts with a ``Subject:`` line, then a blank line, then the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

LANGUAGES = ("en", "tr")


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    body: str
    language: str  # the language of the template used (an unknown language falls back to English)


class TemplateError(Exception):
    pass


def make_environment(*override_dirs: Path | None) -> SandboxedEnvironment:
    """The operator's folders first, in the order given (a mailbox's, then the helpdesk's), then ours."""
    loaders: list[Any] = [FileSystemLoader(str(folder)) for folder in override_dirs if folder is not None]
    loaders.append(PackageLoader("ticketd.mailtemplates", "."))
    return SandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,  # no stat() per mail: a reload builds a new environment (Config.templates)
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(env: SandboxedEnvironment, name: str, language: str, context: dict[str, Any]) -> RenderedMail:
    language = language if language in LANGUAGES else "en"
    try:
        template = env.get_template(f"{language}/{name}.txt.j2")
    except TemplateNotFound:
        template, language = env.get_template(f"en/{name}.txt.j2"), "en"
    text = template.render(**context)
    head, sep, body = text.partition("\n\n")
    if not sep or not head.startswith("Subject:"):
        raise TemplateError(f"{template.name}: must start with a 'Subject:' line followed by a blank line")
    subject = " ".join(head.removeprefix("Subject:").split())
    return RenderedMail(subject=subject, body=body.rstrip() + "\n", language=language)
