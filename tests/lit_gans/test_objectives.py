"""Each objective against a hand computation on fixed tensors."""

import math
import pickle

import pytest
import torch

from lit_gans import objectives as O

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.0])


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(xs):
    return sum(xs) / len(xs)


def test_bce_discriminator_loss_is_the_papers_log_likelihood():
    expected = -mean([math.log(sig(x)) for x in REAL.tolist()]) - mean([math.log(1 - sig(x)) for x in FAKE.tolist()])
    assert O.bce_discriminator_loss(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_and_non_saturating_generator_losses():
    assert O.minimax_generator_loss(FAKE).item() == pytest.approx(mean([math.log(1 - sig(x)) for x in FAKE.tolist()]))
    assert O.non_saturating_generator_loss(FAKE).item() == pytest.approx(-mean([math.log(sig(x)) for x in FAKE.tolist()]))


def test_logit_losses_stay_finite_where_log_of_sigmoid_would_not():
    # The reference TF MLP GAN went NaN when D saturated; logits through softplus never take log(0).
    big = torch.tensor([200.0, -200.0])
    for loss in (O.bce_discriminator_loss(big, -big), O.non_saturating_generator_loss(-big), O.minimax_generator_loss(big)):
        assert torch.isfinite(loss)


def test_wasserstein_losses_and_signs():
    assert O.wasserstein_critic_loss(REAL, FAKE).item() == pytest.approx(mean(FAKE.tolist()) - mean(REAL.tolist()))
    assert O.wasserstein_generator_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))
    # a critic that scores real higher than fake has the lower loss
    hi, lo = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0])
    assert O.wasserstein_critic_loss(hi, lo) < O.wasserstein_critic_loss(lo, hi)


@pytest.mark.parametrize("a,b,c", [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0), (0.0, 1.0, 0.5)])
def test_least_squares_losses_match_the_formula(a, b, c):
    loss = O.LeastSquaresLoss(a, b, c)
    d = 0.5 * mean([(x - b) ** 2 for x in REAL.tolist()]) + 0.5 * mean([(x - a) ** 2 for x in FAKE.tolist()])
    g = 0.5 * mean([(x - c) ** 2 for x in FAKE.tolist()])
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d)
    assert loss.generator_loss(FAKE).item() == pytest.approx(g)


def test_hinge_losses():
    d = mean([max(0, 1 - x) for x in REAL.tolist()]) + mean([max(0, 1 + x) for x in FAKE.tolist()])
    assert O.HingeLoss().discriminator_loss(REAL, FAKE).item() == pytest.approx(d)
    assert O.HingeLoss().generator_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))


def test_objects_pair_the_right_functions_and_interpretation():
    ns, mm = O.NonSaturatingLoss(), O.MinimaxLoss()
    assert ns.discriminator_loss(REAL, FAKE) == mm.discriminator_loss(REAL, FAKE)
    assert ns.generator_loss(FAKE) == O.non_saturating_generator_loss(FAKE)
    assert mm.generator_loss(FAKE) == O.minimax_generator_loss(FAKE)
    assert torch.equal(ns.interpret(REAL), torch.sigmoid(REAL))  # probabilities for logit objectives
    assert torch.equal(O.WassersteinLoss().interpret(REAL), REAL)  # raw scores otherwise


def test_gradients_point_the_right_way():
    # minimising the D loss raises D(real) and lowers D(fake); minimising the G loss raises D(fake)
    for obj in (O.NonSaturatingLoss(), O.MinimaxLoss(), O.WassersteinLoss(), O.LeastSquaresLoss(), O.HingeLoss()):
        r, f = torch.full((4,), 0.3, requires_grad=True), torch.full((4,), 0.3, requires_grad=True)
        obj.discriminator_loss(r, f).backward()
        assert (r.grad < 0).all() and (f.grad > 0).all(), obj
        f2 = torch.full((4,), 0.3, requires_grad=True)
        obj.generator_loss(f2).backward()
        assert (f2.grad < 0).all(), obj


# --- relativistic objectives (Jolicoeur-Martineau 2019), against the formulas written out with Python floats ---

RELATIVISTIC = ("RSGANLoss", "RaSGANLoss", "RaLSGANLoss", "RaHingeLoss")


def bce(x: float, target: int) -> float:
    """Binary cross-entropy of one logit, from its definition -log p / -log(1 - p) (not via softplus)."""
    return -math.log(sig(x)) if target == 1 else -math.log(1 - sig(x))


def random_outputs(seed: int, n_real: int, n_fake: int):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(n_real, generator=g), 2 * torch.randn(n_fake, generator=g)


def hand_rsgan(real, fake):
    d = mean([bce(r - f, 1) for r, f in zip(real, fake)])
    g = mean([bce(f - r, 1) for r, f in zip(real, fake)])
    return d, g


def hand_rasgan(real, fake):
    mr, mf = mean(real), mean(fake)
    d = (mean([bce(r - mf, 1) for r in real]) + mean([bce(f - mr, 0) for f in fake])) / 2
    g = (mean([bce(r - mf, 0) for r in real]) + mean([bce(f - mr, 1) for f in fake])) / 2
    return d, g


def hand_ralsgan(real, fake):
    mr, mf = mean(real), mean(fake)
    d = (mean([(r - mf - 1) ** 2 for r in real]) + mean([(f - mr + 1) ** 2 for f in fake])) / 2
    g = (mean([(f - mr - 1) ** 2 for f in fake]) + mean([(r - mf + 1) ** 2 for r in real])) / 2
    return d, g


def hand_rahinge(real, fake):
    mr, mf = mean(real), mean(fake)
    d = (mean([max(0.0, 1 - (r - mf)) for r in real]) + mean([max(0.0, 1 + (f - mr)) for f in fake])) / 2
    g = (mean([max(0.0, 1 - (f - mr)) for f in fake]) + mean([max(0.0, 1 + (r - mf)) for r in real])) / 2
    return d, g


HAND = {"RSGANLoss": hand_rsgan, "RaSGANLoss": hand_rasgan, "RaLSGANLoss": hand_ralsgan, "RaHingeLoss": hand_rahinge}
FUNCTIONS = {
    "RSGANLoss": (O.rsgan_discriminator_loss, O.rsgan_generator_loss),
    "RaSGANLoss": (O.rasgan_discriminator_loss, O.rasgan_generator_loss),
    "RaLSGANLoss": (O.ralsgan_discriminator_loss, O.ralsgan_generator_loss),
    "RaHingeLoss": (O.rahinge_discriminator_loss, O.rahinge_generator_loss),
}


@pytest.mark.parametrize("name", RELATIVISTIC)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relativistic_losses_match_the_formula(name, seed):
    # the averaged objectives compare with the other batch's mean, so they also take batches of different sizes
    n_fake = 5 if name == "RSGANLoss" else 3 + seed
    real, fake = random_outputs(seed, 5, n_fake)
    d, g = HAND[name](real.tolist(), fake.tolist())
    obj = getattr(O, name)()
    d_fn, g_fn = FUNCTIONS[name]
    assert obj.discriminator_loss(real, fake).item() == pytest.approx(d, rel=1e-5)
    assert obj.generator_loss(fake, real).item() == pytest.approx(g, rel=1e-5)
    assert d_fn(real, fake).item() == pytest.approx(d, rel=1e-5)
    assert g_fn(fake, real).item() == pytest.approx(g, rel=1e-5)


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_losses_on_the_small_fixed_tensors(name):
    d, g = HAND[name](REAL.tolist(), FAKE.tolist())
    obj = getattr(O, name)()
    assert obj.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert obj.generator_loss(FAKE, REAL).item() == pytest.approx(g, rel=1e-6)


def test_rsgan_and_rasgan_by_hand_on_one_pair():
    # one real logit 2, one fake logit -1: every difference is +-3 and the halves of RaSGAN add up to the same value
    r, f = torch.tensor([2.0]), torch.tensor([-1.0])
    assert O.rsgan_discriminator_loss(r, f).item() == pytest.approx(math.log1p(math.exp(-3.0)))
    assert O.rsgan_generator_loss(f, r).item() == pytest.approx(math.log1p(math.exp(3.0)))
    assert O.rasgan_discriminator_loss(r, f).item() == pytest.approx(math.log1p(math.exp(-3.0)))
    assert O.rasgan_generator_loss(f, r).item() == pytest.approx(math.log1p(math.exp(3.0)))


@pytest.mark.parametrize("name", ["RSGANLoss", "RaSGANLoss"])
def test_relativistic_logit_losses_stay_finite_at_large_logits(name):
    # log(sigmoid(-400)) is -inf in float32; softplus gives the exact 400
    obj = getattr(O, name)()
    hi, lo = torch.full((2,), 200.0), torch.full((2,), -200.0)
    for real, fake in ((hi, lo), (lo, hi)):
        r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
        for loss in (obj.discriminator_loss(r, f), obj.generator_loss(f, r)):
            assert torch.isfinite(loss)
            r.grad = f.grad = None
            loss.backward()
            assert torch.isfinite(r.grad).all() and torch.isfinite(f.grad).all()
    # the wrong-way-round case costs the full margin, as the formula says
    assert obj.discriminator_loss(lo, hi).item() == pytest.approx(400.0)
    assert obj.generator_loss(lo, hi).item() == pytest.approx(400.0)
    assert obj.discriminator_loss(hi, lo).item() == pytest.approx(0.0, abs=1e-6)


def test_rsgan_pairs_real_and_fake_one_to_one_and_the_averaged_ones_do_not():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.0, 1.0])
    permuted = fake[[2, 0, 1]]
    rs = O.RSGANLoss()
    assert rs.discriminator_loss(real, fake).item() != pytest.approx(rs.discriminator_loss(real, permuted).item())
    assert rs.generator_loss(fake, real).item() != pytest.approx(rs.generator_loss(permuted, real).item())
    for name in ("RaSGANLoss", "RaLSGANLoss", "RaHingeLoss"):
        obj = getattr(O, name)()
        assert obj.discriminator_loss(real, fake).item() == pytest.approx(obj.discriminator_loss(real, permuted).item())
        assert obj.generator_loss(fake, real).item() == pytest.approx(obj.generator_loss(permuted, real).item())


def test_rsgan_refuses_batches_it_cannot_pair():
    with pytest.raises(ValueError, match="one to one"):
        O.RSGANLoss().discriminator_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="one to one"):
        O.RSGANLoss().generator_loss(torch.zeros(3), torch.zeros(2))


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_generator_loss_needs_and_uses_the_real_output(name):
    obj = getattr(O, name)()
    with pytest.raises(ValueError, match="real_out"):
        obj.generator_loss(FAKE)
    with pytest.raises(ValueError, match="real_out"):
        obj.generator_loss(FAKE, None)
    assert obj.generator_loss(FAKE, REAL).item() != pytest.approx(obj.generator_loss(FAKE, REAL + 1.5).item())
    # G's gradient reaches real_out too (the loss does not detach it; the engine decides)
    r = REAL.clone().requires_grad_()
    obj.generator_loss(FAKE, r).backward()
    assert r.grad is not None and r.grad.abs().sum() > 0


NON_RELATIVISTIC = ("MinimaxLoss", "NonSaturatingLoss", "WassersteinLoss", "LeastSquaresLoss", "HingeLoss")


@pytest.mark.parametrize("name", NON_RELATIVISTIC)
def test_other_objectives_ignore_real_out(name):
    obj = getattr(O, name)()
    assert obj.generator_loss(FAKE) == obj.generator_loss(FAKE, REAL)
    assert obj.generator_loss(FAKE) == obj.generator_loss(FAKE, real_out=None)


def test_needs_real_output_exactly_for_the_relativistic_objectives():
    assert O.Objective.needs_real_output is False
    classes = [getattr(O, n) for n in O.__all__ if isinstance(getattr(O, n), type)]
    objectives = [c for c in classes if issubclass(c, O.Objective) and c is not O.Objective]
    assert set(NON_RELATIVISTIC) < {c.__name__ for c in objectives}
    assert {c.__name__ for c in objectives if c().needs_real_output} == set(RELATIVISTIC)


def test_relativistic_interpretation_and_pickling():
    assert O.RSGANLoss.outputs_are_logits and O.RaSGANLoss.outputs_are_logits
    assert not O.RaLSGANLoss.outputs_are_logits and not O.RaHingeLoss.outputs_are_logits
    assert torch.equal(O.RaSGANLoss().interpret(REAL), torch.sigmoid(REAL))
    assert torch.equal(O.RaHingeLoss().interpret(REAL), REAL)
    for name in RELATIVISTIC:
        obj = pickle.loads(pickle.dumps(getattr(O, name)()))
        assert type(obj).__name__ == name and repr(obj) == f"{name}()"
        assert obj.discriminator_loss(REAL, FAKE) == getattr(O, name)().discriminator_loss(REAL, FAKE)


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_gradients_point_the_right_way(name):
    # minimising the D loss raises C(real) and lowers C(fake); minimising the G loss raises C(fake) and, through the
    # relativistic terms, would lower C(real)
    obj = getattr(O, name)()
    r, f = torch.full((4,), 0.3, requires_grad=True), torch.full((4,), 0.3, requires_grad=True)
    obj.discriminator_loss(r, f).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()
    r, f = torch.full((4,), 0.3, requires_grad=True), torch.full((4,), 0.3, requires_grad=True)
    obj.generator_loss(f, r).backward()
    assert (f.grad < 0).all() and (r.grad > 0).all()


def test_ralsgan_discriminator_loss_is_minimised_at_its_targets():
    # C(x_r) - E C(x_f) = 1 and C(x_f) - E C(x_r) = -1: real outputs all one above the fakes, at any offset
    for offset in (0.0, -2.5, 7.0):
        r = torch.full((4,), offset + 0.5, requires_grad=True)
        f = torch.full((4,), offset - 0.5, requires_grad=True)
        loss = O.ralsgan_discriminator_loss(r, f)
        assert loss.item() == pytest.approx(0.0, abs=1e-10)
        loss.backward()
        assert r.grad.abs().max() < 1e-6 and f.grad.abs().max() < 1e-6
    # any move away from the targets costs something (the loss is a sum of squares, so 0 is its minimum)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        dr, df = 0.1 * torch.randn(4, generator=g), 0.1 * torch.randn(4, generator=g)
        assert O.ralsgan_discriminator_loss(0.5 + dr, -0.5 + df) > 0
    # and gradient descent from a random start finds such a point
    r = torch.randn(6, generator=g).requires_grad_()
    f = torch.randn(6, generator=g).requires_grad_()
    opt = torch.optim.SGD([r, f], lr=0.5)
    for _ in range(500):
        opt.zero_grad()
        O.ralsgan_discriminator_loss(r, f).backward()
        opt.step()
    assert (r - f.mean()).tolist() == pytest.approx([1.0] * 6, abs=1e-3)
    assert (f - r.mean()).tolist() == pytest.approx([-1.0] * 6, abs=1e-3)
