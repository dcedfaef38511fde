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
