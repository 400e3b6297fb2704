"""`entropic show`: the piece on gallery screens, unattended, for weeks.

Two processes. The **supervisor** (:mod:`render.show.supervisor`) holds no GL and no torch: it
starts the window process, restarts it when it crashes, exits or stops reporting (a hang),
with back-off, writes the health log (:mod:`render.show.health`) and answers remote control
(:mod:`render.show.remote`). The **window process** (:mod:`render.show.gallery`) opens one
fullscreen window per screen and shows, at every moment, the frame the wall clock says is due
(:mod:`render.show.wall_clock`), inside opening hours (:mod:`render.show.hours`), each window
its part of the canvas (:mod:`render.show.screens`). :mod:`render.show.autostart` writes
what starts the show at login.
"""
