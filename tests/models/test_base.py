"""What every adapter shares (certkit/models/base.py): processor outputs reach the model on its device, floating ones
in its dtype; the runtime record says how labels are computed."""


def test_processor_outputs_go_to_the_model_device_floats_in_its_dtype_lists_too():
    import torch

    from certkit.models.base import to_device

    pixels, sizes = torch.rand(2, 3, 4, 4), torch.tensor([[4, 4], [4, 4]])
    inputs = {"pixel_values": [pixels, pixels[:1]], "image_sizes": sizes, "n": 3}
    moved = {key: to_device(value, torch.device("cpu"), torch.bfloat16) for key, value in inputs.items()}
    assert isinstance(moved["pixel_values"], list) and [t.dtype for t in moved["pixel_values"]] == [torch.bfloat16] * 2
    assert moved["image_sizes"].dtype == torch.int64 and moved["n"] == 3


def test_the_runtime_record_says_how_labels_are_computed():
    """Recorded with results (not fingerprinted): device, software and the kernel flags that decide bitwise reproducibility."""
    import torch

    from certkit.models import TorchClassifier
    from certkit.testing import BrightnessClassifier

    model = TorchClassifier(BrightnessClassifier(), ["dark", "bright"], lambda t: [2], vocab_size=4)
    record = model.runtime
    assert record["device"] == str(model.device) and record["torch"] == torch.__version__
    assert record["deterministic_algorithms"] is False
    torch.use_deterministic_algorithms(True)
    try:
        assert model.runtime["deterministic_algorithms"] is True
    finally:
        torch.use_deterministic_algorithms(False)
    if model.device.type == "cuda":
        assert {"gpu", "cuda", "cudnn_deterministic", "cudnn_benchmark", "tf32_matmul"} <= set(record)


MODEL_SOURCE = '''
import torch


class Head(torch.nn.Module):
    """A linear head."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, ids, images):
        # the mean pixel of each image
        return self.linear(images.mean(dim=(2, 3)).repeat(1, 2)[:, :4]) * SCALE
'''


def _module_from(folder, source, monkeypatch):
    """``source`` imported as module ``user_model`` from its own file in ``folder`` (the module name is fingerprinted;
    ``inspect`` finds a class's source through ``sys.modules``)."""
    import importlib.util
    import sys

    folder.mkdir()
    path = folder / "user_model.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("user_model", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "user_model", module)
    spec.loader.exec_module(module)
    return module


def test_code_fingerprints_ignore_comments_docstrings_and_blank_lines_but_not_code(tmp_path, monkeypatch):
    """An edited comment or docstring keeps the cache (same fingerprint); a changed line of code does not."""
    import torch

    from certkit.models.base import code_fingerprint, code_text

    def fingerprint(name, source):
        torch.manual_seed(0)
        return code_fingerprint(_module_from(tmp_path / name, "SCALE = 1\n" + source, monkeypatch).Head())

    base = fingerprint("m0", MODEL_SOURCE)
    reworded = MODEL_SOURCE.replace('"""A linear head."""', '"""A linear head — réécrit.\n\n    Two lines now."""')
    reworded = reworded.replace("# the mean pixel of each image", "# mean pixel\n\n        # per image")
    assert fingerprint("m1", reworded) == base
    assert fingerprint("m2", MODEL_SOURCE.replace("* SCALE", "* SCALE * 2")) != base
    assert fingerprint("m3", MODEL_SOURCE.replace("        return", "        x = 1\n        return")) != base
    text = code_text(MODEL_SOURCE)
    assert "linear head" not in text and "mean pixel" not in text and "\n\n" not in text
    assert "    def forward(self, ids, images):\n        return self.linear(" in text  # indentation kept
    assert code_text('x = "# kept"  # dropped\n') == 'x = "# kept"'
