"""Each objective against a hand computation on fixed tensors."""

import math

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
