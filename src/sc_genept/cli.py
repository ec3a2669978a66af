"""The ``sc-genept`` command: ``demo`` and ``genes text|embed|info``."""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from pathlib import Path
from urllib.parse import urlsplit

#: What ``genes text --out`` can write (see :func:`sc_genept.genes.text.write_texts`).
_TEXT_FORMATS = (".parquet", ".csv", ".tsv", ".txt")


def _positive_int(value: str) -> int:
    """Type of an option that takes a whole number ≥ 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {value!r}")
    return number


def _non_negative(value: str) -> float:
    """Type of an option that takes a finite number ≥ 0."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {value!r}")
    return number


def _existing_file(parser: argparse.ArgumentParser, path: str | None, what: str) -> None:
    """A usage error (exit 2) unless ``path`` is an existing file."""
    if path is not None and not Path(path).is_file():
        state = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
        parser.error(f"{what} {path} {state}: pass the path of an existing file.")


def demo(out: Path, *, max_epochs: int = 200) -> Path:
    """Embed scanpy's bundled PBMCs, plot a UMAP, transfer CL labels from 80 % to 20 %."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    for noisy in ("lightning.pytorch", "scvi"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import matplotlib.pyplot as plt
    import numpy as np
    import scanpy as sc

    import sc_genept

    adata = sc_genept.datasets.pbmc68k_reduced()
    print(f"pbmc68k_reduced: {adata.n_obs} cells × {adata.raw.n_vars} genes (log-normalised .raw)")
    sc.tl.genept_embed(adata, use_raw=True)
    info = adata.uns["X_genept"]
    genes = info["genes"]
    print(
        f"genept_embed: {genes['n_genes_matched']} of {genes['n_genes']} genes matched "
        f"({genes['fraction_genes_matched']:.1%}; by symbol {genes['matched_by']['symbol']}, "
        f"by alias {genes['matched_by']['alias']}), covering "
        f"{info['fraction_counts_covered']:.1%} of the expression"
    )
    print(
        f"gene table: {info['gene_embeddings']['embedding_model']}, {info['params']['n_dims']} dims"
    )
    sc.pp.neighbors(adata, use_rep="X_genept", random_state=0)
    sc.tl.umap(adata, random_state=0)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "umap_genept.png"
    fig = sc.pl.umap(
        adata,
        color="cell_type",
        title="pbmc68k_reduced, GenePT-w embedding",
        return_fig=True,
        show=False,
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"UMAP on X_genept coloured by cell type: {path}")

    # label transfer: train on a stratified 80 %, annotate the other 20 %
    rng = np.random.default_rng(0)
    labels = adata.obs["cell_type_ontology_term_id"].to_numpy()
    held_out = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[::5] for c in np.unique(labels)]
    )
    is_query = np.isin(np.arange(adata.n_obs), held_out)
    reference, query = adata[~is_query].copy(), adata[is_query].copy()
    sc.tl.genept_annotate(
        query,
        reference=reference,
        labels_key="cell_type_ontology_term_id",
        max_epochs=max_epochs,
        enable_progress_bar=False,
    )
    truth = query.obs["cell_type_ontology_term_id"].astype(str)
    table = sc_genept.metrics.evaluate(
        truth, query.obs["genept_cell_type_ontology_term_id"].astype(str)
    )
    print(
        f"\ngenept_annotate: trained on {reference.n_obs} cells, annotated {query.n_obs}; "
        f"mean confidence {query.obs['genept_cell_type_confidence'].mean():.2f}"
    )
    print(table.round(3).to_string())
    print(
        f"(hierarchical scores leave out the terms every true label shares: {table.attrs['excluded_terms']})"
    )
    return path


def _demo(args) -> None:
    if args.out.exists() and not args.out.is_dir():
        args.parser.error(f"--out {args.out} is a file; pass a folder for the demo's output.")
    demo(args.out)


def _confirmer(args):
    """How to confirm paid calls: not at all with --yes or a server on this machine, else ask.

    The question comes only when something uncached is about to be sent, with its estimate;
    without a terminal to answer at, the answer is no.
    """
    if args.yes or urlsplit(args.base_url or "").hostname in ("localhost", "127.0.0.1", "::1"):
        return None

    def ask(what: str) -> bool:
        print(what)
        return sys.stdin.isatty() and input("send? [y/N] ").strip().lower() == "y"

    return ask


def genes_text(args) -> None:
    """``sc-genept genes text``: build (and optionally enrich) a gene-texts table."""
    from sc_genept.genes import text

    if Path(args.out).suffix.lower() not in _TEXT_FORMATS:
        args.parser.error(
            f"--out must end in .parquet, .csv, .tsv or .txt (got {args.out}): the format "
            "follows the suffix."
        )
    if args.source != "bundled" and args.path is None:
        args.parser.error(f"--from {args.source} needs a PATH to read.")
    _existing_file(args.parser, args.path, "PATH")
    _existing_file(args.parser, args.summaries, "--summaries")
    if args.source == "bundled":
        texts = text.bundled()
    else:
        try:
            if args.source == "ncbi":
                texts = text.read_ncbi_gene_info(args.path, summaries=args.summaries)
            else:
                texts = text.read_mygene_json(args.path)
        except (ValueError, KeyError, OSError) as err:
            form = "an NCBI gene_info TSV" if args.source == "ncbi" else "mygene.info JSON"
            raise ValueError(
                f"cannot read {args.path} as {args.source} input ({type(err).__name__}: {err}); "
                f"--from {args.source} takes {form}."
            ) from err
    print(f"{len(texts):,} gene texts from {args.source}")
    if args.enrich_model:
        texts = text.enrich(
            texts,
            model=args.enrich_model,
            base_url=args.base_url,
            cache_dir=args.cache_dir,
            confirm=_confirmer(args),
        )
        print(f"enriched with {args.enrich_model}")
    print(f"written {text.write_texts(texts, args.out)}")


def genes_embed(args) -> None:
    """``sc-genept genes embed``: embed a texts table into a gene table."""
    from sc_genept.genes import OpenAIEmbedder, SentenceTransformerEmbedder, build_table, text

    _existing_file(args.parser, args.texts, "TEXTS")
    if args.dimensions is not None and args.provider != "openai":
        args.parser.error(
            "--dimensions applies to --provider openai only (a local model makes vectors of "
            "its own length): leave it out, or pass --provider openai."
        )
    texts = text.read_texts(args.texts)
    if args.provider == "openai":
        embedder = OpenAIEmbedder(
            args.model or "text-embedding-3-large",
            dimensions=args.dimensions,
            base_url=args.base_url,
        )
    else:
        embedder = SentenceTransformerEmbedder(args.model)
    table = build_table(
        texts,
        embedder,
        text_source=args.text_source or f"texts from {Path(args.texts).name}",
        cache_dir=args.cache_dir,
        batch_api=args.batch_api,
        price_per_million_tokens=args.price,
        poll_interval=args.poll_interval,
        confirm=_confirmer(args),
    )
    path = table.save(args.out, dtype="float16" if args.float16 else "float32")
    print(f"{table!r}: {path}")


def genes_info(args) -> None:
    """``sc-genept genes info``: provenance and coverage of a gene table."""
    import json

    import numpy as np

    from sc_genept.genes import load

    table = load(args.table, with_texts=True)
    has_ensembl = np.mean([e is not None for e in table.ensembl_ids]) if table.n_genes else 0.0
    print(repr(table))
    print(
        f"genes: {table.n_genes:,}; with an Ensembl id: {has_ensembl:.1%}; texts: {'yes' if table.texts is not None else 'no'}"
    )
    print(json.dumps(table.describe(), indent=1))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sc-genept``."""
    parser = argparse.ArgumentParser(prog="sc-genept", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="embed scanpy's bundled PBMCs, plot a UMAP, annotate 20 %% from the other 80 %%",
    )
    demo_parser.add_argument(
        "--out", type=Path, default=Path("sc_genept_demo"), help="output folder"
    )
    demo_parser.set_defaults(run=_demo, parser=demo_parser)

    genes = commands.add_parser(
        "genes", help="gene texts and gene-embedding tables"
    ).add_subparsers(dest="genes_command", required=True)
    text_parser = genes.add_parser("text", help="build (and enrich) a gene-texts table")
    text_parser.add_argument(
        "--from", dest="source", choices=["bundled", "ncbi", "mygene"], default="bundled"
    )
    text_parser.add_argument("path", nargs="?", help="NCBI gene_info TSV or mygene JSON")
    text_parser.add_argument("--summaries", help="TSV of GeneID and summary (with --from ncbi)")
    text_parser.add_argument(
        "--enrich-model", help="chat model that appends documented facts, e.g. gpt-4o-mini"
    )
    text_parser.add_argument(
        "--base-url", help="OpenAI-compatible server (API key from OPENAI_API_KEY)"
    )
    text_parser.add_argument(
        "--cache-dir", help="cache folder (default $SC_GENEPT_CACHE or ~/.cache/sc_genept)"
    )
    text_parser.add_argument(
        "--out", required=True, help="texts table to write (.parquet, .csv, .tsv)"
    )
    text_parser.add_argument("--yes", action="store_true", help="send to a paid API without asking")
    text_parser.set_defaults(run=genes_text, parser=text_parser)

    embed_parser = genes.add_parser("embed", help="embed a texts table into a gene table")
    embed_parser.add_argument("texts", help="texts table (symbol, text[, ensembl_id])")
    embed_parser.add_argument("--out", required=True, help="gene table to write (.parquet)")
    embed_parser.add_argument("--provider", choices=["local", "openai"], default="local")
    embed_parser.add_argument(
        "--model", help="default: bundled all-MiniLM-L6-v2 / text-embedding-3-large"
    )
    embed_parser.add_argument(
        "--dimensions", type=_positive_int, help="Matryoshka dimensions (OpenAI text-embedding-3-*)"
    )
    embed_parser.add_argument(
        "--base-url", help="OpenAI-compatible server (API key from OPENAI_API_KEY)"
    )
    embed_parser.add_argument(
        "--batch-api", action="store_true", help="OpenAI Batch API: half price, resumable"
    )
    embed_parser.add_argument(
        "--poll-interval", type=_non_negative, default=30.0, help="seconds between Batch API checks"
    )
    embed_parser.add_argument(
        "--price", type=_non_negative, help="USD per million tokens for the cost estimate"
    )
    embed_parser.add_argument(
        "--text-source", help="what the texts are, for the table's provenance"
    )
    embed_parser.add_argument(
        "--cache-dir", help="cache folder (default $SC_GENEPT_CACHE or ~/.cache/sc_genept)"
    )
    embed_parser.add_argument(
        "--float16", action="store_true", help="store vectors as float16 (half the size)"
    )
    embed_parser.add_argument(
        "--yes", action="store_true", help="send to a paid API without asking"
    )
    embed_parser.set_defaults(run=genes_embed, parser=embed_parser)

    info_parser = genes.add_parser("info", help="provenance and coverage of a gene table")
    info_parser.add_argument("table", nargs="?", default="default", help="bundled name or file")
    info_parser.set_defaults(run=genes_info, parser=info_parser)

    args = parser.parse_args(argv)
    from sc_genept.genes import BatchJobError, Cancelled, EmbeddingError

    try:
        args.run(args)
    except Cancelled:
        raise SystemExit("Nothing sent. Pass --yes to use a paid API without asking.") from None
    except (
        ValueError,
        KeyError,
        OSError,
        pickle.UnpicklingError,
        EmbeddingError,
        BatchJobError,
    ) as err:
        # what went wrong and what to do, without a traceback (sc_genept's messages say both)
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        parser.exit(1, f"{parser.prog}: error: {message}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
