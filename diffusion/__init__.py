"""Datasets with provenance, noise schedules, the U-Net, training, sampling and the trajectory store.

Importing this package does not import torch: the numpy-only parts (the trajectory store's
reader, schedules, provenance) are used by ``scenes`` and by the command line without it.
"""
