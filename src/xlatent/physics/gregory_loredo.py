"""The Chandra Source Catalog's Gregory-Loredo variability test on binned light curves.

Gregory & Loredo (1992, ApJ 398, 146), as the CSC applies it to the events of a source region
(CSC documentation "Gregory-Loredo Variability Probability"; Rots 2006, ASP Conf. Ser. 351,
73): for m = 2 .. m_max the odds of a piecewise-constant light curve with m bins against a
constant rate, with a uniform (Dirichlet) prior on the bins' shares of the N counts::

    O_m = (m - 1)! N! / (N + m - 1)! * m^N / multinomial(N; n_1 .. n_m)
        = (m - 1)! prod(n_j!) / (N + m - 1)! * prod(w_j^-n_j)

(w_j the bins' fractions of the exposure: 1/m for equal bins). The models get equal prior
odds, so the odds of variability are the mean of O_m; like the CSC pipeline, which picks
m_max where the running sum of odds peaks, the mean is taken over m = 2 .. m* with m* the
peak of the running mean. P = O / (1 + O).

Here the light curve is a fine histogram of ``K`` bins (the simulator's photons are binned, not
time-tagged); the m-bin histogram groups whole fine bins (bin j holds the fine bins i with
floor(i m / K) = j), so for m not dividing K the bins differ slightly in width and the w_j
term above is exact for them. Counts enter only through log-factorials, looked up in a table.

The index ``var_index_b`` (0-10) follows the CSC rules: P <= 0.5 -> 0; for 0.5 < P < 0.9 the
light-curve fractions decide between "not variable" (1, 2: the optimal light curve lies within
3 sigma of its mean for more than 99.7% of the time and within 5 sigma all the time) and
"possibly variable" (3-5); P >= 0.9 -> 6-10 by log10 odds (< 2, 4, 10, 30, above).
"""

from __future__ import annotations

import numpy as np

#: Largest number of light-curve bins m tried (the fine light curve must have at least this).
M_MAX = 64


def _log_factorial(n_max: int) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(np.arange(n_max + 1, dtype=np.float64) + 1.0)


def _groups(k: int, m: int) -> np.ndarray:
    """Fine-bin edges of the m-bin histogram of a K-bin light curve (m + 1 integers)."""
    return (np.arange(m + 1) * k + m - 1) // m


def log_odds_per_m(counts: np.ndarray, m_max: int = M_MAX) -> np.ndarray:
    """Natural-log odds ln O_m of m bins against a constant rate, m = 2 .. m_max: shape
    (n, m_max - 1) for light curves ``counts`` of shape (n, K) (integers, K >= m_max)."""
    counts = np.asarray(counts)
    n_src, k = counts.shape
    m_max = min(m_max, k)
    cum = np.zeros((n_src, k + 1), dtype=np.int64)
    np.cumsum(counts, axis=1, out=cum[:, 1:])
    total = cum[:, -1]
    lf = _log_factorial(int(total.max(initial=0)) + m_max)
    out = np.empty((n_src, m_max - 1))
    for m in range(2, m_max + 1):
        e = _groups(k, m)
        n_j = cum[:, e[1:]] - cum[:, e[:-1]]
        log_w = np.log(np.diff(e) / k)
        out[:, m - 2] = lf[m - 1] - lf[total + m - 1] + lf[n_j].sum(axis=1) - n_j @ log_w
    return out


def gl_odds(counts: np.ndarray, m_max: int = M_MAX) -> tuple[np.ndarray, np.ndarray]:
    """ln odds of variability and each light curve's m* (see module docstring)."""
    lo = log_odds_per_m(counts, m_max)
    running = np.logaddexp.accumulate(lo, axis=1) - np.log(np.arange(1, lo.shape[1] + 1))
    best = np.argmax(running, axis=1)
    return running[np.arange(lo.shape[0]), best], best + 2


def light_curve_fractions(
    counts: np.ndarray, m_star: np.ndarray, m_max: int = M_MAX, n_points: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """f3, f5: the fractions of the optimal (odds-weighted) light curve within 3 and 5 sigma
    (its own posterior sigma at each time) of its time average, at ``n_points`` evenly spaced
    times (enough for the CSC's 99.7% criterion to mean "everywhere but in short spikes")."""
    counts = np.asarray(counts)
    n_src, k = counts.shape
    lo = log_odds_per_m(counts, m_max)
    m_all = np.arange(2, lo.shape[1] + 2)
    lo = np.where(m_all[None, :] <= m_star[:, None], lo, -np.inf)
    w = np.exp(lo - lo.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    total = counts.sum(axis=1).astype(np.float64)
    cum = np.zeros((n_src, k + 1))
    np.cumsum(counts, axis=1, out=cum[:, 1:])
    t_fine = (2 * np.arange(n_points) + 1) * k // (2 * n_points)  # a fine bin per point
    mean = np.zeros((n_src, n_points))
    second = np.zeros((n_src, n_points))
    for col, m in enumerate(m_all):
        e = _groups(k, m)
        width = np.diff(e) / k
        a = cum[:, e[1:]] - cum[:, e[:-1]] + 1.0  # Dirichlet posterior of the bins' shares
        a0 = (total + m)[:, None]
        rate = a / a0 / width  # relative to the mean rate
        var = a * (a0 - a) / (a0**2 * (a0 + 1.0)) / width**2
        j = np.repeat(np.arange(m), np.diff(e))[t_fine]
        wc = w[:, col, None]
        mean += wc * rate[:, j]
        second += wc * (var + rate**2)[:, j]
    sigma = np.sqrt(np.maximum(second - mean**2, 1e-300))
    dev = np.abs(mean - mean.mean(axis=1, keepdims=True)) / sigma
    return (dev < 3.0).mean(axis=1), (dev < 5.0).mean(axis=1)


def gl_index(
    prob: np.ndarray, log10_odds: np.ndarray, f3: np.ndarray, f5: np.ndarray
) -> np.ndarray:
    """The CSC's integer variability index 0-10 (see module docstring)."""
    prob = np.asarray(prob)
    steady_lc = (np.asarray(f3) > 0.997) & (np.asarray(f5) >= 1.0)
    mid = [(prob < 2.0 / 3.0) & steady_lc, (prob < 0.9) & steady_lc,
           prob < 0.6, prob < 2.0 / 3.0, prob < 0.9]  # fmt: skip
    high = [log10_odds < 2.0, log10_odds < 4.0, log10_odds < 10.0, log10_odds < 30.0]
    return np.select([prob <= 0.5, *mid, *high], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], default=10).astype(
        np.int64
    )


def gl_variability(
    counts: np.ndarray, m_max: int = M_MAX, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """CSC-style ``var_prob_b`` and ``var_index_b`` of binned light curves (n, K)."""
    counts = np.asarray(counts)
    n = counts.shape[0]
    prob, index = np.empty(n), np.empty(n, dtype=np.int64)
    for a in range(0, n, block):
        c = counts[a : a + block]
        ln_o, m_star = gl_odds(c, m_max)
        p = 1.0 / (1.0 + np.exp(-ln_o))
        f3, f5 = np.ones(len(c)), np.ones(len(c))
        mid = (p > 0.5) & (p < 0.9)  # the fractions only matter there
        if mid.any():
            f3[mid], f5[mid] = light_curve_fractions(c[mid], m_star[mid], m_max)
        prob[a : a + len(c)] = p
        index[a : a + len(c)] = gl_index(p, ln_o / np.log(10.0), f3, f5)
    return prob, index
