"""The experiment harness: what turns the lectures' detectors into the talk's
tables. It sits above the library and imports it; no lecture module imports it.

- ``methods``    : the registry of every detector by name (Lecture 1, rows from Lectures 4-6)
- ``tables``     : the talk's tables, its numbers, and the settings a run changes (Lecture 1)
- ``splits``     : the splits a table is evaluated on, and the same with fewer training images (Lecture 1)
- ``reproduce``  : running a table: every method on every case, seeds, fewer images, ablations (Lecture 1)
- ``checkpoints``: runs that survive interruption, ``--resume`` (Lecture 4)
- ``batched``    : a table's one-class autoencoders trained side by side (Lecture 4)
- ``report``     : our numbers beside the talk's; one table merged from parts (Lecture 1)
- ``results``    : provenance and the stored results files (Lecture 1)
- ``sweep``      : many small runs (seeds, budgets, settings): resumable, in shards (Lecture 7)
- ``trained``    : trained models shipped with the course: safetensors, a manifest, checked loading (Lecture 1)
- ``cli``        : ``python -m anomaly_edu data | reproduce | merge | sweep``
"""
