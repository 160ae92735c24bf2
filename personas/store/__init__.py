"""The on-disk activation store: safetensors per (model, persona) plus a JSON manifest.

Layout::

    <store_dir>/<model_slug>/<persona>.safetensors   # one float32 tensor per layer, keys "layer_<i>"
    <store_dir>/<model_slug>/<persona>.json          # manifest: how the tensors were made

Both files are written atomically (temporary file, then rename); they carry the same
``write_id``, so a store left half-updated by a crash is detected on load. What "the same"
means is checked on data, not names: the manifest records a fingerprint of the model, of
each persona's statements, the tensor file's size and a SHA-256 per tensor. One writer at a
time: the writer holds an exclusive lock on the model's folder.

Modules, one job each: ``paths`` (names and listing), ``read`` (manifests and verified
tensors), ``fingerprints`` (model, statements and store fingerprints), ``write`` (tensors and
manifest). The store only reads, writes and fingerprints; ``personas.model.extraction``
runs the model and fills it.

Persona file names: the persona itself when it is a safe file name (letters,
digits, ``.``, ``_``, ``-``), else its safe form plus ``-`` and 8 hex digits of the
SHA-256 of the exact name, so ``"a b"`` and ``"a-b"`` never share a file; the
stored persona is checked on load.
"""
