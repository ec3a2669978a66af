"""Gene texts: what gets embedded for each gene, from several sources.

A texts table is a :class:`pandas.DataFrame` with columns ``symbol``, ``text`` and
optionally ``ensembl_id``; :func:`read_texts` / :func:`write_texts` store it as parquet or
CSV/TSV.

- :func:`bundled`: the texts of the bundled default table (NCBI full name + GO terms).
- :func:`read_ncbi_gene_info`: NCBI's ``gene_info`` file, optionally with summaries.
- :func:`read_mygene_json`: mygene.info-style JSON (``symbol``, ``name``, ``summary``).
- :func:`enrich`: ask a chat model (OpenAI or any compatible server) for what is
  documented about each gene, GenePT-tools style, and append the answer. Answers are
  cached, so an interrupted run resumes and a rerun costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from scanpy import logging as logg

from sc_genept._checks import non_negative_int
from sc_genept._utils import progress_bar
from sc_genept.genes._cache import Cache, cache_key
from sc_genept.genes._ids import primary_ensembl_ids, strip_ensembl_version

#: System message of :func:`enrich`.
ENRICHMENT_SYSTEM = "You are a careful molecular biologist writing concise, factual gene notes."

#: User message of :func:`enrich`; ``{symbol}`` and ``{text}`` are filled in per gene.
ENRICHMENT_PROMPT = """Gene: {symbol}
What is already known: {text}

In at most 200 words of plain prose, state what is documented about the human gene {symbol}:
its molecular function and pathways; the tissues and cell types that express it (and whether
it is a marker of any); genes and protein complexes it works with; diseases it is associated
with; and drugs that target it or its product. Where something is not documented, say so
briefly instead of guessing."""


def bundled() -> pd.DataFrame:
    """The texts of the bundled default table (symbol, ensembl_id, text)."""
    from sc_genept.genes._registry import load

    table = load("default", with_texts=True)
    return pd.DataFrame(
        {"symbol": table.symbols, "ensembl_id": table.ensembl_ids, "text": table.texts}
    )


def read_ncbi_gene_info(
    path: str | Path,
    *,
    summaries: str | Path | None = None,
    gene_types: tuple[str, ...] | None = ("protein-coding",),
) -> pd.DataFrame:
    """Texts from NCBI's ``gene_info`` file (e.g. ``Homo_sapiens.gene_info.gz``).

    Text: ``"SYMBOL: full name. other designations."`` plus the gene's summary when
    ``summaries`` is given (a TSV with columns ``GeneID`` and ``summary``; NCBI does not
    ship summaries in ``gene_info``). Ensembl ids come from the ``dbXrefs`` column.

    Parameters
    ----------
    path
        The ``gene_info`` TSV (gzip allowed).
    summaries
        Optional TSV of gene summaries by ``GeneID``.
    gene_types
        Keep these ``type_of_gene`` values; ``None`` keeps all.
    """
    info = pd.read_csv(path, sep="\t", dtype=str).rename(columns={"#tax_id": "tax_id"})
    needed = [
        "Symbol",
        "description",
        "Other_designations",
        "type_of_gene",
        "GeneID",
        "Full_name_from_nomenclature_authority",
        "dbXrefs",
    ]
    lacking = [c for c in needed if c not in info.columns]
    if lacking:
        raise ValueError(
            f"{Path(path).name} lacks the column(s) {lacking} of NCBI's gene_info file: pass "
            "a gene_info TSV (e.g. Homo_sapiens.gene_info.gz from "
            "ftp.ncbi.nlm.nih.gov/gene/DATA/GENE_INFO/)."
        )
    if gene_types is not None:
        info = info[info["type_of_gene"].isin(gene_types)]
    summary = {}
    if summaries is not None:
        table = pd.read_csv(summaries, sep="\t", dtype=str)
        summary = dict(zip(table["GeneID"], table["summary"], strict=True))
    texts = []
    for row in info.itertuples(index=False):
        name = _known(row.Full_name_from_nomenclature_authority) or _known(row.description) or ""
        text = f"{row.Symbol}: {name}."
        if _known(row.Other_designations):
            text += " Also known as: " + row.Other_designations.replace("|", "; ") + "."
        if summary.get(row.GeneID):
            text += " " + summary[row.GeneID]
        texts.append(text)
    ensembl = [_ensembl_from_xrefs(x) for x in info["dbXrefs"]]
    return pd.DataFrame({"symbol": info["Symbol"].to_numpy(), "ensembl_id": ensembl, "text": texts})


def read_mygene_json(path: str | Path) -> pd.DataFrame:
    """Texts from mygene.info-style JSON: a list of hits (or ``{"hits": [...]}``).

    Each hit has ``symbol`` and optionally ``name``, ``summary`` and ``ensembl.gene``.
    Text: ``"SYMBOL: name. summary"``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path.name} is not mygene.info JSON ({err}): pass a JSON list of hits, or "
            '{"hits": [...]}, as mygene\'s querymany/getgenes return.'
        ) from err
    hits = data.get("hits") if isinstance(data, dict) else data
    if not isinstance(hits, list) or not all(isinstance(h, dict) for h in hits):
        raise ValueError(
            f"{path.name} is not mygene.info JSON: expected a list of hits (objects with "
            '"symbol"), or {"hits": [...]}.'
        )
    rows = []
    for hit in hits:
        if not hit.get("symbol"):
            continue
        text = f"{hit['symbol']}: {hit.get('name', '')}.".replace(": .", ".")
        if hit.get("summary"):
            text += " " + hit["summary"]
        ensembl = hit.get("ensembl") or {}
        ensembl = ensembl[0] if isinstance(ensembl, list) and ensembl else ensembl
        rows.append(
            {"symbol": hit["symbol"], "ensembl_id": (ensembl or {}).get("gene"), "text": text}
        )
    texts = pd.DataFrame(rows, columns=["symbol", "ensembl_id", "text"])
    missing = texts["ensembl_id"].isna()
    texts.loc[missing, "ensembl_id"] = primary_ensembl_ids(texts.loc[missing, "symbol"])
    return texts


def enrich(
    texts: pd.DataFrame,
    *,
    model: str = "gpt-4o-mini",
    base_url: str | None = None,
    api_key: str | None = None,
    prompt: str = ENRICHMENT_PROMPT,
    system: str = ENRICHMENT_SYSTEM,
    cache_dir: str | Path | None = None,
    max_retries: int = 8,
    progress: bool = True,
    confirm: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """Append what a chat model says is documented about each gene to its text.

    Parameters
    ----------
    texts
        A texts table (``symbol``, ``text``).
    model
        Chat model, e.g. ``"gpt-4o-mini"``, or a local server's model.
    base_url, api_key
        As for :class:`~sc_genept.genes.OpenAIEmbedder`; the key is never written anywhere.
    prompt, system
        The messages; ``prompt`` is formatted with ``symbol`` and ``text``.
    cache_dir
        Answers are cached by (model, server, messages): reruns and resumed runs pay nothing.
    max_retries
        Retries of a failed request, with exponential backoff, as for
        :class:`~sc_genept.genes.OpenAIEmbedder`; each request waits at most 120 s for
        its answer.
    progress
        Show a progress bar.
    confirm
        Called with the token estimate before uncached questions are sent; returning
        ``False`` raises :class:`~sc_genept.genes.Cancelled` with nothing sent.

    Returns
    -------
    A copy of ``texts`` whose ``text`` is the original text, a blank line and the answer,
    with the answer alone in ``enrichment``.
    """
    from sc_genept.genes._embedders import (
        Cancelled,
        _public_url,
        call_with_retries,
        count_tokens,
        openai_client,
    )

    non_negative_int("max_retries", max_retries)
    client = openai_client(api_key=api_key, base_url=base_url)
    server = _public_url(str(client.base_url))
    cache = Cache(cache_dir, "chat")
    conversations = [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": prompt.format(symbol=s, text=t)},
        ]
        for s, t in zip(texts["symbol"], texts["text"], strict=True)
    ]
    keys = [cache_key(model, server, json.dumps(m)) for m in conversations]
    answers = {k: a for k in set(keys) if (a := cache.get_text(k)) is not None}
    to_ask = {k: m for k, m in zip(keys, conversations, strict=True) if k not in answers}
    if to_ask:
        tokens, exact = count_tokens(
            [m[0]["content"] + m[1]["content"] for m in to_ask.values()], model
        )
        what = (
            f"ask {model} at {server} about {len(to_ask)} genes: {'' if exact else '≈'}"
            f"{sum(tokens)} prompt tokens plus the answers (≤ ~300 tokens each)"
        )
        logg.warning(what)
        if confirm is not None and not confirm(what):
            raise Cancelled("Nothing was sent.")
        logg.info(
            f"{len(set(keys)) - len(to_ask)} of {len(set(keys))} genes answered from the cache"
        )
    for key, messages in progress_bar(
        to_ask.items(), desc=f"enriching ({model})", disable=not progress
    ):
        response = call_with_retries(
            lambda m=messages: client.chat.completions.create(
                model=model, messages=m, temperature=0
            ),
            max_retries=max_retries,
            what=f"chat request ({server})",
        )
        answers[key] = (response.choices[0].message.content or "").strip()
        cache.put_text(key, answers[key])  # cached at once: an interrupted run resumes here
    answers = [answers[k] for k in keys]
    out = texts.copy()
    out["enrichment"] = answers
    out["text"] = [f"{t}\n\n{a}" if a else t for t, a in zip(texts["text"], answers, strict=True)]
    return out


def read_texts(path: str | Path) -> pd.DataFrame:
    """Read a texts table (parquet, CSV or TSV) with columns ``symbol`` and ``text``."""
    path = Path(path)
    if path.suffix == ".parquet":
        texts = pd.read_parquet(path)
    else:
        texts = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",")
    missing = {"symbol", "text"} - set(texts.columns)
    if missing:
        raise ValueError(
            f"{path} lacks the column(s) {sorted(missing)}; a texts table has symbol and text."
        )
    if "ensembl_id" not in texts:
        texts["ensembl_id"] = primary_ensembl_ids(texts["symbol"])
    return texts


def write_texts(texts: pd.DataFrame, path: str | Path) -> Path:
    """Write a texts table; parquet (zstd) for ``.parquet``, else CSV/TSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        texts.to_parquet(path, compression="zstd", index=False)
    else:
        texts.to_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",", index=False)
    return path


def _known(value) -> str | None:
    return None if not isinstance(value, str) or value in ("-", "") else value


def _ensembl_from_xrefs(xrefs) -> str | None:
    for ref in str(xrefs).split("|"):
        if ref.startswith("Ensembl:"):
            return strip_ensembl_version([ref.removeprefix("Ensembl:")])[0]
    return None
