"""SAM's losses on inputs whose values are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clicksam.train.losses import (
    FOCAL_WEIGHT,
    dice_loss,
    grouping_loss,
    leaf_labels,
    mask_iou,
    mask_losses,
    sigmoid_focal_loss,
)

LN2 = math.log(2.0)


def test_focal_loss_known_values() -> None:
    zero = torch.zeros(1, 2, 2)
    # p = 0.5: ce = ln 2, modulating factor (1 - 0.5)^2 = 0.25, alpha 0.25 for positives, 0.75 for negatives
    assert sigmoid_focal_loss(zero, torch.ones(1, 2, 2)).item() == pytest.approx(0.25 * 0.25 * LN2)
    assert sigmoid_focal_loss(zero, torch.zeros(1, 2, 2)).item() == pytest.approx(0.75 * 0.25 * LN2)
    # without alpha and with gamma 0 it is plain binary cross-entropy
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0).item() == pytest.approx(bce.item())
    # a confident right answer costs almost nothing, a confident wrong one a lot
    p = torch.sigmoid(torch.tensor(4.0)).item()
    expected_wrong = 0.75 * p**2 * -math.log(1 - p)
    got = sigmoid_focal_loss(torch.full((1, 1, 1), 4.0), torch.zeros(1, 1, 1)).item()
    assert got == pytest.approx(expected_wrong, rel=1e-5)


def test_dice_loss_known_values() -> None:
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # p = 0.5 everywhere: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(torch.zeros(1, 2, 2), targets).item() == pytest.approx(0.4)
    perfect = torch.tensor([[[50.0, 50.0], [-50.0, -50.0]]])
    assert dice_loss(perfect, targets).item() == pytest.approx(0.0, abs=1e-6)
    # all wrong: 1 - 1 / (2 + 2 + 1)
    assert dice_loss(-perfect, targets).item() == pytest.approx(0.8, abs=1e-6)


def test_mask_iou_and_total() -> None:
    logits = torch.tensor([[[[1.0, 1.0], [1.0, -1.0]], [[-1.0, -1.0], [-1.0, -1.0]]]])  # (1, 2, 2, 2)
    targets = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # (1, 1, 2, 2)
    iou = mask_iou(logits, targets.expand_as(logits))
    assert iou.tolist() == [[pytest.approx(2 / 3), 0.0]]
    iou_pred = torch.tensor([[0.5, 0.5]])
    terms = mask_losses(logits, targets, iou_pred)
    assert terms.iou_mse.tolist() == [[pytest.approx((0.5 - 2 / 3) ** 2), pytest.approx(0.25)]]
    expected = FOCAL_WEIGHT * terms.focal + terms.dice + terms.iou_mse
    torch.testing.assert_close(terms.total, expected)
    assert FOCAL_WEIGHT == 20.0
    # the IoU target carries no gradient into the masks
    logits.requires_grad_(True)
    iou_pred.requires_grad_(True)
    mask_losses(logits, targets, iou_pred).iou_mse.sum().backward()
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0
    assert iou_pred.grad is not None


def test_empty_masks_count_as_perfect_iou_and_bad_shapes_fail() -> None:
    assert mask_iou(torch.full((1, 3, 3), -1.0), torch.zeros(1, 3, 3)).item() == 1.0
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        mask_losses(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(1, 2))


def test_leaf_labels_give_each_pixel_its_smallest_instance() -> None:
    whole = np.zeros((4, 6), dtype=bool)
    whole[:, :4] = True
    part = np.zeros((4, 6), dtype=bool)
    part[1:3, 1:3] = True
    other = np.zeros((4, 6), dtype=bool)
    other[:, 5] = True
    labels = leaf_labels(np.stack([part, whole, other]))  # the part comes first: order must not matter
    assert labels[0, 0] == 2 and labels[1, 1] == 1 and labels[2, 2] == 1  # whole, part, part
    assert labels[0, 5] == 3 and labels[0, 4] == 0  # the other instance, background
    assert leaf_labels(np.zeros((0, 2, 3), dtype=bool)).shape == (2, 3)


def test_grouping_loss_known_values() -> None:
    labels = torch.tensor([[1, 1], [2, 2]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    # parts on orthogonal directions, identical within a part: nothing to pull, nothing to push
    good = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [3.0, 3.0]]])  # (C=2, 2, 2)
    assert float(grouping_loss(good, labels, valid)) == pytest.approx(0.0, abs=1e-6)
    # every cell the same: pull 0, push = relu(1 - 0.2) on every cross pair
    same = torch.ones(2, 2, 2)
    assert float(grouping_loss(same, labels, valid)) == pytest.approx(0.8, abs=1e-6)
    # a cell within a part that points elsewhere: pull = mean(1 - cos) over the 4 ordered same pairs
    odd = good.clone()
    odd[:, 0, 1] = torch.tensor([0.0, 1.0])  # cell (0, 1) of part 1 now equals part 2's direction
    expected_pull = (1.0 + 1.0 + 0.0 + 0.0) / 4  # pairs (0,1)/(1,0) of part 1 are orthogonal
    expected_push = (2 * 2 * 0.8) / 8  # cell (0, 1) vs both cells of part 2, both orders, of 8 pairs
    loss = grouping_loss(odd, labels, valid)
    assert float(loss) == pytest.approx(expected_pull + expected_push, abs=1e-6)
    # invalid cells are ignored, and a single part gives zero (with a gradient path)
    emb = torch.randn(2, 2, 2, requires_grad=True)
    only_one = grouping_loss(emb, labels, torch.tensor([[True, True], [False, False]]))
    assert float(only_one.detach()) == 0.0
    only_one.backward()
