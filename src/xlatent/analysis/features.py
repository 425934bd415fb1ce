"""Feature sets compared on every analysis, aligned row by row on ``spec_id``.

- ``latent``: the model's ``latent_*`` columns.
- ``hardness``: what a person extracts from a CSC source: three hardness ratios and log10
  broad-band net counts. The ratios are the catalogue's photon-flux ``hard_hm``, ``hard_hs``,
  ``hard_ms`` when the set carries them (joined from a CSC catalogue, or a Multimodal Universe
  file) for at least half its rows, else the count ratios ``hr_counts_hm/hs/ms`` computed
  from the spectra; ``features.hardness.hardness_source`` says which (``catalog`` or
  ``counts``) and ``hardness_columns`` names the columns.
- ``hardness_flux``: the three ratios and log10 of the broad-band (0.5-7 keV) net photon
  flux ``photflux_b`` in photons cm^-2 s^-1, the counts divided by the effective area and the
  exposure (CSC's ``photflux_aper_b`` without its PSF aperture correction): what an
  astronomer takes from the catalogue; the real-sky row (``evaluate_table``) uses a flux too.
  Net counts mix the flux with the exposure and the instrument; the flux does not, and on
  the demo sky it makes the strongest clustering baseline of the three.
- ``hardness_ratios``: the same three ratios alone, without any brightness.
  The latents are compared with all three, so no lead rests on a weak baseline.
- ``latent_flux``: the latents + the same log10 photon flux. The latents describe the shape
  only (the decoder is given the counts), so the like-for-like comparisons are ``latent``
  against ``hardness_ratios`` (shape alone) and ``latent_flux`` against ``hardness_flux``
  (shape and brightness, as a catalogue user has them).
- ``pca``: a linear baseline of the same dimension as the latents (``xlatent.model.PCABaseline``
  on the model's own preprocessing).
- ``oracle``: the simulator's true spectral parameters (log N_H, Gamma, log kT, component
  fractions, ...), only when ``truth_*`` columns exist. It is *not* a ceiling for what a
  representation of the spectra could give: the simulator draws the model family (power law,
  thermal plasma, disc, ...) from the class, and the component fractions and the pattern of
  undefined parameters (Gamma of a thermal model, kT of a power law: the missing-value
  indicators) spell out that family, so the oracle largely reads the class off the
  simulator's recipe. It is kept (key unchanged, for compatibility) and labelled "oracle
  (model family revealed)"; removing the indicators alone would not help, the fractions carry
  the family too. The honest ceiling is ``noiseless``.
- ``noiseless``: the simulator's noiseless expected source spectra
  (``SpectrumSet.expected_counts``) coarse-binned exactly like ``spectrum``: what the probe can
  take from a spectrum without Poisson noise or background -- the ceiling for any
  representation of these spectra. A reference set (probe and regressions, not clustered);
  skipped, with the reason recorded, when the set has no ``expected_counts`` (real data).
- ``spectrum``: the uncompressed observed spectrum, the normalised net counts on coarse bins
  (the model's patch width) plus log10 broad net counts. A *reference* set
  (``role="reference"``): too wide to cluster, it is scored only by the supervised probe and
  the regressions, where it shows what a compression to 8 numbers keeps or loses of what a
  standard learner can take from the whole spectrum.

Every set is standardised; NaNs (e.g. hardness when a band is empty, Gamma for a thermal
model) are imputed with the column median and flagged by an indicator column, so the
analyses can use every row and still see that the value was missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import safe_log10
from xlatent.analysis.hardness import (  # noqa: F401 (re-exported: callers import them here)
    CATALOG_MIN_SHARE,
    HARDNESS_COLUMNS,
    catalog_hardness,
    hardness_choice,
    hardness_table,
    photon_flux_b,
)
from xlatent.core.vocabulary import latent_columns, latent_name

#: truth_* columns that describe normalisation or the observation, not spectral shape.
_NOT_SHAPE = ("truth_flux_", "truth_uflux_", "truth_counts", "truth_backscal", "truth_model")


@dataclass
class FeatureSet:
    """A standardised design matrix (rows aligned with the evaluation's meta)."""

    name: str
    X: np.ndarray
    columns: list[str]
    description: str
    raw_dim: int  # number of source columns before missing-value indicators
    info: dict[str, Any] = field(default_factory=dict)
    #: "compare": every analysis; "reference": supervised probe and regressions only.
    role: str = "compare"


#: Catalogue columns copied from the set's spectra by ``latent_catalog``; when present they
#: must agree with the set, which catches a catalogue of another set that reuses its ids.
_DATA_COLUMNS = ("net_counts_s", "net_counts_m", "net_counts_h", "net_counts_b")


def align(
    spectrum_set: Any,
    latents: pd.DataFrame,
    *,
    set_name: str = "<SpectrumSet>",
    latents_name: str = "<latent table>",
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``spectrum_set`` that have latents, and the latents in that order.

    Returns ``(set_index, Z)``: ``spectrum_set[set_index]`` lines up with ``Z``. Rows are
    joined on ``spec_id``, never by position, and the catalogue must belong to the set: each
    of its ``spec_id`` values appears once and is a spectrum of the set (spectra of the set
    without latents are allowed; the caller leaves them out), its ``net_counts_*`` columns,
    where present, equal the set's, and its latents are finite numbers. Anything else raises
    :class:`~xlatent.core.InputError` naming ``latents_name`` and ``set_name``.
    """
    from xlatent.core import InputError

    def refuse(reason: str) -> InputError:
        return InputError(latents_name, f"latent catalogue does not fit {set_name}: {reason}")

    cols = latent_columns(latents)
    if not cols:
        raise refuse("it has no latent_<i> columns")
    if "spec_id" not in latents:
        raise refuse("it has no spec_id column, so its rows cannot be matched to spectra")
    lat_ids = latents["spec_id"].astype(str)
    dup = lat_ids.duplicated()
    if dup.any():
        raise refuse(f"spec_id {lat_ids[dup].iloc[0]!r} appears more than once")
    ids = spectrum_set.meta["spec_id"].astype(str)
    foreign = ~lat_ids.isin(ids)
    if foreign.any():
        raise refuse(
            f"{int(foreign.sum())} of its {len(lat_ids)} spec_id values are not in the set "
            f"(first {lat_ids[foreign].iloc[0]!r}); latents of another set?"
        )
    try:
        values = latents[cols].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise refuse("its latent columns are not numbers") from None
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise refuse(f"latents of spec_id {lat_ids.iloc[row]!r} are not finite")
    lat_pos = pd.Series(np.arange(len(lat_ids)), index=lat_ids.to_numpy())
    have = ids.isin(lat_pos.index).to_numpy()
    set_index = np.flatnonzero(have)
    order = lat_pos.loc[ids[have].to_numpy()].to_numpy()
    meta = spectrum_set.meta
    for col in _DATA_COLUMNS:
        if col in latents and col in meta:
            theirs = pd.to_numeric(latents[col], errors="coerce").to_numpy(np.float64)[order]
            ours = meta[col].to_numpy(np.float64)[set_index]
            differ = ~np.isclose(theirs, ours, rtol=1e-6, atol=1e-6, equal_nan=True)
            if differ.any():
                sid = ids[have].iloc[int(np.argmax(differ))]
                raise refuse(
                    f"{col} differs for {int(differ.sum())} spectra (first {sid!r}): the same "
                    "spec_id values but other spectra"
                )
    return set_index, values[order]


def standardise(raw: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Median-impute NaNs (adding a 0/1 indicator per affected column), then z-score.

    Constant columns are dropped (they carry nothing and would divide by zero).
    """
    a = np.array(raw, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    cols, out_names = [], []
    n_missing = {}
    for j, name in enumerate(names):
        x = a[:, j]
        miss = np.isnan(x)
        if miss.all():
            continue
        if miss.any():
            x = np.where(miss, np.nanmedian(x), x)
            n_missing[name] = int(miss.sum())
        cols.append(x)
        out_names.append(name)
        if miss.any():
            cols.append(miss.astype(np.float64))
            out_names.append(f"{name}_missing")
    if not cols:
        return np.zeros((a.shape[0], 0)), [], {"n_missing": n_missing}
    x = np.column_stack(cols)
    sd = x.std(axis=0)
    keep = sd > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))
    x = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    return x, [n for n, k in zip(out_names, keep, strict=True) if k], {"n_missing": n_missing}


def oracle_table(meta: pd.DataFrame) -> pd.DataFrame:
    """True spectral-shape parameters from ``truth_*`` (logs of N_H and temperatures)."""
    out = {}
    for col in meta.columns:
        if not col.startswith("truth_") or col.startswith(_NOT_SHAPE):
            continue
        x = pd.to_numeric(meta[col], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(x).any():
            continue
        if col.endswith("_nh_1e22"):
            out["log_" + col[6:-5]] = safe_log10(x) + 22.0
        elif col.endswith("_kev") and col.startswith("truth_kt"):
            out["log_" + col[6:-4]] = safe_log10(x)
        else:
            out[col[6:]] = x
    return pd.DataFrame(out, index=meta.index)


#: Grid bins summed into one bin of the ``spectrum`` reference set (the model's patch width).
SPECTRUM_REBIN = 4


def spectrum_table(
    spectrum_set: Any, rebin: int = SPECTRUM_REBIN, net: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """log1p(k * normalised net spectrum) on ``k = ceil(m / rebin)`` coarse bins, log10 counts.

    Coarse bins keep the set's width comparable to the probe's sample size; on the default
    grid 4 bins span ~9% in energy, finer than the ACIS resolution. ``net``: the (n, m) net
    spectra to bin (default: observed counts minus background, clipped at 0); the
    ``noiseless`` set passes ``expected_counts``.
    """
    from xlatent.model.preprocess import log_shape

    if net is None:
        net = np.clip(spectrum_set.counts - spectrum_set.background, 0.0, None)
    coarse = np.add.reduceat(net, np.arange(0, net.shape[1], rebin), axis=1)
    x = np.column_stack([log_shape(coarse), safe_log10(coarse.sum(axis=1), floor=1.0)])
    lo = spectrum_set.grid.edges_kev[::rebin][: coarse.shape[1]]
    return x, [f"shape_{e:.2f}kev" for e in lo] + ["log_net_counts"]


def pca_features(
    spectrum_set: Any, n_components: int, is_train: np.ndarray, pca: Any = None, seed: int = 0
) -> tuple[np.ndarray, Any, str]:
    """PCA scores (n, n_components), the fitted baseline (or None) and a description.

    ``pca``: an already fitted baseline (e.g. trained on the model's training split) is used
    as is; otherwise ``PCABaseline`` is fitted on the training rows.
    """
    if pca is not None:
        return np.asarray(pca.transform(spectrum_set)), pca, "given PCA baseline"
    from xlatent.model import PCABaseline

    train = spectrum_set[np.flatnonzero(is_train)]
    model = PCABaseline(n_components=n_components, seed=seed).fit(train)
    return (
        np.asarray(model.transform(spectrum_set)),
        model,
        "xlatent.model.PCABaseline fitted on the training split",
    )


def build_feature_sets(
    spectrum_set: Any,
    z: np.ndarray,
    is_train: np.ndarray,
    pca: Any = None,
    seed: int = 0,
    skip: Any = None,
    hardness: pd.DataFrame | None = None,
) -> tuple[dict[str, FeatureSet], Any]:
    """The standardised feature sets for ``spectrum_set`` (already aligned with ``z``).

    Returns the sets (``latent``, ``latent_flux``, ``hardness``, ``hardness_flux``,
    ``hardness_ratios``, ``pca``, ``spectrum``; ``oracle`` and
    ``noiseless`` where the set has simulator truth) and the PCA baseline object used (None
    when unavailable). ``skip(name, reason)`` records omissions. ``hardness``: the set's
    :func:`hardness_table` when the caller has it already.
    """
    skip = skip or (lambda *_: None)
    sets: dict[str, FeatureSet] = {}
    d = z.shape[1]
    names = [latent_name(i) for i in range(d)]
    x, cols, info = standardise(z, names)
    sets["latent"] = FeatureSet("latent", x, cols, f"{d} model latents", d, info)

    h = hardness_table(spectrum_set) if hardness is None else hardness
    log_flux = safe_log10(h["photflux_b"].to_numpy(np.float64))
    x, cols, info = standardise(np.column_stack([z, log_flux]), [*names, "log_photflux_b"])
    desc = f"{d} model latents + log10 broad-band net photon flux (photons/cm2/s)"
    sets["latent_flux"] = FeatureSet("latent_flux", x, cols, desc, d + 1, info)
    hcols, hsource = hardness_choice(h)
    ratios = np.column_stack([h[c].to_numpy(dtype=np.float64) for c in hcols])
    what = (
        "CSC catalogue photon-flux hardness ratios hard_hm, hard_hs, hard_ms"
        if hsource == "catalog"
        else "count hardness ratios hr_counts_hm, hr_counts_hs, hr_counts_ms of the spectra"
    )
    # The three hardness sets: the ratios with a brightness column (name, values, what), or
    # alone.
    log_counts = safe_log10(h["net_counts_b"].to_numpy(dtype=np.float64), floor=1.0)
    brightness = {
        "hardness": ("log_net_counts_b", log_counts, " + log10 broad net counts"),
        "hardness_ratios": (None, None, " alone"),
        "hardness_flux": ("log_photflux_b", log_flux,
                          " + log10 broad-band net photon flux (photons/cm2/s)"),
    }  # fmt: skip
    for set_name, (col, values, suffix) in brightness.items():
        raw = ratios if col is None else np.column_stack([ratios, values])
        x, cols, info = standardise(raw, hcols if col is None else [*hcols, col])
        info = {**info, "hardness_source": hsource, "hardness_columns": hcols}
        sets[set_name] = FeatureSet(set_name, x, cols, what + suffix, raw.shape[1], info)

    pca_model = None
    try:
        scores, pca_model, desc = pca_features(spectrum_set, d, is_train, pca=pca, seed=seed)
        x, cols, info = standardise(scores, [f"pc_{i}" for i in range(scores.shape[1])])
        sets["pca"] = FeatureSet("pca", x, cols, f"{scores.shape[1]} principal components ({desc})",
                                 scores.shape[1], info)  # fmt: skip
    except Exception as exc:  # a baseline failing must not stop the evaluation
        skip("features.pca", f"PCA baseline failed: {type(exc).__name__}: {exc}")

    o = oracle_table(spectrum_set.meta)
    if o.shape[1] == 0:
        skip("features.oracle", "no truth_* columns (real data): no oracle upper bound")
    else:
        x, cols, info = standardise(o.to_numpy(dtype=np.float64), list(o.columns))
        desc = (
            "oracle (model family revealed): true spectral parameters incl. component "
            "fractions and undefined-parameter indicators, which encode the simulator's "
            "class-dependent model family; not a ceiling: " + ", ".join(o.columns)
        )
        sets["oracle"] = FeatureSet("oracle", x, cols, desc, o.shape[1], info)

    raw, names = spectrum_table(spectrum_set)
    x, cols, info = standardise(raw, names)
    sets["spectrum"] = FeatureSet(
        "spectrum", x, cols,
        f"reference: the uncompressed spectrum ({raw.shape[1] - 1} coarse bins of log1p(k * "
        "normalised net counts) + log10 broad net counts); probe and regression only",
        raw.shape[1], info, role="reference",
    )  # fmt: skip

    expected = getattr(spectrum_set, "expected_counts", None)
    if expected is None:
        skip("features.noiseless", "no expected_counts (real data): no noiseless ceiling")
    else:
        raw, names = spectrum_table(spectrum_set, net=np.clip(expected, 0.0, None))
        x, cols, info = standardise(raw, names)
        sets["noiseless"] = FeatureSet(
            "noiseless", x, cols,
            "ceiling: the simulator's noiseless expected source spectra, binned like 'spectrum' "
            f"({raw.shape[1] - 1} coarse bins + log10 expected counts); probe and regression "
            "only", raw.shape[1], info, role="reference",
        )  # fmt: skip
    return sets, pca_model
