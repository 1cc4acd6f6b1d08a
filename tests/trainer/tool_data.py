"""Function-calling data over the tiny models' word chain, and a tiny model whose template cannot render it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kubetune_trainer.data.chat_template import DEFAULT_CHAT_TEMPLATE
from kubetune_trainer.hf_cache import publish_folder
from kubetune_trainer.tiny_model import TinyModel, markov_sentences

NO_TOOLS_REPO = "tiny-org/tiny-llama-no-tools"


def tool_conversation(sentence: str, number: int) -> dict[str, Any]:
    """The user names a word, the assistant calls `lookup`, the tool answers, the assistant repeats it."""
    words = sentence.split()
    arguments = json.dumps({"q": words[0]})
    call = {"id": f"call_{number}", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Finds the rest of a sentence.",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
        "messages": [
            {"role": "user", "content": words[0]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{number}", "content": " ".join(words[1:])},
            {"role": "assistant", "content": " ".join(words[1:]), "reasoning": "The tool found it."},
        ],
    }


def write_tool_data(directory: Path, *, count: int = 32) -> Path:
    """`count` tool-calling conversations, with a trailing blank line as editors write (accepted)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tools.jsonl"
    sentences = [s for s in markov_sentences(2 * count, seed=5) if len(s.split()) >= 2][:count]
    path.write_text("".join(json.dumps(tool_conversation(s, n)) + "\n" for n, s in enumerate(sentences)) + "\n")
    return path


def publish_without_tool_template(tiny: TinyModel, *, hf_home: Path, scratch: Path) -> str:
    """The tiny model again as NO_TOOLS_REPO, with plain ChatML for a chat template: it cannot render tools."""
    folder = scratch / "no-tools"
    shutil.copytree(tiny.snapshot_path, folder)
    for template in folder.glob("chat_template.jinja"):
        template.write_text(DEFAULT_CHAT_TEMPLATE, encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "chat_template" in config:
        config["chat_template"] = DEFAULT_CHAT_TEMPLATE
        config_path.write_text(json.dumps(config), encoding="utf-8")
    publish_folder(folder, repo_id=NO_TOOLS_REPO, hub_cache=hf_home / "hub")
    return NO_TOOLS_REPO
