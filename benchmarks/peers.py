"""The contenders every accuracy benchmark runs beside sc_genept, defined once.

- :func:`random_table`: the control. GenePT-w of random unit gene vectors, same genes and
  dimensions as the text table: whatever the text adds must show up against it.
- :func:`celltypist_labels`: CellTypist 1.7.1, the published logistic-regression
  annotator, run by its own code in SGD mode (seeded): its default solver path passes
  ``multi_class``, which scikit-learn 1.8 removed, so the default cannot run here.
- :func:`celltypist_default_labels`: CellTypist's default model re-implemented exactly
  (its ``train`` with ``use_SGD=False`` and ``annotate`` in "best match" mode): features
  standardised and capped at 10, one-vs-rest L2 logistic regression with C=1 and lbfgs
  (1,000 iterations), a query scored on the genes it shares with the model, most
  decisive class wins.
- :func:`logistic_labels`: L2 logistic regression on the standardised log-expression of
  the genes both datasets share.
- :func:`knn_labels`: majority vote of the 15 nearest reference cells by cosine
  similarity of an embedding (the simplest use of a cell space).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from sc_genept.genes import GeneEmbeddings, Provenance


def random_table(like: GeneEmbeddings, seed: int = 0) -> GeneEmbeddings:
    """Random unit vectors for the genes of ``like``, with its dimensions."""
    vectors = np.random.default_rng(seed).normal(size=like.embeddings.shape)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return GeneEmbeddings(
        like.symbols,
        vectors,
        ensembl_ids=like.ensembl_ids,
        provenance=Provenance(text_source="none: random vectors", embedding_model="random normal"),
    )


def log_expression(adata, use_raw: bool) -> pd.DataFrame:
    """Log-normalised expression as a dense cells × genes frame (small data only)."""
    matrix, var = (adata.raw.X, adata.raw.var_names) if use_raw else (adata.X, adata.var_names)
    matrix = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    return pd.DataFrame(matrix, index=adata.obs_names, columns=var).T.groupby(level=0).first().T


def celltypist_labels(ref_expression: pd.DataFrame, labels, query_expression: pd.DataFrame):
    """CellTypist (SGD mode) trained on the reference, applied to the query; all genes."""
    import anndata as ad
    import celltypist

    model = celltypist.train(
        ad.AnnData(ref_expression.astype(np.float32)),
        labels=np.asarray(labels, dtype=str),
        check_expression=False,
        feature_selection=False,
        use_SGD=True,
        n_jobs=2,
        random_state=0,
    )
    query = ad.AnnData(query_expression.astype(np.float32))
    result = celltypist.annotate(query, model=model)
    return result.predicted_labels["predicted_labels"].astype(str).to_numpy()


def celltypist_default_labels(
    ref_expression: pd.DataFrame, labels, query_expression: pd.DataFrame
) -> np.ndarray:
    """CellTypist's default (one-vs-rest logistic regression), re-implemented exactly."""
    return celltypist_default_model(ref_expression, labels)(query_expression)


def celltypist_default_model(ref_expression: pd.DataFrame, labels):
    """CellTypist's default model fitted once: a function of a query's expression frame."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(ref_expression.to_numpy())
    scaled = np.minimum(scaler.transform(ref_expression.to_numpy()), 10)
    classifier = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=1000), n_jobs=2)
    classifier.fit(scaled, np.asarray(labels, dtype=str))

    def predict(query_expression: pd.DataFrame) -> np.ndarray:
        shared = np.flatnonzero(ref_expression.columns.isin(query_expression.columns))
        query = query_expression[ref_expression.columns[shared]].to_numpy()
        query = np.minimum((query - scaler.mean_[shared]) / scaler.scale_[shared], 10)
        coef = np.vstack([e.coef_ for e in classifier.estimators_])[:, shared]
        intercept = np.concatenate([e.intercept_ for e in classifier.estimators_])
        return classifier.classes_[np.argmax(query @ coef.T + intercept, axis=1)]

    return predict


def logistic_labels(ref_expression: pd.DataFrame, labels, query_expression: pd.DataFrame):
    """Standardised L2 logistic regression on the genes both have (missing genes: zero)."""
    return logistic_model(ref_expression, labels)(query_expression)


def logistic_model(ref_expression: pd.DataFrame, labels):
    """:func:`logistic_labels` fitted once: a function of a query's expression frame."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    classifier.fit(ref_expression.to_numpy(), np.asarray(labels, dtype=str))

    def predict(query_expression: pd.DataFrame) -> np.ndarray:
        query = query_expression.reindex(columns=ref_expression.columns, fill_value=0.0)
        return classifier.predict(query.to_numpy())

    return predict


def knn_labels(ref_embedding: np.ndarray, labels, query_embedding: np.ndarray, k: int = 15):
    """Majority label of the ``k`` most cosine-similar reference cells."""
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarity = unit(query_embedding) @ unit(ref_embedding).T
    nearest = np.argsort(-similarity, axis=1)[:, :k]
    labels = np.asarray(labels, dtype=object)
    return np.array([pd.Series(labels[row]).mode().iloc[0] for row in nearest], dtype=object)
