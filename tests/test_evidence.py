"""The evidence bundle (certkit/evidence.py, ``certkit attest`` / ``verify`` / ``keygen``) and the history chain
(certkit/results.py): a real run's folder signed and verified, the envelope checked by an independent reading of the
DSSE and in-toto specifications, and every kind of tampering refused with one line naming the file (and line)."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from certkit.cli import main
from certkit.evidence import ENVELOPE, PREDICATE_TYPE, pae
from certkit.results import append_history, load_results, read_history
from certkit.testdata import file_digest
from tests.plugin.project import CONFTEST, TESTS


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A project run once (certkit's plugin writes reports/: results, report, history, and pytest's JUnit file), two more
    runs' lines appended to its history with append_history, a key pair from `certkit keygen`, the folder attested.
    Each test copies the folder (``bundle``) before it changes anything."""
    root = tmp_path_factory.mktemp("evidence")
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_suite.py").write_text(TESTS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
                    "--junitxml=reports/junit.xml", "--certkit-n-max", "2000", "--certkit-cache-dir", "none"],
                   cwd=root, env=env, capture_output=True, check=False, timeout=300)
    reports = root / "reports"
    assert (reports / "results.json").is_file() and (reports / "junit.xml").is_file()
    doc = load_results(reports / "results.json")
    for _ in range(2):
        append_history(reports / "history.jsonl", doc)
    assert main(["keygen", str(root / "key.pem")]) == 0
    assert main(["attest", str(reports), "--key", str(root / "key.pem")]) == 0
    return root


@pytest.fixture
def bundle(signed, tmp_path):
    """A copy of the signed folder (``bundle / "reports"``) and its public key (``bundle / "key.pub.pem"``)."""
    shutil.copytree(signed / "reports", tmp_path / "reports")
    shutil.copy(signed / "key.pub.pem", tmp_path / "key.pub.pem")
    return tmp_path


def verify(bundle, capsys, key=None):
    """`certkit verify` on the copy: (exit status, standard output, standard error)."""
    capsys.readouterr()
    rc = main(["verify", str(bundle / "reports"), "--key", str(key or bundle / "key.pub.pem")])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(bundle, capsys, code, *phrases, key=None):
    """Verify refuses the copy: exit ``code``, nothing on standard output, ONE line on standard error holding each phrase."""
    rc, out, err = verify(bundle, capsys, key)
    assert (rc, out) == (code, ""), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    for phrase in phrases:
        assert phrase in err, err
    return err


def envelope(bundle):
    return json.loads((bundle / "reports" / ENVELOPE).read_text())


def write_envelope(bundle, env):
    (bundle / "reports" / ENVELOPE).write_text(json.dumps(env))


def history_lines(bundle):
    return (bundle / "reports" / "history.jsonl").read_bytes().split(b"\n")[:-1]


def write_history(bundle, lines):
    (bundle / "reports" / "history.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


# ------------------------------------------------------------------ the round trip

def test_a_signed_run_verifies_one_line_per_check(bundle, capsys):
    rc, out, err = verify(bundle, capsys)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"ok  {ENVELOPE}: Ed25519 signature over the DSSE PAE of application/vnd.in-toto+json")
    for name in ("results.json", "audit.html", "history.jsonl", "junit.xml"):
        assert any(line.startswith(f"ok  {name}: sha256 ") for line in lines), out
    assert "ok  history.jsonl: 3 chained line(s)" in out and "unchained" not in out
    assert lines[-1].startswith("verified: run ") and "gate failed" in lines[-1]


def test_the_statement_is_in_toto_v1_with_certkits_predicate(bundle):
    reports = bundle / "reports"
    env = envelope(bundle)
    statement = json.loads(base64.b64decode(env["payload"]))
    doc = json.loads((reports / "results.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1" and statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [{"name": name, "digest": {"sha256": file_digest(reports / name)}}
                                    for name in ("results.json", "audit.html", "history.jsonl", "junit.xml")]
    pred = statement["predicate"]
    assert pred["gate"] == {"verdict": doc["summary"]["gate"], "reason": doc["summary"]["gate_reason"], "settings": doc["run"]["gate"]}
    assert pred["counts"]["requirements"] == doc["summary"]["requirements"] == 8
    assert (pred["models"], pred["oracles"], pred["seed"]) == (doc["run"]["models"], doc["run"]["oracles"], doc["run"]["seed"])
    assert pred["settings"] == doc["run"]["settings"] and pred["certkitVersion"] == doc["run"]["certkit_version"]
    assert pred["run"]["runId"] == doc["run"]["run_id"] and pred["cases"]["count"] == len(doc["cases"])
    assert pred["history"]["lines"] == 3
    assert "commit" in pred["git"]


def test_an_independent_reading_of_the_specs_accepts_the_envelope(bundle):
    """DSSE protocol.md: PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, LEN the ASCII decimal byte
    length; the signature is over PAE(UTF8(payloadType), payload). Checked here with cryptography alone, not certkit's code."""
    env = envelope(bundle)
    assert set(env) == {"payload", "payloadType", "signatures"} and env["payloadType"] == "application/vnd.in-toto+json"
    body, kind = base64.b64decode(env["payload"], validate=True), env["payloadType"].encode("utf-8")
    message = b" ".join([b"DSSEv1", str(len(kind)).encode("ascii"), kind, str(len(body)).encode("ascii"), body])
    public = serialization.load_pem_public_key((bundle / "key.pub.pem").read_bytes())
    [signature] = env["signatures"]
    public.verify(base64.b64decode(signature["sig"], validate=True), message)  # raises InvalidSignature if not
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signature["keyid"] == hashlib.sha256(raw).hexdigest()
    assert message == pae(env["payloadType"], body)


def test_pae_matches_the_dsse_test_vector():
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"  # lengths count bytes, not characters


def test_url_safe_base64_is_accepted_as_dsse_requires(bundle, capsys):
    env = envelope(bundle)
    env["payload"] = base64.urlsafe_b64encode(base64.b64decode(env["payload"])).decode().rstrip("=")
    write_envelope(bundle, env)
    assert verify(bundle, capsys)[0] == 0


def test_the_history_lines_carry_the_run_and_each_requirements_status(bundle):
    doc = json.loads((bundle / "reports" / "results.json").read_text())
    first, *rest = [json.loads(line) for line in history_lines(bundle)]
    assert first["prev"] is None and first["run_id"] == doc["run"]["run_id"] and first["gate"] == doc["summary"]["gate"]
    assert first["seed"] == doc["run"]["seed"] and first["oracles"] == doc["run"]["oracles"]
    assert first["statuses"] == {r["nodeid"]: r["status"] for r in doc["results"]}
    lines = history_lines(bundle)
    assert [e["prev"] for e in rest] == [hashlib.sha256(line).hexdigest() for line in lines[:2]]


# ------------------------------------------------------------------ bad input: one line each, naming the file

def test_a_wrong_key_is_named(bundle, capsys):
    assert main(["keygen", str(bundle / "other.pem")]) == 0
    refused(bundle, capsys, 1, f"{ENVELOPE}: not signed by the key in", "other.pub.pem", key=bundle / "other.pub.pem")


def test_a_truncated_envelope(bundle, capsys):
    path = bundle / "reports" / ENVELOPE
    path.write_bytes(path.read_bytes()[:200])
    refused(bundle, capsys, 1, f"{ENVELOPE}: not JSON", "cut short or edited")


@pytest.mark.parametrize("field", ["payload", "payloadType", "signatures"])
def test_an_envelope_without_a_field(bundle, capsys, field):
    env = envelope(bundle)
    del env[field]
    write_envelope(bundle, env)
    refused(bundle, capsys, 1, f"{ENVELOPE}: no '{field}'")


def test_an_envelope_whose_payload_is_not_base64(bundle, capsys):
    env = envelope(bundle)
    env["payload"] = env["payload"][:-7] + "!@#$%^&"
    write_envelope(bundle, env)
    refused(bundle, capsys, 1, f"{ENVELOPE}: 'payload' is not base64")


def test_an_envelope_whose_signature_is_not_base64(bundle, capsys):
    env = envelope(bundle)
    env["signatures"][0]["sig"] = "***"
    write_envelope(bundle, env)
    refused(bundle, capsys, 1, f"{ENVELOPE}: signatures[0].sig is not base64")


def test_an_envelope_with_another_payload_type(bundle, capsys):
    env = envelope(bundle)
    env["payloadType"] = "application/json"
    write_envelope(bundle, env)
    refused(bundle, capsys, 1, f"{ENVELOPE}: payloadType is 'application/json', not 'application/vnd.in-toto+json'")


def test_an_edited_statement_breaks_the_signature(bundle, capsys):
    env = envelope(bundle)
    statement = json.loads(base64.b64decode(env["payload"]))
    statement["predicate"]["gate"]["verdict"] = "passed"
    env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    write_envelope(bundle, env)
    refused(bundle, capsys, 1, f"{ENVELOPE}: the signature does not verify", "changed after signing")


def test_a_missing_envelope(bundle, capsys):
    (bundle / "reports" / ENVELOPE).unlink()
    refused(bundle, capsys, 1, f"{ENVELOPE}: missing", "certkit attest")


@pytest.mark.parametrize("name", ["results.json", "audit.html", "junit.xml"])
def test_one_changed_byte_in_a_file(bundle, capsys, name):
    path = bundle / "reports" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    refused(bundle, capsys, 1, f"reports/{name}: sha256 ", "is not the signed", "changed after it was signed")


@pytest.mark.parametrize("name", ["results.json", "audit.html", "history.jsonl", "junit.xml"])
def test_a_missing_file(bundle, capsys, name):
    (bundle / "reports" / name).unlink()
    refused(bundle, capsys, 1, f"reports/{name}: missing (the attestation signed it)")


def test_one_changed_byte_in_the_last_history_line(bundle, capsys):
    lines = history_lines(bundle)
    lines[2] = lines[2].replace(b'"gate": "failed"', b'"gate": "passed"')
    write_history(bundle, lines)
    refused(bundle, capsys, 1, "history.jsonl line 3: not the line that was signed", "edited")


def test_an_edited_history_line(bundle, capsys):
    lines = history_lines(bundle)
    lines[0] = lines[0].replace(b'"gate": "failed"', b'"gate": "passed"')
    write_history(bundle, lines)
    refused(bundle, capsys, 1, "history.jsonl line 2: 'prev' is not the SHA-256 of line 1", "line 1 was edited")


def test_a_removed_history_line(bundle, capsys):
    lines = history_lines(bundle)
    write_history(bundle, [lines[0], lines[2]])
    refused(bundle, capsys, 1, "history.jsonl line 2: 'prev' is not the SHA-256 of line 1", "removed")


def test_a_removed_first_history_line(bundle, capsys):
    write_history(bundle, history_lines(bundle)[1:])
    refused(bundle, capsys, 1, "history.jsonl line 1: 'prev' is not null on the file's first line", "removed")


def test_a_removed_last_history_line(bundle, capsys):
    write_history(bundle, history_lines(bundle)[:2])
    refused(bundle, capsys, 1, "history.jsonl: 2 line(s), the attestation signed 3: line 3 was removed")


def test_reordered_history_lines(bundle, capsys):
    a, b, c = history_lines(bundle)
    write_history(bundle, [a, c, b])
    refused(bundle, capsys, 1, "history.jsonl line 2: 'prev' is not the SHA-256 of line 1", "reordered")


def test_a_history_line_appended_after_signing(bundle, capsys):
    append_history(bundle / "reports" / "history.jsonl", load_results(bundle / "reports" / "results.json"))
    refused(bundle, capsys, 1, "history.jsonl: 1 line(s) appended after it was signed (from line 4)", "attest the folder again")


def test_an_unchained_line_inserted_between_chained_ones(bundle, capsys):
    lines = history_lines(bundle)
    old = json.loads(lines[1])
    del old["prev"]
    write_history(bundle, [lines[0], json.dumps(old, sort_keys=True).encode(), lines[2]])
    refused(bundle, capsys, 1, "history.jsonl line 2: has no 'prev' although the lines before it are chained")


def test_a_key_file_that_is_not_pem(bundle, capsys):
    (bundle / "note.txt").write_text("not a key\n")
    refused(bundle, capsys, 2, "public key file", "note.txt", "is not a PEM file", key=bundle / "note.txt")


def test_a_key_that_is_not_ed25519(bundle, capsys):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (bundle / "rsa.pub.pem").write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    refused(bundle, capsys, 2, "rsa.pub.pem", "RSAPublicKey key, not Ed25519", key=bundle / "rsa.pub.pem")


def test_a_private_key_given_to_verify(bundle, capsys, signed):
    refused(bundle, capsys, 2, "key.pem", "holds a private key; give the public one", key=signed / "key.pem")


def test_a_missing_key_file(bundle, capsys):
    refused(bundle, capsys, 2, "public key file", "none.pem", "does not exist", key=bundle / "none.pem")


# ------------------------------------------------------------------ attest and keygen

def one_line_error(capsys, argv, code, *phrases):
    capsys.readouterr()
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert err.count("\n") == 1, err
    for phrase in phrases:
        assert phrase in err, err


def test_attest_needs_a_results_folder(tmp_path, capsys, signed):
    one_line_error(capsys, ["attest", str(tmp_path), "--key", str(signed / "key.pem")], 2, "results.json", "does not exist")


def test_attest_refuses_a_public_key(bundle, capsys):
    one_line_error(capsys, ["attest", str(bundle / "reports"), "--key", str(bundle / "key.pub.pem")], 2,
                   "key.pub.pem", "holds a public key")


def test_keygen_never_overwrites_a_key(signed, capsys):
    one_line_error(capsys, ["keygen", str(signed / "key.pem")], 2, "key.pem", "exists")


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path):
    assert main(["keygen", str(tmp_path / "k.pem")]) == 0
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub.pem").read_bytes()


def test_an_encrypted_key_signs_with_its_passphrase(bundle, capsys, monkeypatch):
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"s3cret"))
    (bundle / "enc.pem").write_bytes(pem)
    (bundle / "enc.pub.pem").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.delenv("CERTKIT_KEY_PASSWORD", raising=False)
    one_line_error(capsys, ["attest", str(bundle / "reports"), "--key", str(bundle / "enc.pem")], 2, "enc.pem", "is encrypted")
    monkeypatch.setenv("CERTKIT_KEY_PASSWORD", "s3cret")
    assert main(["attest", str(bundle / "reports"), "--key", str(bundle / "enc.pem")]) == 0
    assert verify(bundle, capsys, key=bundle / "enc.pub.pem")[0] == 0


def test_the_statement_alone_for_another_signer(bundle, capsys):
    out = bundle / "statement.json"
    assert main(["attest", str(bundle / "reports"), "--statement", str(out)]) == 0
    statement = json.loads(out.read_text())
    signed = json.loads(base64.b64decode(envelope(bundle)["payload"]))
    assert statement["subject"] == signed["subject"] and statement["predicateType"] == PREDICATE_TYPE


def test_a_junit_file_outside_the_folder_is_refused_by_name(bundle, capsys):
    (bundle / "junit.xml").write_text("<testsuites/>")
    one_line_error(capsys, ["attest", str(bundle / "reports"), "--key", str(bundle / "none.pem"), "--junit", str(bundle / "junit.xml")],
                   2, "none.pem", "does not exist")  # the key is read first
    assert main(["keygen", str(bundle / "k.pem")]) == 0
    one_line_error(capsys, ["attest", str(bundle / "reports"), "--key", str(bundle / "k.pem"), "--junit", str(bundle / "junit.xml")],
                   2, "junit.xml", "is not inside", "--junitxml=")


# ------------------------------------------------------------------ lines written before the chain

def test_lines_written_before_the_chain_still_read_and_are_reported_unchained(tmp_path, bundle, capsys):
    history = bundle / "reports" / "history.jsonl"
    old = {"finished": "2026-01-01T00:00:00Z", "commit": None, "requirements": 3, "certified": 3, "pass_rate": 1.0,
           "mean_radius": 0.2, "samples": 100, "models": ["m"]}
    history.write_text(json.dumps(old) + "\n" + json.dumps(old))  # as an older certkit wrote them (the last one cut short)
    entry = append_history(history, load_results(bundle / "reports" / "results.json"))
    lines = history.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 3 and entry["prev"] == hashlib.sha256(lines[1]).hexdigest()
    assert [e.get("prev", "absent") for e in read_history(history)] == ["absent", "absent", entry["prev"]]
    assert main(["keygen", str(tmp_path / "k2.pem")]) == 0
    assert main(["attest", str(bundle / "reports"), "--key", str(tmp_path / "k2.pem")]) == 0
    rc, out, err = verify(bundle, capsys, key=tmp_path / "k2.pub.pem")
    assert rc == 0, err
    assert ("history.jsonl: 1 chained line(s), each 'prev' the SHA-256 of the line before "
            "(2 older line(s) written before the chain: unchained)") in out


def test_a_mistyped_chain_field_is_refused_before_a_run(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({"finished": "x", "requirements": 1, "certified": 1, "pass_rate": 1.0, "mean_radius": None,
                                   "prev": 7}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: 'prev' is 7"):
        read_history(history)


@pytest.mark.parametrize("tail", [b"\n", b"\n\n  \n", b""], ids=["newline", "blank lines after it", "no newline"])
def test_the_chain_links_to_the_last_line_however_long(tmp_path, tail, signed):
    """The line before is found by reading backwards in blocks: a last line longer than a block (64 KiB), blank lines
    after it, or no newline at its end still give its exact bytes."""
    history = tmp_path / "history.jsonl"
    long = json.dumps({"finished": "x", "requirements": 1, "certified": 1, "pass_rate": 1.0, "mean_radius": None,
                       "pad": "z" * 200_000}).encode()
    history.write_bytes(b'{"finished": "y"}\n' + long + tail)
    entry = append_history(history, load_results(signed / "reports" / "results.json"))
    assert entry["prev"] == hashlib.sha256(long).hexdigest()
    assert history.read_bytes().startswith(b'{"finished": "y"}\n' + long + (tail or b"\n"))
