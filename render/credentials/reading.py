"""Read and validate a file's C2PA content credential (the real C2PA reader, c2pa-python).

:func:`read_credential` answers three questions about a file: does it carry a credential
(embedded, or in a ``.c2pa`` sidecar), does the credential hold (signature valid, every hash
binding matches the bytes), and what does it say (the entropic provenance document, the
training-and-mining choice, who signed).

"Holds" and "trusted" are different things. A key made by ``entropic credentials init`` is
on no trust list, so the reader reports ``signingCredential.untrusted``: the signature is
sound but nobody vouches for the signer. That is stated, not counted as a failure; with the
artist's published root certificate as a trust anchor the same credential reads "trusted".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusion.common.errors import EntropicError
from render.credentials.signing import (
    EMBEDDED_FORMATS,
    PROVENANCE_LABEL,
    SIDECAR_FORMAT,
    TRAINED_ALGORITHMIC_MEDIA,
    TRAINING_MINING_LABEL,
    credential_sidecar_path,
    embeds_credential,
)

UNTRUSTED = "signingCredential.untrusted"


@dataclass(frozen=True)
class Credential:
    """What a file's credential says, and whether it holds."""

    where: str  # "embedded" | "sidecar"
    state: str  # c2pa's: "Trusted" | "Valid" | "Invalid"
    failures: tuple[tuple[str, str], ...] = ()  # (code, explanation), the untrusted signer excepted
    signer: str = "unknown"
    issuer: str = "unknown"
    algorithm: str = "unknown"
    signed_at: str = ""
    source_type: str = ""
    training_mining: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None

    @property
    def holds(self) -> bool:
        """Signature valid and every binding matches the bytes (trusted or not)."""
        return self.state in ("Valid", "Trusted") and not self.failures

    @property
    def trusted(self) -> bool:
        """Whether a trust anchor (a trust list, or one given) issued the signer's certificate."""
        return self.state == "Trusted"

    def verdict(self) -> str:
        """One phrase: holds (trusted or not) or why not."""
        if not self.holds:
            return "INVALID: " + "; ".join(f"{code} ({text})" for code, text in self.failures or (("", self.state),))
        who = f"signed by {self.signer!r} (issuer {self.issuer!r})"
        return f"valid, {who}, " + ("trusted" if self.trusted else "signer on no trust list")

    def describe(self) -> list[str]:
        """Lines for ``entropic info FILE``."""
        lines = [f"  content credential ({self.where}, C2PA): {self.verdict()}"]
        if self.signed_at:
            lines.append(f"    signed {self.signed_at} with {self.algorithm}")
        made = "trained algorithmic media" if self.source_type == TRAINED_ALGORITHMIC_MEDIA else (self.source_type or "not stated")
        lines.append(f"    digital source type: {made}")
        if self.training_mining:
            choices = sorted(set(self.training_mining.values()))
            lines.append(f"    training and data mining: {', '.join(choices)}"
                         + ("" if len(choices) == 1 else f" ({self.training_mining})"))
        if self.provenance is None:
            lines.append("    no entropic provenance assertion")
        return lines


def _context(trust_anchors: bytes | None):
    import c2pa

    if trust_anchors is None:
        return None
    return c2pa.Context.from_dict({"trust": {"user_anchors": trust_anchors.decode("ascii", "replace")},
                                   "verify": {"verify_trust": True}})


def _open_reader(path: Path, trust_anchors: bytes | None) -> tuple[Any, str] | None:
    import c2pa

    ctx = _context(trust_anchors)
    side = credential_sidecar_path(path)
    try:
        if embeds_credential(path):
            with open(path, "rb") as stream:
                mime = EMBEDDED_FORMATS[path.suffix.lower()]
                reader = c2pa.Reader(mime, stream, None, ctx) if ctx else c2pa.Reader(mime, stream)
                return reader, "embedded"
        if side.is_file():
            manifest = side.read_bytes()
            with open(path, "rb") as stream:
                reader = (c2pa.Reader(SIDECAR_FORMAT, stream, manifest, ctx) if ctx
                          else c2pa.Reader(SIDECAR_FORMAT, stream, manifest))
                return reader, "sidecar"
        return None
    except c2pa.C2paError.ManifestNotFound:
        return None


def read_credential(path: str | os.PathLike, trust_anchors: bytes | None = None) -> Credential | None:
    """The credential of ``path`` validated against its bytes; None when it carries none.

    A credential that cannot even be parsed (damaged bytes) comes back as an invalid one, with
    the reader's reason; ``trust_anchors`` (PEM) are root certificates to trust.
    """
    import c2pa

    path = Path(path)
    where = "sidecar" if not embeds_credential(path) else "embedded"
    try:
        opened = _open_reader(path, trust_anchors)
    except c2pa.C2paError as err:
        return Credential(where=where, state="Invalid",
                          failures=(("credential.unreadable", " ".join(str(err).split())[:200]),))
    except OSError as err:
        raise EntropicError(f"{path}: cannot read it ({err.strerror})") from None
    if opened is None:
        return None
    reader, where = opened
    with reader:
        state = reader.get_validation_state() or "Invalid"
        results = (reader.get_validation_results() or {}).get("activeManifest") or {}
        manifest = reader.get_active_manifest() or {}
    failures = tuple((f.get("code", "?"), f.get("explanation", "")) for f in results.get("failure", [])
                     if f.get("code") != UNTRUSTED)
    sig = manifest.get("signature_info") or {}
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", []) if isinstance(a, dict)}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions") or []
    source_type = next((a.get("digitalSourceType", "") for a in actions if a.get("action") == "c2pa.created"), "")
    entries = (assertions.get(TRAINING_MINING_LABEL) or {}).get("entries") or {}
    provenance = assertions.get(PROVENANCE_LABEL)
    return Credential(
        where=where, state=state, failures=failures,
        signer=str(sig.get("common_name", "unknown")), issuer=str(sig.get("issuer", "unknown")),
        algorithm=str(sig.get("alg", "unknown")), signed_at=str(sig.get("time", "") or ""),
        source_type=source_type,
        training_mining={k: str(v.get("use")) for k, v in entries.items() if isinstance(v, dict)},
        provenance=provenance if isinstance(provenance, dict) else None,
    )


def read_trust_anchors(path: str | os.PathLike | None) -> bytes | None:
    """PEM root certificates from ``path`` (checked to parse), or None."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise EntropicError(f"{path}: no such file (expected PEM root certificates to trust)")
    data = path.read_bytes()
    from cryptography import x509

    try:
        if not x509.load_pem_x509_certificates(data):
            raise ValueError
    except ValueError:
        raise EntropicError(f"{path}: no PEM certificate in it (expected root certificates to trust)") from None
    return data
