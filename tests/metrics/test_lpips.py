import lpips as lpips_reference
import numpy as np
import torch
import torchvision

from talkbench.metrics.lpips import LPIPS, lpips_frames, to_tensor


def test_equals_reference_lpips_given_the_same_weights(real_frames, other_frames):
    torch.manual_seed(0)
    # Random AlexNet backbone (the ImageNet file cannot be downloaded here) and the v0.1
    # linear layers that ship in the lpips wheel, on both sides.
    reference = lpips_reference.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    backbone = torchvision.models.alexnet(weights=None).state_dict()
    backbone.update({f"features.{k.split('.', 1)[1]}": v for k, v in reference.net.state_dict().items()})
    ours = LPIPS(backbone_state=backbone)  # linear layers from the weights manager (bundled file)

    gen, ref = other_frames[:4], real_frames[:4]
    with torch.no_grad():
        expected = reference(to_tensor(gen), to_tensor(ref)).view(-1).double().numpy()
        # lpips.im2tensor is the reference's own uint8 → [-1, 1] conversion
        via_im2tensor = reference(lpips_reference.im2tensor(gen[0]), lpips_reference.im2tensor(ref[0])).item()
    got = lpips_frames(ours, gen, ref)
    assert np.abs(got - expected).max() < 1e-6
    assert abs(got[0] - via_im2tensor) < 1e-6
    assert (expected > 0).all()


def test_identical_images_score_zero(real_frames):
    torch.manual_seed(0)
    ours = LPIPS(backbone_state=torchvision.models.alexnet(weights=None).state_dict())
    assert np.allclose(lpips_frames(ours, real_frames[:2], real_frames[:2]), 0.0)
