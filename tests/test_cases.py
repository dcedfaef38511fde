"""Cases (certkit/cases.py): case files in every format, read as written; images to (C, H, W) in [0, 1], EXIF
orientation applied, 16-bit kept to scale. Malformed case files and images are in the bad-input matrix
(test_bad_inputs.py)."""

import numpy as np

from certkit import Case, load_cases


def _write_png(path):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)


def test_cases_load_from_every_format(tmp_path):
    import certkit

    _write_png(tmp_path / "ok.png")
    (tmp_path / "c.jsonl").write_text('{"id": "a", "prompt": "hi", "image": "ok.png", "expected": "bright", "kind": "x"}\n')
    (tmp_path / "c.yaml").write_text("cases:\n- id: a\n  prompt: hi\n  image: ok.png\n  expected: bright\n  kind: x\n")
    (tmp_path / "c.csv").write_text("id,prompt,image,expected,kind\na,hi,ok.png,bright,x\n")
    loaded = [certkit.load_cases(tmp_path / f) for f in ("c.jsonl", "c.yaml", "c.csv")]
    assert all(len(c) == 1 and c[0].id == "a" and c[0].expected == "bright" and c[0].meta == {"kind": "x"} for c in loaded)
    assert loaded[0][0].content_hash == loaded[1][0].content_hash == loaded[2][0].content_hash


def test_png_loads_to_chw_in_unit_range(tmp_path):
    from PIL import Image

    arr = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    c = Case("x", "hi", tmp_path / "x.png")
    assert c.shape == (3, 5, 7) and np.allclose(c.image, arr.transpose(2, 0, 1) / 255.0)


def _png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


def test_case_files_are_read_as_written(tmp_path):
    """A quoted CSV prompt keeps its newline; a JSONL prompt keeps U+2028; a YAML id stays as typed (010 is not 8)."""
    _png(tmp_path / "ok.png", np.full((8, 8, 3), 200, np.uint8))
    (tmp_path / "cases.csv").write_text('id,prompt,image\nx,"line one\nline two",ok.png\n')
    assert [c.prompt for c in load_cases(tmp_path / "cases.csv")] == ["line one\nline two"]
    (tmp_path / "cases.jsonl").write_text('{"id": "j", "prompt": "a\u2028b", "image": "ok.png"}\n', encoding="utf-8")
    assert [c.prompt for c in load_cases(tmp_path / "cases.jsonl")] == ["a\u2028b"]
    (tmp_path / "cases.yaml").write_text("- id: 010\n  prompt: hi\n  image: ok.png\n- id: 7\n  prompt: ho\n  image: ok.png\n")
    assert [c.id for c in load_cases(tmp_path / "cases.yaml")] == ["010", "7"]


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with an orientation tag is read as a viewer shows it."""
    from PIL import Image

    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top-left red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    case = Case("t", "hi", tmp_path / "turned.png")
    assert case.shape == (3, 3, 2)
    assert case.image[0, 0, 1] == 1.0  # the stored top-left pixel is now top-right


def test_sixteen_bit_png_keeps_its_scale(tmp_path):
    """16-bit greyscale is divided by 65535 (converting it to 8-bit RGB would clip it to white)."""
    _png(tmp_path / "g16.png", (np.arange(16).reshape(4, 4) * 4000).astype(np.uint16))
    case = Case("g", "hi", tmp_path / "g16.png")
    assert case.shape == (1, 4, 4) and np.isclose(case.image.max(), 60000 / 65535)


def test_cases_are_equal_when_id_expected_prompt_and_pixels_are():
    """``==`` and ``hash`` agree and read the content (meta aside), so cases can sit in sets and dict keys."""
    image = np.zeros((3, 4, 4), dtype=np.float32)
    a, same = Case("a", "pick up", image), Case("a", "pick up", image.copy(), meta={"source": "other file"})
    others = [Case("b", "pick up", image), Case("a", "put down", image), Case("a", "pick up", image + 0.5),
              Case("a", "pick up", image, expected="refused")]
    assert a == same and hash(a) == hash(same) and len({a, same}) == 1
    assert all(a != other for other in others) and len({a, *others}) == 5
    assert a != "a" and (a == object()) is False


def test_a_lazy_image_is_read_on_first_use_and_checked_then():
    """A LazyImage is not read when the case is made, nor by str, id or == with itself; once read it is the same case
    as with the pixels given (equal, same content hash); a bad image is refused in one line naming where it is from."""
    import pytest

    from certkit.cases import CaseError, LazyImage

    pixels = np.full((3, 4, 4), 0.25, np.float32)
    reads = []
    lazy = Case("a", "pick up", LazyImage(lambda: reads.append(1) or pixels, "cases.parquet: row 0"))
    assert str(lazy) == "a" and lazy == lazy and reads == []
    assert lazy == Case("a", "pick up", pixels) and lazy.content_hash == Case("a", "pick up", pixels).content_hash and reads == [1]
    assert lazy.shape == (3, 4, 4) and reads == [1]  # kept while among the last read
    bad = Case("b", "pick up", LazyImage(lambda: pixels * 8, "cases.parquet: row 1 (id 'b')"))
    with pytest.raises(CaseError, match=r"^cases.parquet: row 1 \(id 'b'\): case 'b': image pixels must lie in \[0, 1\], got \[2, 2\]"):
        bad.image
    with pytest.raises(AttributeError):
        Case("c", "x", pixels).nothing


def test_fields_map_a_case_files_own_names(tmp_path):
    """fields= works for JSONL/YAML/CSV too; a field it names that a row lacks is named with it."""
    import pytest

    from certkit.cases import CaseError

    _write_png(tmp_path / "ok.png")
    (tmp_path / "c.csv").write_text("name,question,picture,label,kind\na,hi,ok.png,bright,x\n")
    case, = load_cases(tmp_path / "c.csv", fields={"id": "name", "prompt": "question", "image": "picture", "expected": "label"})
    assert (case.id, case.prompt, case.expected, case.meta) == ("a", "hi", "bright", {"kind": "x"})
    with pytest.raises(CaseError, match=r"c.csv:2: case is missing required field\(s\) prompt \(field 'text', named by fields=\)$"):
        load_cases(tmp_path / "c.csv", fields={"id": "name", "prompt": "text", "image": "picture"})


def test_case_files_are_recorded_with_their_digest(tmp_path):
    """Every case file read is recorded (certkit.testdata) with the SHA-256 of its bytes, its rows and characteristics."""
    import hashlib

    from certkit import testdata

    _write_png(tmp_path / "ok.png")
    (tmp_path / "c.yml").write_text("- id: a\n  prompt: hi\n  image: ok.png\n  kind: x\n"
                                    "- id: b\n  prompt: ho\n  image: ok.png\n  kind: y\n")
    class Given:  # any os.PathLike, as a path library other than pathlib gives it
        def __fspath__(self):
            return str(tmp_path / "c.yml")

    start = testdata.mark()
    load_cases(Given())
    record, = testdata.read_since(start)
    assert record == {"path": str(tmp_path / "c.yml"), "sha256": hashlib.sha256((tmp_path / "c.yml").read_bytes()).hexdigest(),
                      "format": "yaml", "rows": 2, "meta": {"kind": {"x": 1, "y": 1}}, "image_sizes": {"8x8": 2}}
