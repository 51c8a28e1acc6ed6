import numpy as np

from tellus.training import losses


def test_weighted_mse_mae_hand_computed():
    # batch 1, lat 2, lon 2, channel 2
    pred = np.zeros((1, 2, 2, 2), np.float32)
    tgt = np.zeros_like(pred)
    tgt[0, 0, :, 0] = 2.0  # channel 0 error 2 on lat row 0
    tgt[0, 1, :, 1] = -1.0  # channel 1 error 1 on lat row 1
    latw = np.array([1.5, 0.5], np.float32)
    cw = np.array([1.0, 0.25], np.float32)
    # channel 0: MSE = (1.5*4*2 + 0)/(2*2) = 3 ; channel 1: (0.5*1*2)/4 = 0.25
    mse = losses.weighted_mse(pred, tgt, latw, cw)
    np.testing.assert_allclose(float(mse), (3 * 1.0 + 0.25 * 0.25) / 2, rtol=1e-6)
    # MAE: channel 0 = 1.5*2*2/4 = 1.5 ; channel 1 = 0.5*1*2/4 = 0.25
    mae = losses.weighted_mae(pred, tgt, latw, cw)
    np.testing.assert_allclose(float(mae), (1.5 + 0.25 * 0.25) / 2, rtol=1e-6)


def test_masked_loss_mean_over_valid_points_only():
    pred = np.zeros((2, 2, 3, 1), np.float32)
    tgt = np.zeros_like(pred)
    tgt[:, 0, 0, 0] = 1.0
    tgt[:, 1, 2, 0] = 100.0  # land point, masked out
    mask = np.ones((2, 3), np.float32)
    mask[1, 2] = 0.0
    latw = np.array([1.0, 1.0], np.float32)
    # valid points: 5 per sample, one of them has squared error 1.
    np.testing.assert_allclose(
        float(losses.weighted_mse(pred, tgt, latw, mask=mask)), 1 / 5, rtol=1e-6
    )
