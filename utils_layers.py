"""Layer-side API for the notebooks: models, prompts, hook extraction, activation store, layer metrics.

Everything here is re-exported from small single-purpose modules of the ``personas``
package, where the code and its docstrings live:

- ``personas.statements``: persona statements (``load_statements``, topics)
- ``personas.models``: model and tokenizer loading (``load_model``)
- ``personas.prompts``: prompt formatting with chat templates
- ``personas.hooks``: forward hooks on transformer blocks
- ``personas.extraction``: batched per-layer activation extraction
- ``personas.store``: the on-disk activation store (safetensors + JSON manifest)
- ``personas.layer_metrics``: which layers separate personas, with controls

Layer convention everywhere: index 0 = embeddings, index i = output of block i
(as in Hugging Face ``hidden_states``).
"""

from personas.statements import *  # noqa: F401,F403
from personas.models import *  # noqa: F401,F403
from personas.prompts import *  # noqa: F401,F403
from personas.hooks import *  # noqa: F401,F403
from personas.extraction import *  # noqa: F401,F403
from personas.store import *  # noqa: F401,F403
from personas.layer_metrics import *  # noqa: F401,F403
