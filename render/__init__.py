"""Sinks (video file, image sequence, live window) and the command line."""
