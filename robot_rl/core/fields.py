"""Typed checks of a composed command config, before the command runs.

Hydra turns `key=value` into a YAML scalar (`2.7` a float, `maybe` a string) and nothing checks it
against what the key means, so a bad value used to surface as a traceback deep inside a command, or
was silently coerced (`int(2.7)`, `bool("maybe")`). Here every leaf of the config is checked by a rule:

  - the command's own rules (`FIELDS` in robot_rl/commands/<command>.py),
  - then COMMON: names that mean the same thing in every command and section (`batch_size`, `lr`, ...),
  - then the type of the key's default in configs/<command>.yaml (a bool default takes only true/false,
    an int default only whole numbers, a float default only finite numbers).

A failed check is a ConfigError naming the full key and value and the form that is accepted.
Sections built into dataclasses (train.*, distill.*, the RL algorithms' configs, a checkpoint's model)
are also checked against the dataclass's annotations (`fits_annotation`, used by
robot_rl.core.config.dataclass_from_dict), so library callers get the same type errors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from robot_rl.core.errors import ConfigError

MISSING = object()


class Invalid(ValueError):
    """A value a Rule refuses; the message says what is expected."""


class Unusable(Invalid):
    """A value of the right form that cannot be used (a path that does not exist); the message says why."""


@dataclass(frozen=True)
class Rule:
    """check(value) -> the value to use (e.g. 3.0 -> 3 for an integer), or raise Invalid; with
    `with_config`, check(value, config) also sees the whole (plain) config."""

    check: Callable[..., Any]
    with_config: bool = False


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounds(lo, hi, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}]"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    return f" <= {hi}" if hi is not None else ""


def integer(min: int | None = None, max: int | None = None) -> Rule:
    """A whole number (2.0 is taken as 2; 2.7, 'abc' and true are refused) within [min, max]."""
    expected = f"an integer{_bounds(min, max)}"

    def check(v):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise Invalid(expected)
        if (min is not None and v < min) or (max is not None and v > max):
            raise Invalid(expected)
        return v

    return Rule(check)


def number(min: float | None = None, max: float | None = None, min_open: bool = False) -> Rule:
    """A finite number within [min, max] ((min, max] with min_open)."""
    expected = f"a number{_bounds(min, max, min_open)}"

    def check(v):
        if not _is_number(v) or not math.isfinite(v):
            raise Invalid(expected)
        if min is not None and (v <= min if min_open else v < min):
            raise Invalid(expected)
        if max is not None and v > max:
            raise Invalid(expected)
        return v

    return Rule(check)


def _boolean(v):
    if not isinstance(v, bool):
        raise Invalid("true or false")
    return v


boolean = Rule(_boolean)


def choice(*options: str) -> Rule:
    def check(v):
        if v not in options:
            raise Invalid(f"one of {', '.join(options)}")
        return v

    return Rule(check)


def _text(v):
    if not isinstance(v, str) or not v:
        raise Invalid("a non-empty string")
    return v


text = Rule(_text)


def optional(rule: Rule) -> Rule:
    """null, or what `rule` accepts."""
    def check(v, *config):
        if v is None:
            return None
        try:
            return rule.check(v, *config)
        except Unusable:
            raise
        except Invalid as e:
            raise Invalid(f"null or {e}") from None

    return Rule(check, rule.with_config)


def integers(min: int | None = None) -> Rule:
    """A list of integers, each >= min (e.g. hidden layer sizes)."""
    each = integer(min)

    def check(v):
        if not isinstance(v, (list, tuple)):
            raise Invalid(f"a list of integers{_bounds(min, None)}, e.g. [256,256]")
        try:
            return [each.check(x) for x in v]
        except Invalid:
            raise Invalid(f"a list of integers{_bounds(min, None)}, e.g. [256,256]") from None

    return Rule(check)


def key_of(section: str) -> Rule:
    """A key of the mapping at dotted `section` of the same config (e.g. robot.control.profiles)."""
    def check(v, config):
        options = config
        for part in section.split("."):
            options = options.get(part) if isinstance(options, Mapping) else None
        options = sorted(options or {})
        if v not in options:
            raise Invalid(f"one of {', '.join(map(str, options))} ({section})")
        return v

    return Rule(check, with_config=True)


def _is_url(v: str) -> bool:
    return "://" in v


def _path(v) -> str:
    """Hydra reads a bare `nan`, `123` or `1e3` as a number: as a path it is the text typed (quote 1e3)."""
    return _text(str(v) if _is_number(v) else v)


def _existing(v):
    v = _path(v)
    if not _is_url(v) and not Path(v).exists():
        raise Unusable("does not exist")
    return v


existing_path = Rule(_existing)   # something to read: it must exist


def _directory_target(v):
    v = _path(v)
    if not _is_url(v) and Path(v).exists() and not Path(v).is_dir():
        raise Unusable("is a file; expected a directory to create or to add to")
    return v


directory_target = Rule(_directory_target)   # a directory to write into (new or existing)


def _device(v):
    v = _text(v).strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
        raise Invalid("auto, cpu, cuda or cuda:N")
    if v.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise Invalid("auto or cpu (CUDA is not available on this machine)")
    return v


device = Rule(_device)

# Names that mean the same thing wherever they appear (`**.x` matches x in any section).
COMMON: dict[str, Rule] = {
    "task.max_episode_steps": optional(integer(1)),   # task=gym: null keeps the env's own limit
    "task.rate_hz": optional(number(0, min_open=True)),
    "out": optional(directory_target),
    "seed": integer(0),
    "**.*seed": integer(0),
    "**.seed_offset": integer(0),
    "**.device": device,
    "**.batch_size": integer(1),
    "**.*_batch_size": integer(1),
    "**.minibatch_size": integer(1),
    "**.improve_batch": integer(1),
    "**.steps": integer(1),
    "**.*_steps": integer(0),
    "**.lr": number(0, min_open=True),
    "**.*_lr": number(0, min_open=True),
    "**.*_episodes": integer(0),
    "**.num_workers": integer(0),
    "**.eval_every": integer(0),   # 0: no evaluation during training
    "**.*_every": integer(1),      # step % every
    "**.val_ratio": number(0.0, 1.0),
    "**.gamma": number(0.0, 1.0),
    "**.tau": number(0.0, 1.0, min_open=True),
    "**.polyak": number(0.0, 1.0, min_open=True),
    "**.expectile": number(0.0, 1.0, min_open=True),
    "**.prior_fraction": number(0.0, 1.0),
    "**.ema_power": number(0.0, min_open=True),
    "**.ema_max_decay": number(0.0, 1.0),
    "**.weight_decay": number(0.0),
    "**.grad_clip": number(0.0),
    "**.betas": Rule(lambda v: _pair_of_probabilities(v)),
    "**.*_hidden": integers(1),
    "**.max_minutes": number(0.0),
    "**.resume": boolean,
    "device": device,
    "torch_threads": integer(0),
}


def _pair_of_probabilities(v):
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(_is_number(b) and 0.0 <= b < 1.0 for b in v)):
        raise Invalid("two numbers in [0, 1), e.g. [0.95,0.999]")
    return list(v)


def _matches(pattern: str, key: str) -> bool:
    if pattern.startswith("**."):
        return fnmatchcase(key.rsplit(".", 1)[-1], pattern[3:]) and "." in key
    return len(pattern.split(".")) == len(key.split(".")) and fnmatchcase(key, pattern)


def leaves(cfg: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every non-mapping value; lists are leaves."""
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from leaves(v, key + ".")
        else:
            yield key, v


def _by_default_type(default: Any) -> Rule | None:
    if isinstance(default, bool):
        return boolean
    if isinstance(default, int):
        return integer()
    if isinstance(default, float):
        return number()
    return None


def check_fields(values: Mapping, rules: Mapping[str, Rule], defaults: Mapping | None = None,
                 where: str = "") -> dict[str, Any]:
    """Check every leaf of `values` (a plain nested dict) by the first rule whose pattern matches its
    key (`rules`, then COMMON), else by the type of its default in `defaults`. Returns {key: value} of
    the values a rule normalized (e.g. 3.0 -> 3); raises ConfigError on the first bad value."""
    values = dict(values)
    flat_defaults = dict(leaves(defaults)) if defaults else {}
    ordered = list(rules.items()) + [(p, r) for p, r in COMMON.items() if p not in rules]
    changed = {}
    for key, value in leaves(values):
        rule = next((r for p, r in ordered if _matches(p, key)), None)
        if rule is None:
            default = flat_defaults.get(key, MISSING)
            if default is MISSING or value == default:
                continue
            rule = _by_default_type(default)
            if rule is None:
                continue
        try:
            checked = rule.check(value, values) if rule.with_config else rule.check(value)
        except Unusable as e:   # a path: spelt bare, as the project's other path errors
            raise ConfigError(f"{where}{key}={value}: {e}") from None
        except Invalid as e:
            raise ConfigError(f"{where}{key}={show_value(value)}: expected {e}") from None
        if type(checked) is not type(value) or checked != value:
            changed[key] = checked
    return changed


def show_value(value: Any) -> str:
    """The value as YAML/the command line spell it; strings quoted, as in the project's other errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show_value(v) for v in value) + "]"
    return repr(value)


# -- dataclass fields by their annotations (robot_rl.core.config.dataclass_from_dict) -------------------
def fits_annotation(v, hint) -> tuple[bool, Any]:
    """(whether `v` fits the annotation `hint`, v converted: 3.0 -> 3 for int, numpy scalars -> Python).
    Annotations other than bool/int/float/str, tuples and Optionals of them are not checked."""
    import types
    import typing

    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:   # numpy scalar
        v = v.item()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return True, v
        for a in args:
            if a is not type(None):
                ok, w = fits_annotation(v, a)
                if ok:
                    return True, w
        return False, v
    if origin is tuple:
        if not isinstance(v, (tuple, list)):
            return False, v
        each = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if each is None and args and len(args) != len(v):
            return False, v
        out = []
        for i, x in enumerate(v):
            ok, w = fits_annotation(x, each if each is not None else (args[i] if args else typing.Any))
            if not ok:
                return False, v
            out.append(w)
        return True, tuple(out)
    if hint is bool:
        return isinstance(v, bool), v
    if hint is int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return isinstance(v, int) and not isinstance(v, bool), v
    if hint is float:
        return _is_number(v) and not math.isnan(v), v
    if hint is str:
        return isinstance(v, str), v
    return True, v


_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings")}


def annotation_name(hint) -> str:
    import typing

    if hint in _NAMES:
        return _NAMES[hint][0]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return f"a list of {_NAMES[args[0]][1]}" if args and args[0] in _NAMES else "a list"
    if args and len(args) < len(typing.get_args(hint)):
        return "null or " + " or ".join(annotation_name(a) for a in args)
    return str(hint)
