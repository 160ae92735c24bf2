"""Warnings that are one fact each: their categories, one-line display, and aggregation.

``StudyNote`` says that something was skipped or left out (a level for a persona in no topic);
``ConstantFeaturesWarning`` that a layer's activations are constant; ``ModelNote`` a fact about
the model loaded (a damaged cache entry rebuilt, a tokenizer setting taken from the GGUF file).
All derive from ``PersonasWarning``, which :func:`one_line_warnings` shows as one line, without the source line
that Python echoes under a warning (in a notebook that echo is the cell's code, shown in red).
Other categories keep Python's display.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["PersonasWarning", "StudyNote", "ModelNote", "ConstantFeaturesWarning", "IdenticalPointsWarning",
           "constant_layer_message", "one_line_warnings", "aggregated_warnings"]


class PersonasWarning(Warning):
    """A warning of this package: one fact, said in one line with its advice."""


class StudyNote(PersonasWarning, UserWarning):
    """Something a study skipped or left out, and why (e.g. level 1 for a persona in no topic)."""


class ModelNote(PersonasWarning, UserWarning):
    """A fact about the model loaded: a cache entry rebuilt, a tokenizer setting that follows the GGUF file."""


class ConstantFeaturesWarning(PersonasWarning, RuntimeWarning):
    """A layer's activations are the same for every statement of some personas."""


class IdenticalPointsWarning(ConstantFeaturesWarning, UserWarning):
    """Every point given to the cluster metrics is the same."""


def constant_layer_message(layer: int, constant: list[str], n_personas: int) -> str:
    """The one line said for a layer whose activations are constant for ``constant`` personas."""
    names = f" ({', '.join(constant)})" if len(constant) <= 3 else ""
    return (f"layer {layer}: the activations are constant for {len(constant)} of {n_personas} personas{names}, "
            "every statement gets the same vector (e.g. layer 0 at the last token of a chat template): classifiers "
            "predict the majority class and cluster metrics show no separation; read the wording control "
            "(layer 0 averaged over the statement's tokens) instead")


_ORIGINAL = {"showwarning": None}


def _show(message, category, filename, lineno, file=None, line=None):
    if isinstance(category, type) and issubclass(category, PersonasWarning):
        stream = sys.stderr if file is None else file
        try:
            stream.write(f"{category.__name__}: {message}\n")
        except (OSError, AttributeError):  # no usable stream (as Python's own showwarning)
            pass
        return
    _ORIGINAL["showwarning"](message, category, filename, lineno, file, line)


def one_line_warnings() -> None:
    """Show this package's warnings as one line each (idempotent); other warnings are left as they are."""
    if warnings.showwarning is not _show:
        _ORIGINAL["showwarning"] = warnings.showwarning
        warnings.showwarning = _show


@contextmanager
def aggregated_warnings(category: type[Warning] = ConstantFeaturesWarning) -> Iterator[None]:
    """Inside: warnings of ``category`` are collected; on exit each distinct message is warned once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        yield
    others, seen = [], {}
    for w in caught:
        if issubclass(w.category, category):
            seen.setdefault(str(w.message), w.category)
        else:
            others.append(w)
    for w in others:  # recorded because catch_warnings records everything: pass them on unchanged
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message, cat in seen.items():
        warnings.warn(message, cat, stacklevel=4)  # the caller of the function using the context
