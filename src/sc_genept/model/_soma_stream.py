"""The stream under :class:`~sc_genept.model.SomaCells`: cells read from a SOMA array.

Each epoch's cells (a shuffled list of joinids) are shared among DDP ranks and DataLoader
workers; each share is read with tiledbsoma's own ``read(coords=...)``, ``io_batch_size``
cells at a time, embedded with GenePT-w (or read from a stored embedding), and cut into
batches.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import sparse
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

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


def read_rows(array, joinids: np.ndarray, var_ids: np.ndarray) -> sparse.csr_matrix:
    """Rows ``joinids`` (in that order) by columns ``var_ids`` (sorted) of a SOMA array."""
    order = np.argsort(joinids, kind="stable")
    wanted = joinids[order]
    table = array.read(coords=(wanted,)).tables().concat()
    var = table["soma_dim_1"].to_numpy()
    cols = np.searchsorted(var_ids, var).clip(max=len(var_ids) - 1)
    keep = var_ids[cols] == var  # columns outside var_ids are left out
    rows = order[np.searchsorted(wanted, table["soma_dim_0"].to_numpy()[keep])]
    return sparse.csr_matrix(
        (table["soma_data"].to_numpy()[keep], (rows, cols[keep])),
        shape=(len(joinids), len(var_ids)),
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
    """GenePT-w of batches of cells × all genes, as :func:`genept_embed` computes it."""

    def __init__(self, var_index, vectors, duplicates, columns=None, normalize: bool = True):
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
            normalize=self.normalize,
            duplicates=self.duplicates,
            return_expression=self.columns is not None,
        )
        if self.normalize and not result.log_normalized and x.sum() > 0:
            raise ValueError(
                "A batch of the X layer holds non-integer values where the first cells held "
                "raw counts: the layer mixes counts with normalised values. Pick a layer of "
                "counts (the census's 'raw')."
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
