"""The trajectory store (docs/trajectory-store.md): every recorded x_t of every sample, on disk.

The contract between the torch half (``diffusion.record`` writes stores) and the numpy half
(``scenes`` reads them). numpy only, by construction: importing this package, or any module in
it, imports no torch.

    format     names, header, identity of a recording, per-sample seeds, the uint8 mapping
    reader     TrajectoryStore, open_store: frames by pread, trajectories, memory maps
    writer     StoreWriter, write_store: new stores, resume and append, crash-safe
    merge      merge_stores: shards of one recording joined bit-identically
    describe   describe_store: what ``entropic info STORE`` prints
"""

from diffusion.store.format import HEADER_FILE, read_header
from diffusion.store.reader import TrajectoryStore, open_store

__all__ = ["HEADER_FILE", "TrajectoryStore", "open_store", "read_header"]
