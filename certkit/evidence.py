"""The evidence bundle: a results folder signed as an in-toto Statement in a DSSE envelope, and its verification.

``certkit attest DIR --key KEY.pem`` writes ``DIR/attestation.dsse.json``; ``certkit verify DIR --key PUB.pem`` checks it.
The formats are the published ones, so that any DSSE / in-toto verifier accepts the envelope:

* the envelope is DSSE v1 (secure-systems-lab/dsse, ``envelope.md``): ``{"payload": Base64(body), "payloadType":
  "application/vnd.in-toto+json", "signatures": [{"keyid": KEYID, "sig": Base64(signature)}]}``, the signature taken
  over the pre-authentication encoding ``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (LEN:
  the byte length in ASCII decimal, no leading zeros; ``protocol.md``); verifiers accept standard and URL-safe base64;
* the body is an in-toto Statement v1 (in-toto/attestation ``spec/v1/statement.md``): ``_type``
  ``https://in-toto.io/Statement/v1``; ``subject``: one ResourceDescriptor per file (``name``: its path in DIR,
  ``digest``: ``{"sha256": lowercase hex}``); ``predicateType`` :data:`PREDICATE_TYPE`, certkit's own type; ``predicate``:
  what the run decided and under what (:func:`predicate`);
* the key is Ed25519 (PEM: PKCS#8 private key, SubjectPublicKeyInfo public key, as ``openssl genpkey -algorithm
  ed25519`` and :func:`keygen` write them); the signature is Ed25519's 64 bytes; ``keyid`` is the hex SHA-256 of the raw
  32-byte public key (a hint to pick the key, never trusted: the signature decides).

``history.jsonl`` is a chain: each line's ``prev`` is the SHA-256 of the line before (:func:`certkit.results.append_history`);
:func:`check_history` walks it, and the predicate records the signed history's last line, so an edited, removed or
reordered line is named by its number. Every failure raises :class:`EvidenceError` with one line naming the file (and
line). The cryptography is :mod:`cryptography`'s; DSSE's PAE is the one line of :func:`pae` (securesystemslib has it,
but would be a second dependency for one line).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from .results import ResultsError, line_digest, load_results
from .testdata import file_digest

__all__ = ["PAYLOAD_TYPE", "STATEMENT_TYPE", "PREDICATE_TYPE", "ENVELOPE", "EvidenceError", "pae", "keyid", "load_private_key",
           "load_public_key", "keygen", "subjects", "predicate", "statement", "sign", "attest", "check_history",
           "verify"]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: certkit's own predicate type (not one of in-toto's vetted types): the fields of :func:`predicate`, version 1
PREDICATE_TYPE = "https://certkit.dev/attestation/audit/v1"
#: the envelope's file name in the folder
ENVELOPE = "attestation.dsse.json"
#: the files a certkit run writes into its folder, signed where present (results.json must be)
RESULTS, REPORT, HISTORY = "results.json", "audit.html", "history.jsonl"
#: where an encrypted private key's passphrase is read from
PASSWORD_ENV = "CERTKIT_KEY_PASSWORD"


class EvidenceError(ValueError):
    """Evidence that does not verify, or an input that cannot be used: the message is one line naming the file (and line)
    and what is wrong. ``usage`` is True for an input that is not evidence (a key file, a folder that is not there):
    the command line exits 2 for those and 1 for evidence that fails."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


# ------------------------------------------------------------------ DSSE and keys

def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding of ``payload_type`` (UTF-8) and ``body``: the bytes the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def keyid(public_key) -> str:
    """The key's id in the envelope: the hex SHA-256 of the raw 32-byte Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


def _read_key_file(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise EvidenceError(f"{what} {str(path)!r} does not exist", usage=True)
    data = path.read_bytes()
    if b"-----BEGIN" not in data:
        raise EvidenceError(f"{what} {str(path)!r} is not a PEM file; make a key with `certkit keygen KEY.pem` or "
                            "`openssl genpkey -algorithm ed25519 -out KEY.pem`", usage=True)
    return data


def load_private_key(path: str | Path):
    """The Ed25519 private key in the PEM file at ``path`` (PKCS#8; an encrypted one with the passphrase in the environment
    variable ``CERTKIT_KEY_PASSWORD``). Anything else raises a usage :class:`EvidenceError` naming the file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = Path(path)
    data = _read_key_file(path, "private key file")
    if b"PUBLIC KEY-----" in data:
        raise EvidenceError(f"private key file {str(path)!r} holds a public key; sign with the private key (verify takes the "
                            "public one)", usage=True)
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(data, password=password.encode() if password else None)
    except TypeError:
        raise EvidenceError(f"private key file {str(path)!r} is encrypted: set {PASSWORD_ENV} to its passphrase", usage=True) from None
    except (ValueError, binascii.Error) as exc:
        raise EvidenceError(f"private key file {str(path)!r} cannot be read as a PEM private key ({exc}); a wrong "
                            f"{PASSWORD_ENV}, or not a key", usage=True) from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises its own types for unsupported keys
        raise EvidenceError(f"private key file {str(path)!r} cannot be read ({type(exc).__name__}: {exc})", usage=True) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise EvidenceError(f"private key file {str(path)!r} holds a {type(key).__name__.removeprefix('_')} key, not Ed25519; "
                            "make one with `certkit keygen KEY.pem`", usage=True)
    return key


def load_public_key(path: str | Path):
    """The Ed25519 public key in the PEM file at ``path`` (SubjectPublicKeyInfo, ``-----BEGIN PUBLIC KEY-----``). A private
    key, another kind of key or a file that is not PEM raises a usage :class:`EvidenceError` naming the file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = Path(path)
    data = _read_key_file(path, "public key file")
    if b"PRIVATE KEY-----" in data:
        raise EvidenceError(f"public key file {str(path)!r} holds a private key; give the public one (KEY.pub.pem, or "
                            "`openssl pkey -in KEY.pem -pubout`) and keep the private key with the signer", usage=True)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, binascii.Error) as exc:
        raise EvidenceError(f"public key file {str(path)!r} cannot be read as a PEM public key ({exc})", usage=True) from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises its own types for unsupported keys
        raise EvidenceError(f"public key file {str(path)!r} cannot be read ({type(exc).__name__}: {exc})", usage=True) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise EvidenceError(f"public key file {str(path)!r} holds a {type(key).__name__.removeprefix('_')} key, not Ed25519",
                            usage=True)
    return key


def keygen(path: str | Path) -> tuple[Path, Path, str]:
    """A new Ed25519 key pair: the private key at ``path`` (PKCS#8 PEM, unencrypted, readable by its owner only) and the
    public key beside it (``KEY.pub.pem`` for ``KEY.pem``); returns both paths and the key id. An existing file is
    never overwritten (usage :class:`EvidenceError`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = Path(path)
    public = private.with_name(private.name.removesuffix(".pem") + ".pub.pem")
    for p in (private, public):
        if p.exists():
            raise EvidenceError(f"{str(p)!r} exists; certkit keygen never overwrites a key: choose another name", usage=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public, keyid(key.public_key())


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64 (DSSE: verifiers accept either), padding optional; anything else raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


# ------------------------------------------------------------------ the statement

def _junit_candidates(folder: Path, doc: dict) -> list[Path]:
    """Where the run's JUnit file may be: the ``--junitxml`` / ``--junit-xml`` of the run's command (by that path from
    here, from the folder's parent, or its name in the folder), else the only ``*.xml`` in the folder."""
    args = [str(a) for a in (doc.get("run", {}).get("args") or [])]
    named = []
    for i, arg in enumerate(args):
        for flag in ("--junitxml", "--junit-xml"):
            if arg.startswith(flag + "="):
                named.append(arg.split("=", 1)[1])
            elif arg == flag and i + 1 < len(args):
                named.append(args[i + 1])
    out = []
    for name in named:
        out += [Path(name), folder.parent / name, folder / Path(name).name]
    if not named:
        out += sorted(folder.glob("*.xml"))[:1] if len(list(folder.glob("*.xml"))) == 1 else []
    return out


def _inside(path: Path, folder: Path) -> str | None:
    """``path`` as a POSIX path relative to ``folder``, or None where it lies outside."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def subjects(folder: str | Path, junit: str | Path | None = None) -> list[tuple[str, Path]]:
    """The files the attestation signs, as (name in the folder, path): ``results.json`` (required: a usage
    :class:`EvidenceError` without it), ``audit.html`` and ``history.jsonl`` where written, and the JUnit file: ``junit``
    when given (it must lie inside the folder), else the one the run's ``--junitxml`` wrote, found as
    :func:`_junit_candidates` says, where it lies inside the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvidenceError(f"{str(folder)!r} is not a folder; give the folder a certkit run wrote (reports/)", usage=True)
    results = folder / RESULTS
    try:
        doc = load_results(results, "results", check_body=False)
    except ResultsError as exc:
        raise EvidenceError(f"{exc}; attest the folder the run wrote its results.json into", usage=True) from None
    out = [(RESULTS, results)] + [(name, folder / name) for name in (REPORT, HISTORY) if (folder / name).is_file()]
    if junit is not None:
        path = Path(junit)
        name = _inside(path, folder)
        if not path.is_file():
            raise EvidenceError(f"JUnit file {str(path)!r} does not exist", usage=True)
        if name is None:
            raise EvidenceError(f"JUnit file {str(path)!r} is not inside {str(folder)!r}: write it there "
                                f"(--junitxml={folder.as_posix()}/junit.xml) so the bundle holds it", usage=True)
        out.append((name, path))
    else:
        for path in _junit_candidates(folder, doc):
            name = _inside(path, folder)
            if path.is_file() and name is not None:
                out.append((name, path))
                break
    return out


def _history_head(path: Path) -> dict:
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    return {"lines": len(lines), "lastLineSha256": line_digest(lines[-1]) if lines else None}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def predicate(doc: dict, history: Path | None = None) -> dict:
    """certkit's predicate (:data:`PREDICATE_TYPE`) for the results document ``doc``: the gate (``verdict``, ``reason``,
    ``settings``), the counts (the summary less the gate), the requirement settings and seed, the model and oracle
    fingerprints, the case files' digests (``testData.sources`` where the run recorded them) and a digest of the cases'
    content hashes, the baseline compared with, the certkit version and git commit of the run (``run.git``; the attesting
    checkout's commit where the run had none), the run's id, times, command and packages, the signed history's length
    and last line (``history``), and when it was attested (``attestedAt``, RFC 3339 UTC)."""
    from . import __version__

    run, summary = doc.get("run", {}), doc.get("summary", {})
    case_hashes = sorted(doc.get("cases", {}))
    test_data = doc.get("test_data") or {}
    baseline = doc.get("baseline")
    git = dict(run.get("git") or {})
    if not git.get("commit"):
        git = {"commit": _git_commit(), "dirty": None, "from": "the attesting checkout (the run recorded none)"}
    return {
        "gate": {"verdict": summary.get("gate"), "reason": summary.get("gate_reason"), "settings": run.get("gate")},
        "counts": {k: v for k, v in summary.items() if k not in ("gate", "gate_reason")},
        "settings": run.get("settings"),
        "seed": run.get("seed"),
        "models": run.get("models"),
        "oracles": run.get("oracles"),
        "testData": {"sources": test_data.get("sources"), "cases": test_data.get("cases")} if test_data else None,
        "cases": {"count": len(case_hashes), "sha256": hashlib.sha256("\n".join(case_hashes).encode()).hexdigest()},
        "baseline": None if not baseline else {
            "path": baseline.get("path"), **{k: len(baseline.get(k) or []) for k in ("regressions", "improvements", "removed", "changed")},
            "fingerprints": baseline.get("fingerprints")},
        "certkitVersion": run.get("certkit_version"),
        "attestedWith": __version__,
        "git": git,
        "run": {"runId": run.get("run_id"), "startedAt": run.get("started"), "finishedAt": run.get("finished"),
                "durationS": run.get("duration_s"), "args": run.get("args"), "python": run.get("python"),
                "platform": run.get("platform"), "packages": run.get("packages"), "shard": run.get("shard"),
                "mergedFrom": run.get("merged_from")},
        "history": _history_head(history) if history is not None else None,
        "attestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def statement(folder: str | Path, junit: str | Path | None = None) -> dict:
    """The in-toto Statement v1 of the folder: its :func:`subjects` with their SHA-256 and the :func:`predicate` of its
    results.json."""
    files = subjects(folder, junit)
    doc = load_results(files[0][1], "results", check_body=False)
    history = next((path for name, path in files if name == HISTORY), None)
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": name, "digest": {"sha256": file_digest(path)}} for name, path in files],
            "predicateType": PREDICATE_TYPE,
            "predicate": predicate(doc, history)}


def sign(body: bytes, private_key, payload_type: str = PAYLOAD_TYPE) -> dict:
    """The DSSE envelope of ``body``: one Ed25519 signature over :func:`pae`, with the key's :func:`keyid`."""
    signature = private_key.sign(pae(payload_type, body))
    return {"payload": base64.b64encode(body).decode("ascii"), "payloadType": payload_type,
            "signatures": [{"keyid": keyid(private_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}]}


def attest(folder: str | Path, key: str | Path | None, junit: str | Path | None = None,
           statement_out: str | Path | None = None) -> tuple[Path | None, dict]:
    """Sign the folder: its :func:`statement`, serialized as compact JSON with sorted keys, in a DSSE envelope signed with
    the private key at ``key``, written to ``folder/attestation.dsse.json`` (atomically). ``statement_out`` also writes
    the statement itself (for signing it elsewhere, e.g. keyless with sigstore); ``key`` None writes only that. Returns
    the envelope's path (None without a key) and the statement."""
    from .results import write_atomically

    private = load_private_key(key) if key is not None else None
    st = statement(folder, junit)
    body = json.dumps(st, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if statement_out is not None:
        write_atomically(statement_out, json.dumps(st, indent=2, sort_keys=True) + "\n")
    if private is None:
        return None, st
    out = Path(folder) / ENVELOPE
    write_atomically(out, json.dumps(sign(body, private), indent=2) + "\n")
    return out, st


# ------------------------------------------------------------------ verification

def check_history(path: str | Path, signed: dict | None = None) -> str:
    """Walk the history chain at ``path``: every line written since the chain began has ``prev`` = the SHA-256 of the
    line before it (``null`` on the file's first line). With ``signed`` (the predicate's ``history``), the file must also
    hold the signed number of lines, its last signed line unchanged. Returns one line saying what was checked (lines
    written before the chain are reported as unchained); a removed, edited, inserted or reordered line raises
    :class:`EvidenceError` naming the file and the line where the chain breaks."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise EvidenceError(f"{path}: missing (the attestation signed it); restore the file the run wrote")
    numbered = [(i, line) for i, line in enumerate(path.read_bytes().split(b"\n"), 1) if line.strip()]
    unchained, previous, chained = 0, None, 0
    for number, line in numbered:
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EvidenceError(f"{path} line {number}: not JSON: the line was edited or cut short") from None
        if not isinstance(entry, dict):
            raise EvidenceError(f"{path} line {number}: not a history entry (a JSON object): the line was edited")
        if "prev" not in entry:
            if chained:
                raise EvidenceError(f"{path} line {number}: has no 'prev' although the lines before it are chained: the line "
                                    "was edited or inserted")
            unchained += 1
        else:
            expected = line_digest(previous[1]) if previous else None
            if entry["prev"] != expected:
                if previous is None:
                    why = "is not null on the file's first line: the lines before it were removed"
                else:
                    why = (f"is not the SHA-256 of line {previous[0]}: line {previous[0]} was edited, or a line between them was "
                           "removed, or the lines were reordered")
                raise EvidenceError(f"{path} line {number}: 'prev' {why}")
            chained += 1
        previous = (number, line)
    if signed:
        count, last = signed.get("lines"), signed.get("lastLineSha256")
        if isinstance(count, int) and count > 0:
            if len(numbered) < count:
                raise EvidenceError(f"{path}: {len(numbered)} line(s), the attestation signed {count}: line(s) "
                                    f"{len(numbered) + 1}-{count} were removed" if len(numbered) + 1 < count else
                                    f"{path}: {len(numbered)} line(s), the attestation signed {count}: line {count} was removed")
            number, line = numbered[count - 1]
            if line_digest(line) != last:
                raise EvidenceError(f"{path} line {number}: not the line that was signed (the last signed line): it was edited")
            if len(numbered) > count:
                raise EvidenceError(f"{path}: {len(numbered) - count} line(s) appended after it was signed (from line "
                                    f"{numbered[count][0]}): attest the folder again after each run")
    old = f" ({unchained} older line(s) written before the chain: unchained)" if unchained else ""
    return f"{name}: {chained} chained line(s), each 'prev' the SHA-256 of the line before{old}"


def _load_envelope(path: Path) -> tuple[str, bytes, list[tuple[str | None, bytes]]]:
    """The envelope's payload type, payload and (keyid, signature) pairs; a file that is not a DSSE envelope raises
    :class:`EvidenceError` naming it and the field."""
    if not path.is_file():
        raise EvidenceError(f"{path}: missing; sign the folder first (certkit attest DIR --key KEY.pem)")
    try:
        env = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"{path}: not JSON ({getattr(exc, 'msg', exc)}): the envelope was cut short or edited") from None
    if not isinstance(env, dict):
        raise EvidenceError(f"{path}: not a DSSE envelope (a JSON object)")
    for field in ("payloadType", "payload", "signatures"):
        if field not in env:
            raise EvidenceError(f"{path}: no '{field}': not a DSSE envelope, or it was edited")
    if not isinstance(env["payloadType"], str) or not isinstance(env["payload"], str):
        raise EvidenceError(f"{path}: 'payloadType' and 'payload' must be strings")
    if env["payloadType"] != PAYLOAD_TYPE:
        raise EvidenceError(f"{path}: payloadType is {env['payloadType']!r}, not {PAYLOAD_TYPE!r} (an in-toto statement)")
    try:
        body = _b64decode(env["payload"])
    except (ValueError, binascii.Error):
        raise EvidenceError(f"{path}: 'payload' is not base64: the envelope was edited") from None
    sigs = env["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise EvidenceError(f"{path}: 'signatures' must be a non-empty list")
    out = []
    for i, entry in enumerate(sigs):
        if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
            raise EvidenceError(f"{path}: signatures[{i}] has no 'sig' string")
        try:
            out.append((entry.get("keyid"), _b64decode(entry["sig"])))
        except (ValueError, binascii.Error):
            raise EvidenceError(f"{path}: signatures[{i}].sig is not base64: the envelope was edited") from None
    return env["payloadType"], body, out


def _safe_name(name, envelope: Path) -> str:
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or ".." in Path(name).parts:
        raise EvidenceError(f"{envelope}: subject name {name!r} is not a path inside the folder")
    return name


def verify(folder: str | Path, public_key_path: str | Path) -> list[str]:
    """Verify the folder's evidence with the Ed25519 public key at ``public_key_path``, in this order: the envelope
    (a DSSE envelope of an in-toto statement), a signature over its PAE by this key, the statement (in-toto v1, certkit's
    predicate type), every subject's SHA-256 (the history's by :func:`check_history` first, which names the line), and
    the history chain. Returns one line per thing checked; the first failure raises :class:`EvidenceError`: one line
    naming the file (and line), ``usage`` set for a key file or folder that cannot be used."""
    folder = Path(folder)
    key = load_public_key(public_key_path)
    if not folder.is_dir():
        raise EvidenceError(f"{str(folder)!r} is not a folder; give the folder that holds {ENVELOPE}", usage=True)
    envelope = folder / ENVELOPE
    payload_type, body, signatures = _load_envelope(envelope)
    from cryptography.exceptions import InvalidSignature

    mine = keyid(key)
    message = pae(payload_type, body)
    good = None
    for kid, sig in signatures:
        try:
            key.verify(sig, message)
            good = kid
            break
        except InvalidSignature:
            continue
    if good is None:
        ids = sorted({str(k) for k, _ in signatures if k})
        if ids and mine not in ids:
            raise EvidenceError(f"{envelope}: not signed by the key in {public_key_path} (keyid {mine[:16]}...; the envelope names "
                                f"{', '.join(i[:16] + '...' for i in ids)}): a wrong key, or the envelope was re-signed")
        raise EvidenceError(f"{envelope}: the signature does not verify with {public_key_path}: the payload or the signature "
                            "was changed after signing")
    lines = [f"ok  {ENVELOPE}: Ed25519 signature over the DSSE PAE of {PAYLOAD_TYPE}, key {mine[:16]}... ({public_key_path})"]
    try:
        st = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EvidenceError(f"{envelope}: the signed payload is not JSON: not an in-toto statement") from None
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE or not isinstance(st.get("subject"), list) or not st["subject"]:
        raise EvidenceError(f"{envelope}: the signed payload is not an in-toto Statement v1 (_type {STATEMENT_TYPE}, subjects)")
    if st.get("predicateType") != PREDICATE_TYPE:
        raise EvidenceError(f"{envelope}: predicateType is {st.get('predicateType')!r}, not certkit's {PREDICATE_TYPE}")
    signed_history = (st.get("predicate") or {}).get("history")
    lines.append(f"ok  {ENVELOPE}: in-toto Statement v1, predicate {PREDICATE_TYPE}, {len(st['subject'])} subject(s)")
    history_checked = False
    for subject in st["subject"]:
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict) or "sha256" not in subject["digest"]:
            raise EvidenceError(f"{envelope}: a subject without a sha256 digest: {subject!r}")
        name = _safe_name(subject.get("name"), envelope)
        path = folder / name
        if not path.is_file():
            raise EvidenceError(f"{path}: missing (the attestation signed it); restore the file the run wrote")
        if name == HISTORY:
            lines.append(f"ok  {check_history(path, signed_history)}")
            history_checked = True
        actual = file_digest(path)
        if actual != subject["digest"]["sha256"]:
            raise EvidenceError(f"{path}: sha256 {actual[:16]}... is not the signed {str(subject['digest']['sha256'])[:16]}...: "
                                "the file was changed after it was signed")
        lines.append(f"ok  {name}: sha256 {actual[:16]}... as signed")
    if not history_checked and (folder / HISTORY).is_file():
        lines.append(f"ok  {check_history(folder / HISTORY)} (not signed: written after the attestation, or the run had none)")
    pred = st.get("predicate") or {}
    gate = (pred.get("gate") or {}).get("verdict")
    lines.append(f"verified: run {(pred.get('run') or {}).get('runId')}, gate {gate}, attested {pred.get('attestedAt')}")
    return lines
