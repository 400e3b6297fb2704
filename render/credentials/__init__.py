"""Content credentials (C2PA): the artist's signing key, signing exports, reading them back.

* :mod:`render.credentials.keys` -- the key and certificate chain in the config folder;
* :mod:`render.credentials.signing` -- embedding a credential (MP4, MOV, GIF, PNG) or writing
  a ``.c2pa`` sidecar (Matroska);
* :mod:`render.credentials.reading` -- validating a file's credential with the C2PA reader.

Importing this package imports neither c2pa nor cryptography; the modules do, when called.
"""
