"""Config fields that carry their own help and rule: how every glow_tf config documents and validates itself.

A field is declared once, with ``field(default, help, rule)``; ``check(config, where)`` applies
every field's rule, and ``expect`` is the one place an "expected ..., got ..." error is made:

    GlowConfig.width: expected a positive int, got 0        (where = "GlowConfig.")
    --width: expected a positive int, got 0                 (the same field set by train.py's flag)

The help is the flag's help where the field is a flag of train.py (``train_config`` makes the
flags from the fields); ``flag=False`` marks a field that no flag sets (derived from the data, or
set from another flag).
"""
import dataclasses
import math
from typing import Any, Callable, Optional, Tuple


class FieldError(ValueError):
    """A config field's value broke its rule: the field, what was expected and what was seen."""

    def __init__(self, where, name, expected, value):
        super().__init__(f"{where}{name}: expected {expected}, got {value!r}")
        self.name, self.expected, self.value = name, expected, value

    def as_flag(self, flag=None) -> "FieldError":
        """The same error, named as the command-line flag ``--flag`` (default: the field's name)."""
        return FieldError("--", flag or self.name, self.expected, self.value)


def expect(ok, where, name, expected, value):
    """Raises FieldError(where, name, expected, value) unless ``ok``."""
    if not ok:
        raise FieldError(where, name, expected, value)


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field's value must be: ``holds(value)``, described as ``expected``."""
    expected: str
    holds: Callable[[Any], bool]
    choices: Optional[Tuple] = None  # the values a flag offers (an enum flag for strings)
    boolean: bool = False  # a boolean flag (--name / --noname), also when its default is None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def int_at_least(low, note="") -> Rule:
    return Rule(f"an int >= {low}{note}", lambda v: _is_int(v) and v >= low)


POSITIVE_INT = Rule("a positive int", lambda v: _is_int(v) and v >= 1)
INT_OR_MINUS_ONE = Rule("-1 or an int >= 1", lambda v: _is_int(v) and (v == -1 or v >= 1))
POSITIVE_FLOAT = Rule("a float > 0", lambda v: _is_number(v) and v > 0)
BOOL = Rule("a bool", lambda v: isinstance(v, bool), boolean=True)


def bool_or_none(meaning_of_none) -> Rule:
    return Rule(f"a bool or None ({meaning_of_none})", lambda v: v is None or isinstance(v, bool), boolean=True)
STRING = Rule("a string", lambda v: isinstance(v, str))


def int_in(low, high) -> Rule:
    return Rule(f"an int in {low}..{high}", lambda v: _is_int(v) and low <= v <= high)


def float_at_least(low, note="") -> Rule:
    return Rule(f"a finite float >= {low}{note}", lambda v: _is_number(v) and v >= low)


def float_in(expected, holds) -> Rule:
    return Rule(expected, lambda v: _is_number(v) and holds(v))


def one_of(choices, described=None) -> Rule:
    return Rule(f"one of {described or list(choices)}", lambda v: not isinstance(v, bool) and v in choices,
                tuple(choices))


def field(default, help_text, rule: Rule, flag=True, default_factory=None, original=None, resumable=False,
          checkpoint_neutral=False, original_int_bool=False, **metadata):
    """A dataclass field with every fact about it, kept in its metadata under the argument's name.

    Args:
      default, default_factory: the default.
      help_text, rule: what it is, and what its value must be.
      flag: whether train.py has a flag for it.
      original: its position among the original train.py's flags (None: not one of them); the
        original's flags may be abbreviated, and come first, in its order, in the hps.
      resumable: a flag that may change when a run resumes without a note (it changes nothing
        that the run computes).
      checkpoint_neutral: a model field that changes nothing a checkpoint holds.
      original_int_bool: a bool whose flag is the original's 0/1 int (argparse type=int).
      metadata: any other ``metadata_<key>=value``, as metadata[key].
    """
    metadata = {"help": help_text, "rule": rule, "flag": flag, "original": original, "resumable": resumable,
                "checkpoint_neutral": checkpoint_neutral, "original_int_bool": original_int_bool,
                **{key[len("metadata_"):]: value for key, value in metadata.items()}}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check(config, where):
    """Applies every field's rule to ``config`` (a dataclass instance); FieldError on the first broken one."""
    for f in dataclasses.fields(config):
        rule = f.metadata.get("rule")
        if rule is not None:
            value = getattr(config, f.name)
            expect(rule.holds(value), where, f.name, rule.expected, value)


def help_text(f: dataclasses.Field) -> str:
    """A field's help, with its choices."""
    choices = f.metadata["rule"].choices
    return f.metadata["help"] + (f" One of {list(choices)}." if choices else "")
