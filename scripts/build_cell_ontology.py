"""Write the bundled Cell Ontology (``src/sc_genept/data/cl.obo.gz``) from cellxgene-ontology-guide.

The PyPI package ``cellxgene-ontology-guide`` ships CELLxGENE's pinned CL release as
compressed JSON (term id → label, description, exact synonyms, deprecated, replaced_by,
consider, and ancestors with their distances). This script turns the live terms into a
small OBO file, plus a stub per obsolete CL term (id, name, ``replaced_by``, ``consider``)
so that old annotations can be followed to their replacement or explained; the
package reads its bundled CL and any official ``cl-basic.obo`` through the same loader
(obonet). Distance-1 ancestors become ``is_a`` parents: in this JSON they merge CL's
``is_a`` with its internal ``part_of`` links, which is the hierarchy CELLxGENE uses.

Synonyms: the JSON keeps CL's exact synonyms only (no related, broad or narrow ones), so
the bundled file has ``EXACT`` synonym lines only; ``cell_class_list.json`` and
``cell_subclass_list.json`` beside it are bare lists of CL ids, with no names to add.
:meth:`sc_genept.ontology.CellOntology.match` uses the other scopes where an official
``cl-basic.obo`` is loaded instead.

    python scripts/build_cell_ontology.py
"""

from __future__ import annotations

import gzip
import json
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import zstandard

OUT = Path(__file__).resolve().parent.parent / "src" / "sc_genept" / "data" / "cl.obo.gz"


def read_release() -> tuple[str, dict]:
    data = files("cellxgene_ontology_guide") / "data"
    path = max(
        (p for p in data.iterdir() if p.name.startswith("CL-ontology-v")), key=lambda p: p.name
    )
    release = path.name.removeprefix("CL-ontology-v").removesuffix(".json.zst")
    with path.open("rb") as fh:
        return release, json.loads(zstandard.ZstdDecompressor().stream_reader(fh).read())


def obo_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def to_obo(release: str, terms: dict) -> str:
    live = {t: v for t, v in terms.items() if not v.get("deprecated") and t.startswith("CL:")}
    obsolete = {t: v for t, v in terms.items() if v.get("deprecated") and t.startswith("CL:")}
    lines = [
        "format-version: 1.2",
        f"data-version: cl/releases/{release}/cl-basic.obo",
        "ontology: cl",
        f'remark: "Cell Ontology {release}, CC BY 4.0 (https://obophenotype.github.io/cell-ontology/). '
        f"Converted from cellxgene-ontology-guide {version('cellxgene-ontology-guide')} by "
        "sc_genept scripts/build_cell_ontology.py: live terms, is_a = distance-1 ancestors; "
        'obsolete terms as stubs (name, replaced_by, consider)."',
        "",
    ]
    for term_id in sorted(live):
        term = live[term_id]
        lines += ["[Term]", f"id: {term_id}", f"name: {term['label']}"]
        if term.get("description"):
            lines.append(f'def: "{obo_quote(term["description"])}" []')
        lines += [f'synonym: "{obo_quote(s)}" EXACT []' for s in term.get("synonyms", [])]
        parents = sorted(a for a, d in term.get("ancestors", {}).items() if d == 1 and a in live)
        lines += [f"is_a: {p} ! {live[p]['label']}" for p in parents]
        lines.append("")
    # stubs only: no definition, synonyms or links, which users of an obsolete id do not
    # need and which would grow the bundled file for nothing
    for term_id in sorted(obsolete):
        term = obsolete[term_id]
        lines += ["[Term]", f"id: {term_id}", f"name: {term['label']}", "is_obsolete: true"]
        if term.get("replaced_by"):
            lines.append(f"replaced_by: {term['replaced_by']}")
        lines += [f"consider: {c}" for c in term.get("consider", [])]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    release, terms = read_release()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same release gives the same bytes
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(to_obo(release, terms).encode())
    print(f"CL {release}: {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
