"""The argument parser of ``sc-genept``, built from the standard library alone.

``sc-genept --help``, ``sc-genept COMMAND --help`` and ``--version`` read only this
module (and the package's ``__init__``, which is as cheap): scanpy, anndata, torch and
pandas load in :mod:`sc_genept.cli` once a command runs. The help strings are plain text
for a terminal (no reStructuredText); argparse wants ``%%`` for a percent sign.
"""

from __future__ import annotations

import argparse
import math
import shutil
import textwrap
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PROG = "sc-genept"

DESCRIPTION = (
    "GenePT cell embeddings and Cell Ontology annotation for scanpy, from the command line."
)

EPILOG = """\
Run 'sc-genept COMMAND --help' for the options of a command.
Exit status: 0 done, 1 error (the message says what to do), 2 wrong usage.
Pass --debug to see the traceback of an error."""

ANNOTATE_EPILOG = (
    "examples:\n"
    "  transfer labels from an annotated reference:\n"
    "    sc-genept annotate query.h5ad -o annotated.h5ad \\\n"
    "        --reference reference.h5ad --labels-key cell_type_ontology_term_id\n"
    "  annotate with a trained model (a folder saved by GenePTClassifier.save):\n"
    "    sc-genept annotate query.h5ad -o annotated.h5ad --model my_model/\n"
    "\n"
    "The output is the input with the annotation added: obs columns KEY, "
    "KEY_ontology_term_id, KEY_confidence and KEY_finest*, and uns[KEY] (KEY is "
    "--key-added). The input file is never changed: -o may not name INPUT or REF, even "
    "with --overwrite. An existing output is replaced only with --overwrite, and never "
    "when it is read-only; it is written whole or not at all (Ctrl-C leaves it as it was)."
)


def _wrapped(text: str | None) -> str | None:
    """A description or epilog with each paragraph line wrapped to the terminal.

    Blocks with indented lines (examples) are kept as written. Printed through argparse's
    public ``RawDescriptionHelpFormatter``, which keeps the lines as given here.
    """
    if text is None:
        return None
    width = max(shutil.get_terminal_size().columns - 2, 40)
    blocks = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if any(line[:1].isspace() for line in lines):
            blocks.append(block)
        else:
            blocks.append("\n".join(textwrap.fill(line, width) for line in lines))
    return "\n\n".join(blocks)


def _parser(add, *args, **kwargs) -> argparse.ArgumentParser:
    """``add(*args, **kwargs)`` (a parser or sub-parser factory) with wrapped help texts."""
    for text in ("description", "epilog"):
        if text in kwargs:
            kwargs[text] = _wrapped(kwargs[text])
    return add(*args, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def positive_int(value: str) -> int:
    """Type of an option that takes a whole number ≥ 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {value!r}")
    return number


def non_negative(value: str) -> float:
    """Type of an option that takes a finite number ≥ 0."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {value!r}")
    return number


def fraction(value: str) -> float:
    """Type of an option that takes a number in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {value!r}")
    return number


def _version() -> str:
    try:
        return version("sc-genept")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _common(top_level: bool) -> argparse.ArgumentParser:
    """-v and --debug, accepted before and after the command name.

    On the subcommands they default to "not given" (SUPPRESS), so that a subcommand's
    default does not overwrite a value given before the command name.
    """
    common = argparse.ArgumentParser(add_help=False)
    default = {} if top_level else {"default": argparse.SUPPRESS}
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="say more: -v shows scanpy's info messages and training progress, -vv its debug "
        "messages too",
        **({"default": 0} if top_level else default),
    )
    common.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error",
        **default,
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``sc-genept`` parser; each command's parser sets ``handler`` and ``parser``."""
    parser = _parser(
        argparse.ArgumentParser,
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[_common(top_level=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = _common(top_level=False)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo(commands, common)
    _add_annotate(commands, common)
    genes = _parser(
        commands.add_parser,
        "genes",
        help="gene texts and gene-embedding tables",
        description="Build gene texts, embed them into a gene table, and describe gene tables.",
    ).add_subparsers(dest="genes_command", required=True)
    _add_genes_text(genes, common)
    _add_genes_embed(genes, common)
    _add_genes_info(genes, common)
    return parser


def _command(group, common, name: str, handler: str, **kwargs) -> argparse.ArgumentParser:
    """A command's parser in ``group``, with the ``common`` options, that sets ``handler``."""
    sub = _parser(group.add_parser, name, parents=[common], **kwargs)
    sub.set_defaults(handler=handler, parser=sub)
    return sub


def _add_demo(commands, common) -> None:
    """The parser of ``sc-genept demo``."""
    demo = _command(
        commands,
        common,
        "demo",
        "demo",
        help="embed scanpy's bundled PBMCs, plot a UMAP, annotate 20 %% from the other 80 %%",
        description="Embed scanpy's bundled PBMCs (pbmc68k_reduced), plot a UMAP of the "
        "embedding, and annotate 20 % of the cells with a classifier trained on the other "
        "80 %.",  # descriptions are printed as written; only help strings are %-formatted
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("sc_genept_demo"),
        help="folder for the UMAP plot (default: sc_genept_demo)",
    )


def _add_annotate(commands, common) -> None:
    """The parser of ``sc-genept annotate``: what to annotate with, which matrix, the output."""
    annotate = _command(
        commands,
        common,
        "annotate",
        "annotate",
        help="annotate the cells of an .h5ad file with Cell Ontology terms",
        description="Annotate the cells of an .h5ad file with Cell Ontology terms and "
        "confidences, with a trained model or a classifier trained here on an annotated "
        "reference, and write the result to a new .h5ad file.",
        epilog=ANNOTATE_EPILOG,
    )
    annotate.add_argument("input", metavar="INPUT", help="the cells to annotate (.h5ad)")
    annotate.add_argument(
        "-o", "--out", required=True, help="where to write the annotated cells (.h5ad)"
    )
    _add_annotate_source(annotate)
    _add_annotate_matrix(annotate)
    _add_annotate_output(annotate)


def _add_annotate_source(annotate: argparse.ArgumentParser) -> None:
    """The options of ``annotate`` that say what to annotate with: a model or a reference."""
    source = annotate.add_argument_group(
        "what to annotate with (one of)",
        "A model, or a reference with its labels to train one on.",
    )
    source.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="a trained model: a bundled model's name or a folder saved by GenePTClassifier.save",
    )
    source.add_argument(
        "--reference", metavar="REF", help="annotated cells to train a classifier on (.h5ad)"
    )
    source.add_argument(
        "--labels-key",
        metavar="KEY",
        help="column of the reference's obs with Cell Ontology ids or names (with --reference)",
    )
    source.add_argument(
        "--max-epochs",
        type=positive_int,
        metavar="N",
        help="upper bound on training passes over the reference (default 200; with --reference)",
    )


def _add_annotate_matrix(annotate: argparse.ArgumentParser) -> None:
    """The options of ``annotate`` that choose the expression matrix to read."""
    matrix = annotate.add_argument_group("which expression matrix to read")
    matrix.add_argument(
        "--layer",
        help="layer of INPUT to read instead of its X (default: X, or raw if X is scaled)",
    )
    matrix.add_argument(
        "--use-raw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read INPUT's raw (or, with --no-use-raw, its X) rather than choose by itself",
    )
    matrix.add_argument(
        "--reference-layer", metavar="LAYER", help="the same as --layer, for the reference"
    )
    matrix.add_argument(
        "--reference-use-raw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the same as --use-raw, for the reference",
    )
    matrix.add_argument(
        "--orthologs",
        metavar="CSV",
        help="for another species than the gene table's (human): a CSV/TSV with a header and "
        "two columns, the data's gene names and their human orthologs (default: "
        "genes match by symbol ignoring case)",
    )


def _add_annotate_output(annotate: argparse.ArgumentParser) -> None:
    """The options of ``annotate`` that shape what it writes."""
    output = annotate.add_argument_group("output")
    output.add_argument(
        "--key-added",
        metavar="KEY",
        default="genept_cell_type",
        help="prefix of the obs columns written (default: genept_cell_type)",
    )
    output.add_argument(
        "--min-confidence",
        type=fraction,
        metavar="F",
        default=0.5,
        help="probability a term (with everything below it) needs to be reported: a cell "
        "below it for every subtype gets the broader type (default 0.5)",
    )
    output.add_argument(
        "--max-error",
        type=fraction,
        metavar="F",
        help="instead of --min-confidence: the share of wrong calls to allow (e.g. 0.1), "
        "bounded on reference cells held out from training; coarser terms where needed",
    )
    output.add_argument(
        "--novelty-rate",
        type=fraction,
        metavar="F",
        help="call cells less typical of the reference than all but this share of its "
        "held-out cells (e.g. 0.02) above every reference type: they may be of a type it "
        "lacks (default: no check; meant for data like the reference's)",
    )
    output.add_argument(
        "--majority-voting",
        action="store_true",
        help="also write each cluster's most frequent call (a Leiden over-clustering of "
        "the query), as CellTypist's majority voting",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output file if it exists (never INPUT or REF, nor a read-only file)",
    )


def _add_genes_text(genes, common) -> None:
    """The parser of ``sc-genept genes text``."""
    text = _command(
        genes,
        common,
        "text",
        "genes text",
        help="build (and enrich) a gene-texts table",
        description="Build a table of gene texts (symbol, text, Ensembl id) from the bundled "
        "texts, an NCBI gene_info file or mygene.info JSON, optionally enriched by a chat model.",
    )
    text.add_argument(
        "--from",
        dest="source",
        choices=["bundled", "ncbi", "mygene"],
        default="bundled",
        help="where the texts come from (default: bundled)",
    )
    text.add_argument("path", nargs="?", help="NCBI gene_info TSV or mygene JSON")
    text.add_argument("--summaries", help="TSV of GeneID and summary (with --from ncbi)")
    text.add_argument(
        "--enrich-model", help="chat model that appends documented facts, e.g. gpt-4o-mini"
    )
    text.add_argument("--base-url", help="OpenAI-compatible server (API key from OPENAI_API_KEY)")
    text.add_argument(
        "--cache-dir", help="cache folder (default $SC_GENEPT_CACHE or ~/.cache/sc_genept)"
    )
    text.add_argument(
        "--out", required=True, help="texts table to write (.parquet, .csv, .tsv or .txt)"
    )
    text.add_argument("--yes", action="store_true", help="send to a paid API without asking")


def _add_genes_embed(genes, common) -> None:
    """The parser of ``sc-genept genes embed``."""
    embed = _command(
        genes,
        common,
        "embed",
        "genes embed",
        help="embed a texts table into a gene table",
        description="Embed a table of gene texts with a local sentence-transformers model or "
        "an OpenAI (or compatible) embeddings API, and write the gene table.",
    )
    embed.add_argument("texts", help="texts table (symbol, text[, ensembl_id])")
    embed.add_argument("--out", required=True, help="gene table to write (.parquet)")
    embed.add_argument(
        "--provider",
        choices=["local", "openai"],
        default="local",
        help="local model (needs sc-genept[local]) or OpenAI API (needs sc-genept[openai])",
    )
    embed.add_argument(
        "--model", help="default: the bundled all-MiniLM-L6-v2 / text-embedding-3-large"
    )
    embed.add_argument(
        "--dimensions",
        type=positive_int,
        help="Matryoshka dimensions (OpenAI text-embedding-3-* only)",
    )
    embed.add_argument("--base-url", help="OpenAI-compatible server (API key from OPENAI_API_KEY)")
    embed.add_argument(
        "--batch-api", action="store_true", help="OpenAI Batch API: half price, resumable"
    )
    embed.add_argument(
        "--poll-interval",
        type=non_negative,
        default=30.0,
        help="seconds between Batch API checks (default 30)",
    )
    embed.add_argument(
        "--price", type=non_negative, help="USD per million tokens for the cost estimate"
    )
    embed.add_argument("--text-source", help="what the texts are, for the table's provenance")
    embed.add_argument(
        "--cache-dir", help="cache folder (default $SC_GENEPT_CACHE or ~/.cache/sc_genept)"
    )
    embed.add_argument(
        "--float16", action="store_true", help="store vectors as float16 (half the size)"
    )
    embed.add_argument("--yes", action="store_true", help="send to a paid API without asking")


def _add_genes_info(genes, common) -> None:
    """The parser of ``sc-genept genes info``."""
    info = _command(
        genes,
        common,
        "info",
        "genes info",
        help="provenance and coverage of a gene table",
        description="Print the provenance and gene coverage of a gene table.",
    )
    info.add_argument(
        "table", nargs="?", default="default", help="bundled table name or file (default: default)"
    )
