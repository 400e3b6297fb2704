"""Endless generation for live windows: every cycle of the piece plays new drawings.

* :mod:`render.endless.plan` — a scene's ``[generate]`` table checked and resolved;
* :mod:`render.endless.rolling_store` — the folder of per-cycle trajectory stores;
* :mod:`render.endless.sampler_process` — the background process that samples the next cycle;
* :mod:`render.endless.cycles` — the window's side: the sampler kept alive, the next cycle found.

See docs/endless.md.
"""
