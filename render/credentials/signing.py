"""Sign an exported file with a C2PA content credential (c2pa-python, offline).

The credential (a C2PA manifest) carries three assertions:

* ``c2pa.actions``: one ``c2pa.created`` action whose ``digitalSourceType`` is IPTC's
  *trainedAlgorithmicMedia* -- made by a trained model, not photographed or drawn;
* ``c2pa.training-mining``: the artist's choice about training, inference and data mining on
  this file (``notAllowed`` unless they chose otherwise);
* ``org.entropic.provenance``: the render's provenance document (:mod:`render.provenance`):
  scene and store hashes, the model weights hash, the dataset manifest hash, licences and
  creators, the audit's verdict and the energy spent.

MP4, MOV, GIF and PNG carry the credential inside the file, bound to its bytes (a BMFF hash
for MP4/MOV, a data hash for GIF/PNG); a Matroska master (FFV1) cannot, so it gets a sidecar
``piece.mkv.c2pa`` bound by a hash of the whole file. Signing is a few milliseconds per file
(benchmarks/RESULTS.md, "Content credentials").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Protocol

from diffusion.common.atomic import atomic_write_bytes, temporary_path
from diffusion.common.errors import EntropicError

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PROVENANCE_LABEL = "org.entropic.provenance"
TRAINING_MINING_LABEL = "c2pa.training-mining"
# The uses a C2PA 1.x training-and-mining assertion speaks of; the artist's one choice applies to all.
TRAINING_MINING_USES = ("c2pa.ai_generative_training", "c2pa.ai_inference", "c2pa.ai_training", "c2pa.data_mining")
# Formats that carry the credential inside the file.
EMBEDDED_FORMATS = {".mp4": "video/mp4", ".mov": "video/quicktime", ".gif": "image/gif", ".png": "image/png"}
SIDECAR_SUFFIX = ".c2pa"
# What a sidecar's manifest is bound to: the bytes of the file, whatever they are.
SIDECAR_FORMAT = "application/octet-stream"


def credential_sidecar_path(path: str | os.PathLike) -> Path:
    """``piece.mkv`` -> ``piece.mkv.c2pa``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def embeds_credential(path: str | os.PathLike) -> bool:
    """Whether a file of this name carries its credential inside (else in a ``.c2pa`` sidecar)."""
    return Path(path).suffix.lower() in EMBEDDED_FORMATS


class SigningIdentity(Protocol):
    """What signing needs of the artist's credentials (``render.credentials.keys.Credentials``)."""

    chain_pem: bytes
    key_pem: bytes
    algorithm: str
    training_mining: str


def manifest_definition(doc: Mapping[str, Any], title: str, training_mining: str) -> dict[str, Any]:
    """The C2PA manifest definition for a file made from the provenance ``doc``."""
    version = str(doc.get("software", "")).removeprefix("entropic").strip() or "unknown"
    return {
        "claim_generator_info": [{"name": "entropic", "version": version}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": "entropic", "version": version},
                "description": "rendered from recorded denoising trajectories of a diffusion model "
                               "trained from scratch on a declared dataset",
            }]}},
            {"label": TRAINING_MINING_LABEL,
             "data": {"entries": {use: {"use": training_mining} for use in TRAINING_MINING_USES}}},
            {"label": PROVENANCE_LABEL, "data": dict(doc)},
        ],
    }


def _signer(credentials: SigningIdentity):
    import c2pa

    info = c2pa.C2paSignerInfo(credentials.algorithm.encode(), credentials.chain_pem, credentials.key_pem, None)
    return c2pa.Signer.from_info(info)


def signing_context():
    """The c2pa context every signature here uses (no thumbnail)."""
    import c2pa

    # A thumbnail would be a second, smaller copy of the frame inside the credential: it costs
    # 3-8x the signing time of a PNG or GIF and says nothing the file does not.
    return c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})


def _failed(path: Path, err: Exception) -> EntropicError:
    text = " ".join(str(err).split())[:300]
    return EntropicError(f"{path.name}: signing its content credential failed ({text}); "
                         "check `entropic credentials init`, or pass --no-sign")


def sign_in_place(path: str | os.PathLike, definition: Mapping[str, Any], credentials: SigningIdentity,
                  suffix: str | None = None, target: str | os.PathLike | None = None) -> None:
    """Embed a credential into ``path`` (MP4, MOV, GIF or PNG), replacing the file when signed.

    ``suffix`` names the format when ``path`` is a temporary whose name does not end in it;
    ``target`` is the final file ``path`` becomes: the signed copy is written as one of *its*
    temporaries, so that a kill while signing leaves a file the next write of ``target``
    cleans away.
    """
    import c2pa

    path = Path(path)
    suffix = (suffix or path.suffix).lower()
    mime = EMBEDDED_FORMATS.get(suffix)
    if mime is None:
        raise EntropicError(f"{path.name}: cannot embed a content credential in this format; it gets a .c2pa sidecar")
    signed = temporary_path(target or path, ".signed" + suffix)
    try:
        with open(path, "rb") as source, open(signed, "w+b") as dest:
            c2pa.Builder(dict(definition), context=signing_context()).sign(_signer(credentials), mime, source, dest)
        os.replace(signed, path)
    except c2pa.C2paError as err:
        raise _failed(path, err) from None
    finally:
        if signed.exists():
            signed.unlink()


def write_credential_sidecar(path: str | os.PathLike, definition: Mapping[str, Any], credentials: SigningIdentity) -> Path:
    """Write ``path``.c2pa: a credential bound to the bytes of ``path`` (for files that cannot embed one)."""
    import c2pa

    path = Path(path)
    side = credential_sidecar_path(path)
    # The signer writes the asset to its destination too: a temporary file, not memory (a
    # Matroska master is gigabytes); only the manifest it returns is kept.
    scratch = temporary_path(side, ".asset")
    try:
        builder = c2pa.Builder(dict(definition), context=signing_context())
        builder.set_no_embed()
        with open(path, "rb") as source, open(scratch, "w+b") as dest:
            manifest = builder.sign(_signer(credentials), SIDECAR_FORMAT, source, dest)
    except c2pa.C2paError as err:
        raise _failed(path, err) from None
    finally:
        if scratch.exists():
            scratch.unlink()
    atomic_write_bytes(side, manifest)
    return side


def sign_export(path: str | os.PathLike, doc: Mapping[str, Any], credentials: SigningIdentity,
                *, title: str | None = None, suffix: str | None = None,
                target: str | os.PathLike | None = None) -> Path | None:
    """Sign ``path`` as its format allows: embedded (returns None) or a ``.c2pa`` sidecar (returns its path).

    ``suffix`` and ``target`` as in :func:`sign_in_place`, for a temporary file.
    """
    path = Path(path)
    definition = manifest_definition(doc, title or path.name, credentials.training_mining)
    if (suffix or path.suffix).lower() in EMBEDDED_FORMATS:
        sign_in_place(path, definition, credentials, suffix, target)
        return None
    return write_credential_sidecar(path, definition, credentials)
