"""Notebook parameters checked up front, by the settings objects that will receive them.

A notebook's parameters cell holds plain values; its later cells build settings objects
(``LayerProtocol``, ``ScanSettings``, ``CausalSettings``...) from them, which check every
field. A bad ``-p`` value would only fail there, minutes into a study. Each stage therefore
declares, beside its settings, how a notebook's parameters become them (a tuple of
:class:`ParameterCheck`); :func:`check_parameters` builds them all at once, before anything
runs, and names the parameter, its value and an example in the message.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from personas._core.checks import check_int

__all__ = ["ParameterCheck", "ParameterError", "check_parameters", "value_checks", "optional", "check_n_jobs",
           "parameter_example", "parse_value", "parameters_help"]


class ParameterError(ValueError):
    """A notebook parameter whose value its settings object rejects (a ``ValueError``).

    Attributes
    ----------
    names : tuple of str
        The parameter (or, for values that do not fit together, the parameters) at fault.
    """

    def __init__(self, message: str, names: tuple[str, ...]):
        super().__init__(message)
        self.names = names


@dataclass(frozen=True)
class ParameterCheck:
    """How some of a notebook's parameters become one settings object (which checks them).

    Attributes
    ----------
    names : tuple of str
        The parameters ``build`` reads.
    build : callable
        ``build(parameters)``: the settings object from a mapping holding every parameter
        (the notebook's defaults overridden by the study's values); raises ``ValueError`` or
        ``TypeError`` on a bad value.
    examples : dict
        An example value for parameters whose default (None, say) makes a poor one.
    """

    names: tuple[str, ...]
    build: Callable[[Mapping[str, Any]], Any]
    examples: Mapping[str, Any] = field(default_factory=dict)


def optional(check: Callable[..., Any]) -> Callable[..., Any]:
    """``check`` that lets None through (a parameter whose None means "the default rule")."""
    return lambda value, name, **kw: None if value is None else check(value, name, **kw)


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal (``20``, ``0.5``, ``None``, ``[2, 1]``, ``'x'``) or else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parameters_help(known: Mapping[str, Mapping[str, Any]], hidden: Iterable[str] = ()) -> str:
    """The ``--help`` text of ``{notebook: {parameter: default}}`` (``hidden`` parameters left out)."""
    lines = ["notebook parameters (set any with -p NAME VALUE; defaults from each notebook's parameters cell):"]
    for nb, params in known.items():
        lines.append(f"  {nb}:")
        lines += [f"    {k} = {v!r}" for k, v in params.items() if k not in hidden]
    return "\n".join(lines)


def _text(value: Any) -> str:
    """``value`` as typed after ``-p NAME`` (quoted for the shell when it holds spaces or brackets)."""
    text = value if isinstance(value, str) else repr(value)
    if not any(c in text for c in " []()'\"{}*?$;&|<>#~"):
        return text
    return f'"{text}"' if "'" in text else f"'{text}'"


def parameter_example(name: str, default: Any, examples: Mapping[str, Any] | None = None) -> str:
    """``-p NAME VALUE`` with a good value: the check's example, else the notebook's default."""
    value = (examples or {}).get(name, default)
    return f"-p {name} {_text(value)}"


def check_parameters(params: Mapping[str, Any], defaults: Mapping[str, Any], checks: Iterable[ParameterCheck]) -> None:
    """Build every settings object of ``checks`` from ``params``; raise :class:`ParameterError` on a bad value.

    Each parameter of ``params`` a check reads is tried alone first (the others at their
    defaults), so the message names the one at fault; then all of them together (values
    that are fine alone but not together, e.g. ``control_folds`` above ``n_folds``).

    Parameters
    ----------
    params : mapping
        The values set (by the study, ``--quick`` or ``-p``).
    defaults : mapping
        The notebooks' defaults (:func:`personas.study.notebook_defaults`); every parameter a
        check reads must be here or in ``params``.
    checks : iterable of ParameterCheck
    """
    for check in checks:
        given = [n for n in check.names if n in params]
        for name in given:
            try:
                check.build({**defaults, name: params[name]})
            except (TypeError, ValueError) as exc:
                raise ParameterError(
                    f"parameter {name} = {params[name]!r} is not valid: {exc}. For example: "
                    f"{parameter_example(name, defaults.get(name), check.examples)}", (name,)) from None
        if len(given) > 1:
            try:
                check.build({**defaults, **params})
            except (TypeError, ValueError) as exc:
                values = ", ".join(f"{n} = {params[n]!r}" for n in given)
                raise ParameterError(f"parameters {values} do not fit together: {exc}", tuple(given)) from None


def check_n_jobs(value: Any, name: str = "n_jobs") -> int:
    """joblib's worker count: a non-zero int (1 = serial, -1 = every core)."""
    n = check_int(value, name)
    if n == 0:
        raise ValueError(f"{name} must be a non-zero integer (1 = serial, -1 = every core); got 0")
    return n


def value_checks(rules: Mapping[str, Callable[[Any, str], Any]],
                 examples: Mapping[str, Any] | None = None) -> tuple[ParameterCheck, ...]:
    """One :class:`ParameterCheck` per parameter no settings object holds: ``rules[name](value, name)``.

        value_checks({"seed": check_seed, "umap": check_bool, "scheduler": optional(check_str)})
    """
    examples = dict(examples or {})
    return tuple(ParameterCheck((name,), lambda p, n=name, r=rule: r(p[n], n),
                                {name: examples[name]} if name in examples else {})
                 for name, rule in rules.items())
