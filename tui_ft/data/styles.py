"""Prompt styles as data. A style is a YAML file of templates; `alpaca`, `phi3` and
`chatml` ship with the package, users add their own in `<config dir>/styles/`.
Rendering gives the training text, the generation prompt, and the character spans
of the answers (what counts toward the loss when the prompt is masked)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StyleError
from ..paths import user_styles_dir
from .records import Message, Record

BUILTIN_DIR = Path(__file__).resolve().parent / "styles"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Each template and the placeholder it must contain exactly once (or may, for system).
TEMPLATE_SLOTS = {
    "system": "{content}",
    "user": "{content}",
    "input": "{input}",
    "assistant": "{content}",
    "separator": None,
}


@dataclass(frozen=True)
class Rendered:
    """A record in a style. `answer_spans` are [start, end) character ranges of `text`
    that the model learns to produce; `prompt` is the text before the last answer,
    which generation continues."""

    text: str
    prompt: str
    answer_spans: tuple[tuple[int, int], ...]

    @property
    def answer_start(self) -> int:
        return len(self.prompt)


@dataclass(frozen=True)
class Style:
    name: str
    description: str
    system: str
    templates: dict[str, str]
    stop: tuple[str, ...] = ()
    source: str = "built-in"

    @property
    def _assistant_parts(self) -> tuple[str, str]:
        prefix, _, suffix = self.templates["assistant"].partition("{content}")
        return prefix, suffix

    def _turns(self, record: Record) -> tuple[str, list[tuple[str, str, str]]]:
        """(system text, [(role, content, input)]) for either kind of record."""
        if record.messages is None:
            return self.system, [("user", record.instruction, record.input),
                                 ("assistant", record.output, "")]
        messages: tuple[Message, ...] = record.messages
        system = self.system
        if messages and messages[0].role == "system":
            system, messages = messages[0].content, messages[1:]
        return system, [(m.role, m.content, "") for m in messages]

    def render(self, record: Record) -> Rendered:
        t = self.templates
        prefix, suffix = self._assistant_parts
        pieces: list[str] = []
        spans: list[tuple[int, int]] = []
        length = 0
        prompt_end = 0

        def add(text: str) -> None:
            nonlocal length
            pieces.append(text)
            length += len(text)

        system, turns = self._turns(record)
        if system:
            add(t["system"].replace("{content}", system))
        for n, (role, content, input_text) in enumerate(turns):
            if role == "user":
                if n > 0:
                    add(t["separator"])
                add(t["user"].replace("{content}", content))
                if input_text:
                    add(t["input"].replace("{input}", input_text))
            else:
                add(prefix)
                prompt_end = length
                start = length
                add(content)
                add(suffix)
                spans.append((start, length))
        text = "".join(pieces)
        return Rendered(text, text[:prompt_end], tuple(spans))

    def prompt(self, record: Record) -> str:
        """The generation prompt: everything up to where the (last) answer starts."""
        return self.render(record).prompt


def _check_style(data: object, where: str, default_name: str) -> Style:
    if not isinstance(data, dict):
        raise StyleError(f"{where}: a style file must be a mapping of keys, not "
                         f"{type(data).__name__}")
    known = {"name", "description", "system", "templates", "stop"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise StyleError(f"{where}: unknown key '{unknown[0]}' (expected "
                         f"{', '.join(sorted(known))})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StyleError(f"{where}: 'name' must be letters, digits, '-', '_' or '.', "
                         f"got {name!r}")
    for key in ("description", "system"):
        if not isinstance(data.get(key, ""), str):
            raise StyleError(f"{where}: '{key}' must be a string")
    templates = data.get("templates")
    if not isinstance(templates, dict):
        raise StyleError(f"{where}: 'templates' must be a mapping with "
                         f"{', '.join(TEMPLATE_SLOTS)}")
    checked: dict[str, str] = {}
    for key, slot in TEMPLATE_SLOTS.items():
        value = templates.get(key, "" if key in ("separator", "input") else None)
        if key == "input" and value == "":
            value = "{input}"
        if key == "system" and value is None:
            value = "{content}"
        if not isinstance(value, str):
            raise StyleError(f"{where}: templates.{key} must be a string")
        if slot and value.count(slot) != 1:
            raise StyleError(f"{where}: templates.{key} must contain {slot} exactly once, "
                             f"got {value!r}")
        checked[key] = value
    extra = sorted(str(k) for k in templates if k not in TEMPLATE_SLOTS)
    if extra:
        raise StyleError(f"{where}: unknown template '{extra[0]}' (expected "
                         f"{', '.join(TEMPLATE_SLOTS)})")
    if not checked["assistant"].partition("{content}")[0].strip():
        # Without one, the answer runs straight on from the prompt: the model cannot
        # tell where it starts, and the prompt's last characters merge into the
        # answer's first token, which counts in the loss even with mask_prompt.
        raise StyleError(f"{where}: templates.assistant has no answer marker before "
                         f"{{content}} (got {checked['assistant']!r}), so the prompt's "
                         "last characters would be learned as part of the answer; put "
                         "the text that introduces an answer there, e.g. "
                         "\"\\n### Response:\\n{content}\"")
    stop = data.get("stop", [])
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise StyleError(f"{where}: 'stop' must be a list of non-empty strings")
    return Style(name, data.get("description", ""), data.get("system", "") or "",
                 checked, tuple(stop), source=where)


def load_style_file(path: Path) -> Style:
    from ..yamlfile import read_yaml_file

    data = read_yaml_file(path, StyleError)
    return _check_style(data, str(path), path.stem)


@dataclass
class StyleCatalog:
    """Every style that loaded, and a located error for every file that did not
    (`broken`: by the file's stem, the name it would have had, so asking for it says
    why it is missing rather than that it is unknown)."""

    styles: dict[str, Style] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Style:
        try:
            return self.styles[name]
        except KeyError:
            if name in self.broken:
                raise StyleError(f"prompt style '{name}' cannot be used: "
                                 f"{self.broken[name]}") from None
            known = ", ".join(sorted(self.styles))
            raise StyleError(f"unknown prompt style '{name}' (available: {known})") from None

    def names(self) -> list[str]:
        return list(self.styles)


def load_styles(user_dir: Path | None = None) -> StyleCatalog:
    catalog = StyleCatalog()
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        style = dataclasses.replace(load_style_file(path), source="built-in")
        catalog.styles[style.name] = style
    folder = user_styles_dir() if user_dir is None else user_dir
    if folder.is_dir():
        for path in sorted(folder.glob("*.y*ml")):
            try:
                style = load_style_file(path)
            except StyleError as exc:
                catalog.errors.append(str(exc))
                catalog.broken.setdefault(path.stem, str(exc))
                continue
            previous = catalog.styles.get(style.name)
            if previous is not None:
                catalog.errors.append(f"{path}: style '{style.name}' is already defined by "
                                      f"{previous.source}; rename it")
                continue
            catalog.styles[style.name] = style
    return catalog


def get_style(name: str, user_dir: Path | None = None) -> Style:
    return load_styles(user_dir).get(name)
