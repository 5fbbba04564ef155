"""Tracking each client's carrier frequency offset across rounds (a two-state Kalman filter).

One sounding measures a client's residual CFO with a variance that only a long pilot makes small,
yet the payload needs it far more precisely: a residual of r cycles/sample rotates that client's
contribution by 2*pi*r*D over the D samples between sounding and payload, and no pilot in the
superposition can see one client's rotation. The oscillator's offset changes slowly (temperature
drift, roughly linear over seconds), so filtering the estimates of many rounds with a model of
offset plus drift rate gives an error far below any single sounding's.

State per client: [offset (cycles/sample), drift (cycles/sample per second)].
"""

from __future__ import annotations

import numpy as np


def residual_cfo_variance(pilot_length: int, repeats: int, snr_linear: np.ndarray) -> np.ndarray:
    """Variance (cycles/sample)^2 of the period-to-period CFO estimate of `modem.estimate`.

    Each period's correlation has phase variance 1/(2*N*snr). The estimator sums the products of
    consecutive periods; their phase differences telescope to (phi_R - phi_1)/(R - 1), so the
    variance is 1/(N*snr) / (R-1)^2 in radians^2, divided by (2*pi*N)^2.
    """
    pairs = max(repeats - 1, 1)
    snr = np.maximum(np.asarray(snr_linear, dtype=np.float64), 1e-12)
    return 1.0 / ((2 * np.pi * pilot_length) ** 2 * pilot_length * pairs**2 * snr)


class CfoTracker:
    """Kalman filter of (offset, drift) for `n` clients.

    drift_accel: standard deviation of the change of drift rate per second ((cycles/sample)/s^2),
        the process noise that lets the filter follow a drift that is not exactly linear.
    drift_prior: standard deviation of the drift rate before any measurement ((cycles/sample)/s);
        1e-4 is 100 Hz/s at 1 MS/s, twice a crystal warming up at 0.02 ppm/s at 2.4 GHz.
    """

    def __init__(self, n: int, drift_accel: float = 1e-9, drift_prior: float = 1e-4):
        self.x = np.zeros((n, 2))
        self.p = np.zeros((n, 2, 2))
        self.p[:, 0, 0] = np.inf  # unknown until acquired or measured
        self.drift_var = drift_prior**2
        self.p[:, 1, 1] = self.drift_var
        self.time = np.full(n, np.nan)
        self.q = drift_accel**2

    def set(self, clients: list[int], offset: np.ndarray, variance: np.ndarray, time_s: float) -> None:
        """Initialise clients from a coarse measurement (offset and its variance)."""
        idx = np.asarray(clients, dtype=np.int64)
        self.x[idx, 0] = offset
        self.x[idx, 1] = 0.0
        self.p[idx] = 0.0
        self.p[idx, 0, 0] = variance
        self.p[idx, 1, 1] = self.drift_var
        self.time[idx] = time_s

    def predict(self, clients: list[int], time_s: float) -> np.ndarray:
        """Offsets predicted for `time_s` (advances the filters of `clients` to that time)."""
        idx = np.asarray(clients, dtype=np.int64)
        for k in idx:
            if np.isnan(self.time[k]):
                self.time[k] = time_s
                continue
            dt = time_s - self.time[k]
            f = np.array([[1.0, dt], [0.0, 1.0]])
            self.x[k] = f @ self.x[k]
            if np.isfinite(self.p[k, 0, 0]):
                g = np.array([[dt**2 / 2], [dt]])
                self.p[k] = f @ self.p[k] @ f.T + self.q * (g @ g.T)
            self.time[k] = time_s
        return self.x[idx, 0].copy()

    def update(self, clients: list[int], measured_offset: np.ndarray, variance: np.ndarray) -> np.ndarray:
        """Fold in a measurement of the total offset (applied correction + measured residual)."""
        idx = np.asarray(clients, dtype=np.int64)
        for j, k in enumerate(idx):
            r = float(variance[j])
            if not np.isfinite(self.p[k, 0, 0]):
                self.x[k] = [measured_offset[j], 0.0]
                self.p[k] = np.diag([r, self.drift_var])
                continue
            innovation = measured_offset[j] - self.x[k, 0]
            s = self.p[k, 0, 0] + r
            gain = self.p[k, :, 0] / s
            self.x[k] = self.x[k] + gain * innovation
            self.p[k] = self.p[k] - np.outer(gain, self.p[k, 0, :])
        return self.x[idx, 0].copy()
