"""Endless generation for live windows: every cycle of the piece plays new drawings.

* :mod:`render.endless.plan` — a scene's ``[generate]`` table checked and resolved;
* :mod:`render.endless.cycles` — the window's side: the sampler process kept alive, the next
  cycle found.

The rolling store's format is :mod:`diffusion.store.rolling`; the process that records into it,
:mod:`diffusion.rolling_record`.

See docs/endless.md.
"""
