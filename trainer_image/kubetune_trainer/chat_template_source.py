"""A model's chat template read from its repo's small files, before any weight moves (the preflight).

transformers 5 keeps the template in `chat_template.jinja`; older repos keep it in
`tokenizer_config.json` (`chat_template`: a string, or a list of named templates of which
`default` is the one used). A repo with neither trains with kubetune's default ChatML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .contract import ModelSource
from .data.chat_template import DEFAULT_CHAT_TEMPLATE
from .hub import HubSettings, RepoListing, read_json, read_text
from .model_source import inspect_model

JINJA_FILE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass(frozen=True)
class ChatTemplate:
    text: str
    source: str
    """Names the template in messages: which file of which repo, or kubetune's default."""


def model_chat_template(source: ModelSource, *, cache_dir: Path, environ: Mapping[str, str]) -> ChatTemplate:
    """The chat template the job's model trains with (an adapter repo's own, else its base's)."""
    inspection = inspect_model(source, cache_dir=cache_dir, environ=environ)
    settings = HubSettings.from_env(environ, token_env=source.token_env)
    for listing in (inspection.listing, inspection.base):
        if listing is not None:
            found = _listed_template(listing, settings=settings, cache_dir=cache_dir)
            if found is not None:
                return found
    return ChatTemplate(DEFAULT_CHAT_TEMPLATE, f"kubetune's default ChatML ({source.repo} has no chat template)")


def _listed_template(listing: RepoListing, *, settings: HubSettings, cache_dir: Path) -> ChatTemplate | None:
    where = f"{listing.repo}@{listing.sha[:12]}"
    if listing.has(JINJA_FILE):
        return ChatTemplate(
            read_text(listing, JINJA_FILE, settings=settings, cache_dir=cache_dir), f"{JINJA_FILE} of {where}"
        )
    if not listing.has(TOKENIZER_CONFIG):
        return None
    template = read_json(listing, TOKENIZER_CONFIG, settings=settings, cache_dir=cache_dir).get("chat_template")
    if isinstance(template, list):
        named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
        template = named.get("default")
    if isinstance(template, str) and template:
        return ChatTemplate(template, f"the chat_template of {where}'s {TOKENIZER_CONFIG}")
    return None
