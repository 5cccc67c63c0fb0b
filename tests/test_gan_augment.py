"""DiffAugment and the per-fruit step randomness (gan_augment.py), on known cases.

Images here are synthetic test patterns (a single lit pixel, a ramp): the operations' answers are known exactly.
"""
import pytest
import torch

from fruitgan.learn import augment as ga
import gan_model as gm
from fruitgan.util import settings as st
R = 28


def _dot(y, x, fruits=1, batch=1):
    img = torch.full((batch, fruits, R, R), ga.BACKGROUND)
    img[..., y, x] = 1.0
    return img


def test_translation_moves_pixels_and_fills_the_background():
    img = _dot(10, 12, fruits=2)
    shift = torch.tensor([[[3, -2]], [[-4, 4]]])                        # (G, B, 2): (dx, dy) per fruit
    out = ga.translate(img, shift)
    assert out[0, 0, 8, 15] == 1.0 and out[0, 1, 14, 8] == 1.0            # moved by (dx, dy)
    assert (out == 1.0).sum() == 2 and out.min() == ga.BACKGROUND          # nothing else lit, black shifted in
    edge = ga.translate(_dot(0, 0), torch.tensor([[[-1, 0]]]))             # shifted out of the frame: gone
    assert (edge == 1.0).sum() == 0


def test_zero_shift_is_the_identity_and_gradients_flow():
    img = torch.rand(4, 3, R, R, requires_grad=True)
    out = ga.translate(img, torch.zeros(3, 4, 2, dtype=torch.long))
    assert torch.equal(out, img)
    ga.cut_out(out, torch.full((3, 4, 2), 5), 8).sum().backward()
    assert img.grad[0, 0, 5:13, 5:13].abs().sum() == 0 and img.grad[0, 0, 0, 0] == 1.0   # cut pixels get none


def test_cutout_fills_a_square_with_the_background_even_over_an_edge():
    img = torch.ones(1, 1, R, R)
    side = ga.cutout_side(R)
    out = ga.cut_out(img, torch.tensor([[[20, -3]]]), side)               # hangs over the right and top edges
    assert side == 14 and (out == ga.BACKGROUND).sum() == (R - 20) * (side - 3)
    assert (out[0, 0, :11, 20:] == ga.BACKGROUND).all() and (out[0, 0, 11:, :] == 1.0).all()


def test_draws_follow_the_config_and_stay_in_bounds():
    cfg = gm.GANConfig(resolution=R, diff_augment="translation,cutout")
    drawn = ga.draw_step_random(cfg, 64, torch.Generator().manual_seed(0), "cpu")
    assert set(drawn) == {"dropout", "shift", "cutout"}
    assert drawn["dropout"].shape == (ga.D_CALLS, 64, 7 * cfg.d_channels)
    s = ga.max_shift(R)
    assert drawn["shift"].abs().max() == s and drawn["shift"].min() == -s       # the whole range is used
    c = ga.cutout_side(R)
    assert drawn["cutout"].min() >= -(c // 2) and drawn["cutout"].max() <= R - c + c // 2
    plain = gm.GANConfig(resolution=R, dropout=0.0, diff_augment="none")
    assert ga.draw_step_random(plain, 8, None, "cpu") == {}                  # nothing random: nothing drawn


def test_the_same_generator_state_draws_the_same_numbers():
    cfg = gm.GANConfig(resolution=R, diff_augment="translation")
    a = ga.draw_step_random(cfg, 8, torch.Generator().manual_seed(3), "cpu")
    b = ga.draw_step_random(cfg, 8, torch.Generator().manual_seed(3), "cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dropout_masks_keep_the_expected_share_and_scale():
    u = torch.rand(2, 4096, 7 * 8, generator=torch.Generator().manual_seed(1))      # (G, B, D+2D+4D)
    masks = ga.dropout_masks({"dropout": u}, 0.25, ga.dropout_widths(8), torch.float32)
    assert [m.shape for m in masks] == [(4096, 16, 1, 1), (4096, 32, 1, 1), (4096, 64, 1, 1)]
    kept = masks[2][masks[2] > 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.75))
    assert (masks[2] > 0).float().mean().item() == pytest.approx(0.75, abs=0.01)


def test_policies_are_declared_once_and_checked():
    assert st.parse_diff_augment("cutout, translation") == "translation,cutout"
    assert st.parse_diff_augment("none") == "none" and ga.policy_ops("none") == ()
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        st.parse_diff_augment("colour")
    with pytest.raises(Exception, match="--diff-augment"):
        gm.GANConfig(resolution=R, diff_augment="flip")


def test_augment_p_leaves_the_missed_images_untouched():
    """augment_p 0.5: about half the images keep shift 0 and no cut square, chosen per image and operation; the
    others are augmented as with augment_p 1, whose draws it leaves as they were."""
    full = gm.GANConfig(resolution=R, diff_augment="translation,cutout")
    half = gm.GANConfig(resolution=R, diff_augment="translation,cutout", augment_p=0.5)
    a = ga.draw_step_random(full, 4096, torch.Generator().manual_seed(5), "cpu")
    b = ga.draw_step_random(half, 4096, torch.Generator().manual_seed(5), "cpu")
    unshifted = (b["shift"] == 0).all(dim=-1)                                    # (K, B)
    outside = (b["cutout"] == R).all(dim=-1)
    assert 0.45 < unshifted.float().mean() < 0.55 and 0.45 < outside.float().mean() < 0.55
    assert 0.2 < (unshifted & outside).float().mean() < 0.3                      # the two are chosen apart
    assert torch.equal(b["shift"][~unshifted], a["shift"][~unshifted])
    assert torch.equal(b["cutout"][~outside], a["cutout"][~outside])
    img = torch.ones(1, 1, R, R)
    assert torch.equal(ga.cut_out(img, torch.full((1, 1, 2), R), ga.cutout_side(R)), img)   # missed: unchanged
