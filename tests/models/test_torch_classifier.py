"""The torch classifier adapter (certkit/models/torch_classifier.py): its images reach the module in the module's
dtype."""


def test_a_bfloat16_classifier_gets_its_images_in_bfloat16():
    """A module in bfloat16 cannot take float32 images (torch refuses the mixed convolution): the adapter casts them."""
    import numpy as np
    import torch

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian
    from certkit.oracles import LabelOracle
    from certkit.testing import SmallGuard

    model = TorchClassifier(SmallGuard(vocab_size=16).to(torch.bfloat16), ["a", "b"], lambda t: [2 + len(w) % 10 for w in t.split()],
                            vocab_size=16, batch_size=32)
    assert model.dtype == torch.bfloat16 and model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    cert = Smoothed(model, LabelOracle(["a", "b"]), image=Gaussian(0.25), seed=0).frontier(
        Case("c", "pick up the cube", np.full((3, 8, 8), 0.5, dtype=np.float32)), max_edits=0, outcome="a", n=64)
    assert cert.n == 64
