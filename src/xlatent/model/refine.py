"""Latent refinement at encode time: a Gauss-Newton step on every spectrum's latent.

An encoder maps every spectrum to a latent in one pass (*amortised* inference); what it gives
up against fitting each spectrum is the *amortisation gap*. In the demo sky's brightest count
decile (1,300-107,000 counts) the encoder's latents reconstruct at 1.11 x the noiseless
truth's deviance, while the same decoder at latents fitted per spectrum reaches 1.03 (1.01 for
the spectra without pile-up): the decoder can describe those spectra, the encoder does not
find the latent. With ``ArchConfig.refine_steps`` = K > 0 every spectrum with at least
``refine_min_counts`` net counts (default 0: every spectrum) has its latent moved by K damped
Gauss-Newton (Levenberg-Marquardt) steps down the Poisson deviance of its counts under the
decoder, its effective area and its pile-up, plus a prior: the latent becomes the decoder's
best fit, started at the encoder's guess, as a spectral fit starts from a good first guess.

The fit is a maximum a posteriori one: the objective is the deviance plus
``|w - z_encoder|^2 / refine_prior_sigma^2``, a Gaussian prior centred on the encoder's
latent. A plain fit moves latents along directions the counts barely constrain: it fits a
little better and makes them much noisier (600 bright fresh-sky sources observed twice: the
median distance between the two latents is 0.50 latent standard deviations for the encoder,
1.15 after one unregularised step). Where the counts say little the prior holds the latent
at the encoder's, so faint spectra need no threshold of their own. Until 2026-12-04 only
spectra with >= 1,000 net counts were refined, with σ = 0.2; refining every spectrum with
σ = 0.5 (the default since) is what makes the latents instrument-invariant: the faint
majority's encoder latents were where the instrument showed (noiseless latent distance to
the default sky on the four real responses in ``../shared``, three trainings: 0.071-0.095
within-class spreads against 0.096-0.111), and it reconstructs better (demo set's test rows:
deviance ratio 0.933 against 0.945) at the same clustering. Bright latents are noisier for it
(twins 0.76 latent standard deviations apart against 0.60 with σ = 0.2); ``latent_<i>_err``
says so, as error draws are refined alike. ``benchmarks/refinement.py`` and
``benchmarks/responses.py`` print these figures.

Each step takes the Jacobian of the log counts shape in the d latent directions by forward
differences (``FD_STEP``: one decoder pass over the latents and their d shifted copies
together; latents within 0.004 latent standard deviations of those from the exact
derivative), the Poisson Fisher matrix ``H = 2 sum_i dmu_i dmu_i^T / mu_i`` plus the prior's,
the gradient ``g = 2 sum_i (1 - c_i / mu_i) dmu_i`` plus the prior's, and solves
``(H + damping diag H) step = -g``; a step that does not lower the objective is refused and
that spectrum's damping raised tenfold (lowered 3x after a success). Differences need no
autograd, whose forward-mode levels are process-wide: chunks can run on Python threads side
by side, each start to end on one CPU thread, so the latents are the same bit for bit
whatever the thread count.

The whole set is refined at once, after the encoder, in chunks of ``REFINE_CHUNK`` spectra
that all pile or none does (a chunk with one piled spectrum pays the pile-up's FFTs for all;
a piled chunk costs ~2.5x an unpiled one), the last of each kind padded, so that the matmuls
have the same shapes whatever the set and a latent never depends on the other spectra.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from xlatent.model.network import SpectralTransformerAE, torch_poisson_deviance
from xlatent.model.parallel_encode import torch_threads
from xlatent.model.pileup import MIN_LAM
from xlatent.model.preprocess import Prepared

#: Levenberg-Marquardt damping (relative to diag H) at the first step, and its bounds.
DAMPING_START, DAMPING_RANGE = 1e-3, (1e-6, 1e6)
#: Spectra refined together (the last chunk of each kind, piled or not, padded to it).
REFINE_CHUNK = 256
#: Latent shift of the forward differences that give the decoder's Jacobian (latent units;
#: the latents spread 0.45-0.7 per dimension): 0.2% from the exact derivative in float32.
FD_STEP = 1e-2


def refine_latents(
    net: SpectralTransformerAE,
    z: torch.Tensor,
    prep: Prepared,
    steps: int,
    min_counts: float,
    prior_sigma: float,
) -> torch.Tensor:
    """The latents ``z`` (n, d) of the spectra ``prep`` (:func:`~xlatent.model.preprocess.prepare`),
    those with ``amplitude >= min_counts`` after ``steps`` Gauss-Newton steps on their Poisson
    deviance plus the prior (a Gaussian of width ``prior_sigma`` at ``z``)."""
    chosen = np.flatnonzero(np.asarray(prep.amplitude) >= min_counts)
    if steps <= 0 or chosen.size == 0:
        return z
    # Spectra that pile and those that do not in chunks of their own: a chunk with one piled
    # spectrum pays the pile-up's FFTs for all (the decoder piles every row, then keeps the
    # unpiled rows' shapes as they were), and few spectra pile. An unpiled spectrum's latent
    # is the same in either kind of chunk. In chunks of one size, the last of each kind padded
    # with copies of its last spectrum: the matmuls then have the same shapes whatever the
    # set, so a latent never depends on the others.
    piles = prep.pileup[chosen, 0].astype(np.float32) >= np.float32(MIN_LAM)  # as the decoder
    parts = [g[k : k + REFINE_CHUNK] for g in (chosen[~piles], chosen[piles])
             for k in range(0, g.size, REFINE_CHUNK)]  # fmt: skip

    def run(part: np.ndarray) -> torch.Tensor:
        rows = np.concatenate([part, np.full(REFINE_CHUNK - part.size, part[-1])])
        return _refine(net, z, prep, rows, steps, prior_sigma)[: part.size]

    # Each chunk on one CPU thread, start to end (a catalogue must not depend on --workers or
    # the thread count: a sum split over threads rounds differently); the chunks share out
    # torch's threads as Python threads instead (torch releases the GIL in its kernels).
    workers = torch.get_num_threads() if z.device.type == "cpu" else 1
    with torch_threads(1):
        if workers > 1 and len(parts) > 1:
            with ThreadPoolExecutor(min(workers, len(parts))) as pool:
                refined = list(pool.map(run, parts))
        else:
            refined = [run(part) for part in parts]
    out = z.float().clone()  # one scatter: index_put per chunk would copy the set each time
    out[torch.as_tensor(np.concatenate(parts), device=z.device)] = torch.cat(refined)
    return out


def _refine(net: SpectralTransformerAE, z: torch.Tensor, prep: Prepared, rows: np.ndarray,
            steps: int, prior_sigma: float) -> torch.Tensor:  # fmt: skip
    """The latents of ``prep``'s spectra ``rows`` after ``steps`` Gauss-Newton steps."""
    dev = z.device
    idx = torch.as_tensor(rows, device=dev)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a[rows]), dtype=torch.float32, device=dev)

    # Without gradients and in fp32 always: these modes are per thread, and this may run on a
    # worker thread.
    with torch.inference_mode(False), torch.no_grad(), torch.autocast(dev.type, enabled=False):
        counts, bkg = t(prep.counts), t(prep.background)
        log_amp = torch.log(t(prep.amplitude))
        log_bkg = torch.log(bkg)
        clogc = torch.where(counts > 0, counts * torch.log(counts.clamp_min(1.0)), 0.0)
        log_area, pileup = t(prep.log_area), t(prep.pileup)
        w = z[idx].detach().float().clone()
        w0, prec = w.clone(), 1.0 / prior_sigma**2
        n, d = w.shape
        eye = torch.eye(d, device=dev)
        log_area_all = torch.cat([log_area, log_area.repeat_interleave(d, 0)])
        pileup_all = torch.cat([pileup, pileup.repeat_interleave(d, 0)])

        def shape(at: torch.Tensor) -> torch.Tensor:
            return net.log_shape(at, log_area, pileup)

        def log_p_and_jacobian(at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return log_shape_and_jacobian(net, at, log_area_all, pileup_all)

        def objective(log_p: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
            dev_ = torch_poisson_deviance(log_p, log_amp, counts, log_bkg, clogc)
            return dev_ + prec * ((at - w0) ** 2).sum(1)

        damping = torch.full((n, 1, 1), DAMPING_START, device=dev)
        current = None
        for _ in range(steps):
            log_p, jac = log_p_and_jacobian(w)
            if current is None:
                current = objective(log_p, w)
            src = torch.exp(log_amp[:, None] + log_p)
            mu = src + bkg
            dmu = src[:, None, :] * jac
            grad = 2.0 * torch.einsum("ndm,nm->nd", dmu, 1.0 - counts / mu) + 2 * prec * (w - w0)
            fisher = 2.0 * torch.einsum("ndm,nem->nde", dmu, dmu / mu[:, None, :])
            fisher = fisher + 2 * prec * eye
            diag = torch.diag_embed(torch.diagonal(fisher, dim1=1, dim2=2)) + 1e-6 * eye
            step = -torch.linalg.solve(fisher + damping * diag, grad)
            trial = objective(shape(w + step), w + step)
            better = trial < current  # NaN (a step gone astray) is refused too
            w = torch.where(better[:, None], w + step, w)
            current = torch.where(better, trial, current)
            damping = torch.where(better[:, None, None], damping / 3, damping * 10)
            damping = damping.clamp(*DAMPING_RANGE)
        return w


def log_shape_and_jacobian(
    net: SpectralTransformerAE, z: torch.Tensor, log_area_all: torch.Tensor,
    pileup_all: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """log p (n, m) at the latents ``z`` (n, d) and its Jacobian (n, d, m) by forward
    differences: one decoder pass over ``z`` and its d copies shifted by ``FD_STEP``, one per
    latent direction. ``log_area_all`` and ``pileup_all`` are the spectra's rows followed by
    each row repeated d times (``torch.cat([a, a.repeat_interleave(d, 0)])``)."""
    n, d = z.shape
    shifted = (z[:, None, :] + FD_STEP * torch.eye(d, device=z.device)[None]).reshape(n * d, d)
    both = net.log_shape(torch.cat([z, shifted]), log_area_all, pileup_all)
    log_p = both[:n]
    return log_p, (both[n:].reshape(n, d, -1) - log_p[:, None, :]) / FD_STEP
