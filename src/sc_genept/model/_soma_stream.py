"""The stream under :class:`~sc_genept.model.SomaCells`: cells read from a SOMA array.

Each epoch's cells (a shuffled list of joinids) are shared among DDP ranks and DataLoader
workers; each share is read with tiledbsoma's own ``read(coords=...)``, ``io_batch_size``
cells at a time, embedded with GenePT-w (or read from a stored embedding), and cut into
batches.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import sparse
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sc_genept._checks import check_value_kind
from sc_genept._genept_w import genept_w

if TYPE_CHECKING:
    from sc_genept.model._soma import SomaCells

INSTALL = "pip install 'sc-genept[soma]'"
#: Cells embedded at a time in the training stream (then cut into batches).
_EMBED_ROWS = 2048


def soma():
    """The module tiledbsoma, or an ImportError naming the install."""
    try:
        import tiledbsoma
    except ImportError as err:
        raise ImportError(
            f"Training from a SOMA experiment needs tiledbsoma ({err.name} is missing): {INSTALL}"
        ) from err
    return tiledbsoma


@contextmanager
def open_experiment(uri):
    """The SOMA experiment at ``uri``, open for reading; sc_genept's error if there is none."""
    tiledbsoma = soma()
    uri = str(uri)
    try:
        exp = tiledbsoma.Experiment.open(uri)
    except tiledbsoma.DoesNotExistError:
        raise FileNotFoundError(
            f"No SOMA experiment at {uri!r}: nothing there is a SOMA object (a missing folder, "
            "a mistyped URI, or a plain file). Pass the URI of a SOMA experiment (e.g. written "
            "by tiledbsoma.io.from_anndata), or an open one (census['census_data']"
            "['homo_sapiens'])."
        ) from None
    except tiledbsoma.SOMAError as err:
        raise ValueError(
            f"{uri!r} cannot be opened as a SOMA experiment ({_first_line(err)}): pass the "
            "URI of the experiment itself, not of one of its measurements or dataframes; for "
            "cloud storage, check your access to it."
        ) from None
    with exp:
        yield exp


def read_obs(exp, value_filter: str | None, columns: list[str], wanted: list[str]):
    """``obs`` columns ``wanted`` of the cells ``value_filter`` selects, as a DataFrame.

    A filter tiledbsoma cannot use (a syntax error, an unknown column, a value of the
    wrong type) is refused naming the filter and what is wrong, not in tiledbsoma's words.
    """
    tiledbsoma = soma()
    try:
        return exp.obs.read(value_filter=value_filter, column_names=wanted).concat().to_pandas()
    except (tiledbsoma.SOMAError, TypeError, ValueError, SyntaxError) as err:
        if value_filter is None:
            raise
        raise ValueError(
            f"obs_value_filter {value_filter!r} cannot be used: "
            f"{_filter_problem(value_filter, err, columns)}. A SOMA value filter compares obs "
            'columns with values, joined by and/or, e.g. "is_primary_data == True and '
            "tissue_general == 'blood'\"."
        ) from None


#: Words of a SOMA value filter that are not column names.
_FILTER_WORDS = {"and", "or", "not", "in", "True", "False", "true", "false"}


def _filter_problem(value_filter: str, err: Exception, columns: list[str]) -> str:
    """What is wrong with a filter tiledbsoma refused, in words a user can act on."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "''", value_filter)
    names = re.findall(r"(?<![\w.])[A-Za-z_]\w*", unquoted)
    unknown = sorted({n for n in names if n not in _FILTER_WORDS and n not in columns})
    if unknown:
        return f"no obs column {unknown} (obs has {columns})"
    if "incompatible function arguments" in str(err):  # e.g. tissue == 3
        return (
            "a value does not match its column's type (quote text values, e.g. tissue == "
            "'blood'; write True or False for booleans)"
        )
    reason = _first_line(err)
    return reason[:1].lower() + reason[1:]


def _first_line(err: Exception) -> str:
    """The message of a tiledbsoma error without its class name and its C++ call stack."""
    line = re.sub(r"^(SOMAError: )+", "", str(err).strip().split("\n")[0].strip())
    if len(line) > 1 and line[0] == line[-1] and line[0] in "'\"":  # 'quoted whole'
        line = line[1:-1]
    return line or type(err).__name__


def read_rows(array, joinids: np.ndarray, var_ids: np.ndarray) -> sparse.csr_matrix:
    """Rows ``joinids`` (in that order) by columns ``var_ids`` (sorted) of a SOMA array.

    Refuses NaN or infinite values, naming the array and the cells: every read (training
    batches, the standardisation sample, calibration cells, the prototype) goes through
    here, and a NaN would otherwise reach the model's inputs unseen.
    """
    order = np.argsort(joinids, kind="stable")
    wanted = joinids[order]
    table = array.read(coords=(wanted,)).tables().concat()
    var = table["soma_dim_1"].to_numpy()
    cols = np.searchsorted(var_ids, var).clip(max=len(var_ids) - 1)
    keep = var_ids[cols] == var  # columns outside var_ids are left out
    rows = order[np.searchsorted(wanted, table["soma_dim_0"].to_numpy()[keep])]
    values = table["soma_data"].to_numpy()[keep]
    _check_finite(values, rows, joinids, array)
    return sparse.csr_matrix((values, (rows, cols[keep])), shape=(len(joinids), len(var_ids)))


def _check_finite(values: np.ndarray, rows: np.ndarray, joinids: np.ndarray, array) -> None:
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return
    cells = np.unique(joinids[rows[~np.isfinite(values)]]).tolist()
    raise ValueError(
        f"The SOMA array {getattr(array, 'uri', array)} holds NaN or infinite values for "
        f"{len(cells)} cells (soma_joinid {cells[:10]}): they would reach the model's inputs "
        "(and its standardisation) as NaN. Leave those cells out with obs_value_filter "
        f'(e.g. "soma_joinid not in {cells[:10]}"), or fix the array.'
    )


def rank_and_world_size() -> tuple[int, int]:
    """The DDP rank of this process and the number of ranks.

    From ``torch.distributed``, else the ``RANK``/``WORLD_SIZE`` variables, else one process.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


@dataclass(frozen=True)
class Locator:
    """Where an array of cells lives (``X`` or ``obsm``); picklable into DataLoader workers."""

    uri: str
    measurement_name: str
    layer_name: str
    tiledb_timestamp_ms: int
    tiledb_config: dict
    #: ``"X"`` (expression) or ``"obsm"`` (a stored embedding).
    collection: str = "X"

    @classmethod
    def create(cls, exp, measurement_name: str, layer_name: str, collection: str) -> Locator:
        return cls(
            exp.uri,
            measurement_name,
            layer_name,
            exp.tiledb_timestamp_ms,
            dict(exp.context.tiledb_config),
            collection,
        )

    @contextmanager
    def open(self):
        """``(array, obs)`` of the experiment, open for reading."""
        tiledbsoma = soma()
        context = tiledbsoma.SOMATileDBContext(tiledb_config=self.tiledb_config)
        with tiledbsoma.Experiment.open(
            self.uri, tiledb_timestamp=self.tiledb_timestamp_ms, context=context
        ) as exp:
            yield exp.ms[self.measurement_name][self.collection][self.layer_name], exp.obs


class Embedder:
    """GenePT-w of batches of cells × all genes, as :func:`genept_embed` computes it.

    ``normalize``: ``True`` when the first cells (the prototype) held counts, which every
    batch must hold too and which are log-normalised; ``False`` when they held normalised
    values, which every batch must hold too; ``None`` to embed the values as they are
    (``normalize=False`` asked for). A batch of the other kind is refused, as
    :func:`genept_embed` refuses a matrix that mixes them.
    """

    def __init__(self, var_index, vectors, duplicates, columns=None, normalize: bool | None = True):
        self.var_index = var_index
        self.vectors = vectors
        self.duplicates = duplicates
        #: With the expression input: the embedded genes' columns in the order of the
        #: record's (sorted) names, as genept_embed(expression=True) stores them.
        self.columns = columns
        self.normalize = normalize

    @classmethod
    def plan(
        cls, names: np.ndarray, column: str, gene_embeddings, genes, *, expression: bool
    ) -> Embedder:
        """Which columns feed which gene vector, in the order genept_embed uses."""
        from sc_genept._embedding import _GenePlan, gene_table
        from sc_genept.genes import match_genes

        table = gene_table(gene_embeddings)
        match = match_genes(names, table)
        if match.n_matched == 0:
            raise ValueError(
                f"None of the {len(names)} genes of var[{column!r}] is in the gene table "
                f"({table!r}), e.g. {list(names[:5])}: pass var_names=<column of gene symbols "
                "or Ensembl ids> (the census's feature_name or feature_id)."
            )
        # cell_embedding's own plan: the same product, bit for bit
        with warnings.catch_warnings():  # the prototype's embedding already warned
            warnings.simplefilter("ignore", UserWarning)
            plan = _GenePlan.of(
                names, table, match, genes, source=f"var[{column!r}]", gene_symbols=column
            )
        if not len(plan.vectors):
            raise ValueError(
                f"None of the {len(genes)} genes= is among the experiment's genes "
                f"(var[{column!r}]): pass genes=None or the genes of a model made for this data."
            )
        columns = plan.expression_order if expression else None
        return cls(plan.var_index, plan.vectors, plan.duplicates, columns)

    def __call__(self, x) -> list[np.ndarray]:
        """The inputs of these cells: the embedding, and the expression if asked for."""
        result = genept_w(
            x,
            self.var_index,
            self.vectors,
            normalize=self.normalize is not None,  # counts are told from values per batch
            duplicates=self.duplicates,
            return_expression=self.columns is not None,
        )
        if self.normalize is not None:
            check_value_kind(
                "The prototype's cells (the first read)",
                self.normalize,
                "the cells of a later batch of the X layer",
                result.counts,
            )
        if self.columns is None:
            return [result.embedding]
        return [result.embedding, result.expression[:, self.columns].toarray()]


class Stream(IterableDataset):
    """One pass over some cells in batches ``{input_key: inputs, ..., "labels": codes}``."""

    def __init__(
        self, *, locator, ids, codes, var_ids, embedder, input_keys, num_workers, **options
    ):
        self.locator, self.ids, self.codes, self.var_ids = locator, ids, codes, var_ids
        self.embedder, self.input_keys, self.num_workers = embedder, input_keys, num_workers
        self.options: dict[str, Any] = options
        self.epoch, self.rank, self.world_size = 0, None, None

    def place(self, epoch: int, rank: int | None, world_size: int | None) -> None:
        """Set the epoch (the shuffle) and the DDP rank (the shard) of the next pass."""
        self.epoch, self.rank, self.world_size = epoch, rank, world_size

    def _partition(self) -> tuple[int, int]:
        if self.rank is not None:
            return self.rank, self.world_size
        return rank_and_world_size()

    def _shares(self) -> list[np.ndarray]:
        """The cells of this rank in this epoch's order, split among its DataLoader workers.

        Every rank gets as many cells (DDP steps in lockstep; up to ``world_size - 1``
        cells are left out of an epoch), as contiguous stretches of the shuffled order.
        """
        rank, world_size = self._partition()
        per_rank = len(self.ids) // world_size
        mine = self._order()[rank * per_rank : (rank + 1) * per_rank]
        return np.array_split(mine, max(1, self.num_workers))

    def __len__(self) -> int:
        """Batches of this rank's pass (all its workers)."""
        size = self.options["batch_size"]
        return sum(-(-len(share) // size) for share in self._shares())

    def _order(self) -> np.ndarray:
        """The cells in shuffled blocks of contiguous joinids, a new order each epoch.

        Contiguous joinids read fast together; shuffled blocks give each batch cells from
        all over the experiment (the census stores one dataset after another).
        """
        if not self.options["shuffle"]:
            return self.ids
        size = self.options["shuffle_chunk_size"]
        blocks = np.arange(0, len(self.ids), size)
        rng = np.random.default_rng([self.options["seed"], self.epoch])
        return np.concatenate([self.ids[s : s + size] for s in rng.permutation(blocks)])

    def __iter__(self):
        worker = get_worker_info()
        worker_id = 0 if worker is None else worker.id
        ids = self._shares()[worker_id]
        rng = np.random.default_rng([self.options["seed"], self.epoch, *self._partition()])
        size = self.options["batch_size"]
        # whole batches per read, so that only the share's last batch is partial (as
        # __len__ counts them)
        io_size = max(size, self.options["io_batch_size"] // size * size)
        with self.locator.open() as (array, _):
            for start in range(0, len(ids), io_size):
                chunk = ids[start : start + io_size]
                if self.options["shuffle"]:  # cell by cell within the read
                    chunk = chunk[rng.permutation(len(chunk))]
                x = read_rows(array, chunk, self.var_ids)
                yield from self._batches(chunk, x, size)

    def _batches(self, joinids: np.ndarray, x: sparse.csr_matrix, size: int):
        """Batches of ``size`` cells, embedded ``_EMBED_ROWS`` cells at a time."""
        step = max(size, _EMBED_ROWS // size * size)
        for start in range(0, len(joinids), step):
            rows = slice(start, start + step)
            if self.embedder is not None:
                inputs = self.embedder(x[rows])
            else:
                inputs = [x[rows].toarray()]
            inputs = [np.asarray(part, np.float32) for part in inputs]
            codes = self.codes[np.searchsorted(self.ids, joinids[rows])][:, None]
            for first in range(0, len(codes), size):
                batch_rows = slice(first, first + size)
                batch = {
                    key: torch.from_numpy(np.ascontiguousarray(part[batch_rows]))
                    for key, part in zip(self.input_keys, inputs, strict=True)
                }
                batch["labels"] = torch.from_numpy(codes[batch_rows])
                yield batch


def _noop(batch):
    return batch


class EpochLoader(DataLoader):
    """A DataLoader that tells its stream the epoch before each pass (and its workers start)."""

    def __init__(self, stream: Stream, cells: SomaCells):
        num_workers = stream.num_workers
        super().__init__(
            stream,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=_noop,
            # tiledbsoma runs threads of its own: a forked worker can inherit a held lock
            multiprocessing_context="spawn" if num_workers else None,
        )
        self._cells = cells

    def __iter__(self):
        self.dataset.place(*self._cells._where())
        return super().__iter__()

    def __len__(self) -> int:
        epoch, rank, world_size = self._cells._where(advance=False)
        self.dataset.place(epoch, rank, world_size)
        return len(self.dataset)
