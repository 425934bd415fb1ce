"""What a latent catalogue's standardised latents track, and k-means k = 8 per-class recall.

    PYTHONPATH=src python benchmarks/latent_geometry.py OUT/<config>/latents.parquet

(``benchmarks/ablation.py`` writes ``latents.parquet`` per config.) Prints each standardised
latent's correlation with log net counts, log N_H and the instrument columns, the share of
each latent's variance that log counts and the instrument explain linearly (nuisance R²), and
the recall per class of one k-means (k = 8, seed 0) whose clusters are mapped to classes as
the ``k8`` protocol maps them (argmax n(k,c)/n(c) on the training rows; test rows scored).
A single fit, for diagnosis: ``evaluate``'s figures are the ones to quote for accuracy.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from xlatent.core.vocabulary import latent_columns


def main(path: str) -> None:
    lat = pd.read_parquet(path)
    cols = latent_columns(lat)
    z = StandardScaler().fit_transform(lat[cols].to_numpy())
    y = lat["source_class"].astype(str).to_numpy()
    tr = (lat["split"] == "train").to_numpy()
    logc = np.log10(np.clip(lat["net_counts_b"].to_numpy(dtype=float), 1, None))
    bi = (lat["chip_type"] == "BI").to_numpy(dtype=float)
    acis_i = (lat["detector"] == "ACIS-I").to_numpy(dtype=float)
    epoch = lat["epoch_year"].to_numpy(dtype=float)
    theta = lat["theta_arcmin"].fillna(0).to_numpy(dtype=float)
    nh = np.log10(lat["truth_nh_1e22"].to_numpy(dtype=float) + 1e-3)
    for name, v in [("log counts", logc), ("log N_H", nh), ("BI chip", bi),
                    ("ACIS-I", acis_i), ("epoch", epoch), ("theta", theta)]:  # fmt: skip
        ok = np.isfinite(v)
        r = [np.corrcoef(z[ok, i], v[ok])[0, 1] for i in range(z.shape[1])]
        print(f"{name:10s} correlation  " + " ".join(f"{x:+.2f}" for x in r))
    x = np.column_stack([logc, bi, acis_i, epoch, theta, np.ones(len(z))])
    beta, *_ = np.linalg.lstsq(x, z, rcond=None)
    res = z - x @ beta
    r2 = 1 - res.var(0) / z.var(0)
    print("nuisance R² (log counts + instrument) " + " ".join(f"{v:.2f}" for v in r2))
    lab = KMeans(8, n_init=10, random_state=0).fit(z[tr]).predict(z)
    tab = pd.crosstab(lab[tr], y[tr])
    to_class = (tab / tab.sum(axis=0)).idxmax(axis=1)
    pred = to_class.reindex(lab[~tr]).to_numpy()
    recall = {c: float(np.mean(pred[y[~tr] == c] == c)) for c in sorted(set(y[y != ""]))}
    print("k8 recall", {c: round(v, 2) for c, v in recall.items()},
          "balanced accuracy", round(float(np.mean(list(recall.values()))), 3))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
