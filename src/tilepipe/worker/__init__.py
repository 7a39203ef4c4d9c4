"""The warm worker: one process per node job that keeps torch imported and models loaded, and
runs the GPU steps (``superres``, ``fields``) of many per-scene jobs one after another.

Each scene stays its own Snakemake job (its outputs, log, retries and journal as before); its
``tilepipe`` process only hands its command line to the worker (:mod:`.client`) and relays the
answer, so a scene pays for its own work, not for interpreter, imports, model load and device
set-up (:mod:`.server`). See docs/engine.md, "A warm worker per node job".

This package imports nothing heavy: the client must start in milliseconds.
"""
