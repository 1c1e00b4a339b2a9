"""Typed run options: the single place every ``--option KEY=VALUE`` is declared (docs/protocol.md §11).

Each scenario, strategy, modifier and the run itself declares the options it reads as :class:`Option`
objects (name, type, default, allowed values, help). The code that uses an option reads it through the same
object (``REWIND.get(config.options)``), so the declaration and the default cannot drift apart. Before any
run starts, :func:`resolve` checks the user's ``KEY=VALUE`` pairs against the options the sweep's scenario
and strategies use (unknown keys and wrong types are refused with the list of valid keys) and fills in
every default, so a record's ``config.options`` states every option its run used.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("bool", "int", "float", "str", "json")
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def all_finite(value: Any) -> bool:
    """True when every number inside ``value`` (nested dicts and lists) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


class OptionError(ValueError):
    """A run option that is unknown, unused by the sweep, or of the wrong type or range."""


@dataclass(frozen=True)
class Option:
    """One declared run option.

    Attributes:
        name: the key of ``--option KEY=VALUE`` and of ``config.options``.
        kind: ``bool``, ``int``, ``float``, ``str`` or ``json`` (a JSON object, e.g. ``{"c_s": 0.8}``).
        default: value used when the option is not given (``None``: "not set", e.g. ``edit_every_tasks``).
        help: one line for ``plasticity-bench options`` and the README table.
        choices: allowed values (``str`` options), or ``None`` for any value of the kind.
        minimum: smallest allowed value (``int``/``float``), or ``None``.
        ours: True where the default is a choice of ours (docs/protocol.md marks it [ours]).
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    ours: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")

    def get(self, options: Mapping[str, Any]) -> Any:
        """The option's value in ``options`` (a config's resolved options), else its default."""
        return options.get(self.name, self.default)

    def parse(self, raw: Any) -> Any:
        """``raw`` (a command-line string or an already typed value) as this option's type.

        Booleans accept true/false, 1/0, yes/no, on/off (any case).

        Raises:
            OptionError: for a value of the wrong type, outside ``choices`` or below ``minimum``.
        """
        value = self._typed(raw)
        if self.choices is not None and value not in self.choices:
            raise OptionError(
                f"--option {self.name}={raw}: choose one of {', '.join(map(str, self.choices))}"
            )
        if self.minimum is not None and value is not None and value < self.minimum:
            raise OptionError(f"--option {self.name}={raw}: must be >= {self.minimum:g}")
        return value

    def _typed(self, raw: Any) -> Any:
        wrong = OptionError(f"--option {self.name}={raw}: expected {self._expected()}")
        if raw is None:
            if self.default is None:
                return None
            raise wrong
        text = raw.strip() if isinstance(raw, str) else raw
        if self.kind == "bool":
            if isinstance(text, bool):
                return text
            word = str(text).lower()
            if word in TRUE_WORDS | FALSE_WORDS:
                return word in TRUE_WORDS
            raise wrong
        if self.kind == "json":
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError as err:
                raise wrong from err
            if not isinstance(value, dict):
                raise wrong
            if not all_finite(value):
                raise OptionError(f"--option {self.name}={raw}: every number must be finite (no NaN or inf)")
            return value
        if self.kind == "str":
            if not isinstance(text, str):
                raise wrong
            return text
        return self._number(text, wrong)

    def _number(self, text: Any, wrong: OptionError) -> int | float:
        if isinstance(text, bool):
            raise wrong
        try:
            value = float(text)
        except (TypeError, ValueError) as err:
            raise wrong from err
        if not math.isfinite(value):
            raise OptionError(f"--option {self.name}={text}: must be a finite number (not NaN or inf)")
        if self.kind == "float":
            return value
        if not value.is_integer():
            raise wrong
        return int(value)

    def _expected(self) -> str:
        if self.kind == "bool":
            return "a boolean (true/false, 1/0, yes/no)"
        if self.kind == "json":
            return 'a JSON object, e.g. {"key": 1.0}'
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return {"int": "an integer", "float": "a number", "str": "a string"}[self.kind]

    def describe(self) -> str:
        """``"imp|none"``-style summary of the allowed values, for tables."""
        if self.choices is not None:
            return "|".join(map(str, self.choices))
        bound = f" >= {self.minimum:g}" if self.minimum is not None else ""
        return f"{self.kind}{bound}"


def by_name(options: Iterable[Option]) -> dict[str, Option]:
    """``{option.name: option}``.

    Raises:
        ValueError: if two different declarations share a name (names are global: one key, one meaning).
    """
    table: dict[str, Option] = {}
    for option in options:
        if table.setdefault(option.name, option) is not option:
            raise ValueError(f"option {option.name!r} is declared twice")
    return table


def split_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values stay strings; :func:`resolve` types them).

    Raises:
        OptionError: for an item without ``=`` or with an empty key, or a key given twice.
    """
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"--option: expected KEY=VALUE, got {item!r}")
        if key in pairs:
            raise OptionError(f"--option {key} is given twice")
        pairs[key] = value
    return pairs


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'grow'?)"`` for the choice closest to a mistyped ``name`` (``difflib``), or ``""``
    when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_known(given: Mapping[str, Any], used: Mapping[str, Option], context: str) -> None:
    """Refuse keys of ``given`` that no option in ``used`` declares.

    Raises:
        OptionError: naming the unknown keys, the context (scenario and strategies) and the valid keys.
    """
    unknown = sorted(set(given) - set(used))
    if unknown:
        valid = ", ".join(sorted(used)) or "none"
        hint = did_you_mean(unknown[0], used) if len(unknown) == 1 else ""
        raise OptionError(
            f"unknown or unused --option key(s) {', '.join(unknown)}{hint} for {context}; valid keys: {valid}"
        )


def resolve(given: Mapping[str, Any], used: Mapping[str, Option]) -> dict[str, Any]:
    """Every option of ``used`` with its typed value: the given one where present, else the default.

    ``given`` keys outside ``used`` are ignored here (the sweep checks them once with :func:`check_known`).

    Raises:
        OptionError: for a value of the wrong type or range.
    """
    return {
        name: option.parse(given[name]) if name in given else option.default for name, option in used.items()
    }
