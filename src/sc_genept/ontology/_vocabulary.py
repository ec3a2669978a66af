"""Everyday cell-type vocabulary that CL does not write: Seurat and Azimuth labels.

Single-cell tools name populations in a shorthand of their own: Azimuth's PBMC reference
(Hao et al. 2021, levels 1 to 3: "CD14 Mono", "CD8 TEM", "gdT", "NK_CD56bright", "CD4
TCM_1") and Seurat's tutorials ("FCGR3A+ Mono", "Naive CD4 T"). CL never uses these
words, so :meth:`CellOntology.match <sc_genept.ontology.CellOntology.match>` reads them
through the tables below, all kept here so that each decision is written down once:

- :data:`MARKER_GENES`: a marker written as its gene ("FCGR3A+") is its CD name ("CD16+");
- :data:`EVERYDAY_WORDS`: shorthand words and what they stand for, in any label;
- :data:`T_CELL_STATES`: the words after "CD4"/"CD8" that make a label a T cell
  ("CD4 Naive" is a naive CD4 T cell);
- :data:`EVERYDAY_NAMES`: population names whose CL term is not the sum of their words,
  each with the CL name or exact synonym it stands for;
- :data:`LINEAGES` and :data:`LINEAGE_MARKERS`: the lineages that "did you mean" hints
  stay in, and markers that tell a label's lineage.

Each id these lead to is checked against the bundled CL in ``tests/test_azimuth_labels.py``.
"""

from __future__ import annotations

import re

__all__ = [
    "EVERYDAY_NAMES",
    "EVERYDAY_WORDS",
    "LINEAGES",
    "LINEAGE_MARKERS",
    "MARKER_GENES",
    "SUBCLUSTER",
    "T_CELL_STATES",
]

#: Marker genes written for their CD antigen, as Seurat labels do ("FCGR3A+ Mono").
MARKER_GENES = {
    "fcgr3a": "cd16",  # Fc gamma receptor IIIa
    "ncam1": "cd56",  # neural cell adhesion molecule 1
    "ms4a1": "cd20",
}

#: Shorthand words of Seurat and Azimuth labels, each written as the CL words it stands
#: for. No CL name or exact synonym has any of these words (the tests check that), so the
#: rule that expands them changes only labels. An empty expansion drops the word.
EVERYDAY_WORDS = {
    "mono": "monocyte",  # "CD14 Mono", "Mono" (Azimuth level 1)
    "tem": "effector memory",  # "CD8 TEM": effector memory T cell
    "tcm": "central memory",  # "CD4 TCM": central memory T cell
    "ctl": "cytotoxic t",  # cytotoxic T lymphocyte: "CD4 CTL"
    "gdt": "gamma delta t",  # "gdT"
    "mait": "mucosal associated invariant t",  # "MAIT"
    "mk": "megakaryocyte",  # Seurat's integration tutorial
    # Azimuth level 3 splits B cells by light chain ("B naive kappa"); CL does not, so a
    # kappa B cell is the B cell the other words name
    "kappa": "",
    "lambda": "",
}

#: Words that, after a bare "CD4" or "CD8", name a T-cell state: Azimuth writes "CD4 Naive",
#: "CD8 TEM", "CD4 Proliferating" for naive, effector memory, cycling CD4/CD8 T cells.
T_CELL_STATES = frozenset(
    {"naive", "memory", "effector", "central", "cytotoxic", "proliferating", "cycling"}
)

#: Population names whose CL term is not what their words say, each with the CL name (or
#: exact synonym) it stands for and why. Matched after CL's own names and synonyms, in any
#: case, spacing, order and plural ("NK_CD56bright" = "CD56bright NK cells").
EVERYDAY_NAMES = {
    # Azimuth's and Seurat's CD16 (FCGR3A+) monocytes are the non-classical, CD14-low
    # monocytes; CL's synonym "CD16+ monocyte" names the CD14+ CD16+ term instead
    "CD16 Mono": "CD14-low, CD16-positive monocyte",
    # every human NK cell is CD56+ (bright and dim: CL's "CD16+CD56+ NK cell" is CD56-dim)
    "CD56+ NK": "natural killer cell",
    "NK_CD56bright": "CD16-negative, CD56-bright natural killer cell, human",
    # Azimuth's "B intermediate" sit between naive and memory B cells; CL has no such term,
    # and "mature B cell" is the lowest one that holds both
    "B intermediate": "mature B cell",
    # conventional DC types 1 and 2 of human blood: XCR1+ CD141+ and CD1c+
    "cDC1": "CD141-positive myeloid dendritic cell",
    "cDC2": "CD1c-positive myeloid dendritic cell",
    # AXL+ SIGLEC6+ dendritic cells, and Azimuth's level-3 split of them
    "ASDC": "Axl+ dendritic cell, human",
    "ASDC_mDC": "Axl+ dendritic cell, human",
    "ASDC_pDC": "Axl+ dendritic cell, human",
    # hematopoietic stem and progenitor cells: CL's term for both together
    "HSPC": "hematopoietic precursor cell",
    # erythroid cells of blood (reticulocytes among them), not only mature erythrocytes
    "Eryth": "erythroid lineage cell",
    # blood CD4- CD8- alpha-beta T cells (Azimuth's gdT are apart); CL's "double negative
    # T cell" is a synonym of "double negative thymocyte", a cell of the thymus
    "dnT": "mature alpha-beta T cell",
}

#: An Azimuth level-3 or clustering subcluster: "CD4 TEM_1", "NK_4" (a subset of "NK").
SUBCLUSTER = re.compile(r"^(?P<population>.*\S)_\d+$")

#: Lineages (CL names) that a "did you mean" hint must not leave: a label whose words name a
#: term in one of them ("T" in "CD8 T cellx", "cDC" in "cDC3") is offered only names of
#: terms in, above or below that lineage. Conventional and plasmacytoid dendritic cells are
#: apart: "cDC2" is no "DC2" (CL's synonym of the plasmacytoid one). A word that names a
#: term outside all of them keeps suggestions to that term's own subtree and ancestors.
LINEAGES = (
    "T cell",
    "lymphocyte of B lineage",  # B cells, plasmablasts and plasma cells
    "natural killer cell",
    "innate lymphoid cell",
    "monocyte",
    "macrophage",
    "conventional dendritic cell",
    "plasmacytoid dendritic cell",
    "granulocyte",
    "mast cell",
    "erythroid lineage cell",
    "megakaryocyte",
    "platelet",
    "hematopoietic precursor cell",
)

#: Markers and shorthand that tell a label's lineage where no word of it names a cell type
#: ("CD8 TEMx", "type 1 Tc"), for "did you mean" hints only.
LINEAGE_MARKERS = {
    "cd3": "T cell",
    "cd4": "T cell",
    "cd8": "T cell",
    "tc": "T cell",  # cytotoxic T: "Tc1", "Tc17"
    "th": "T cell",  # T helper: "Th1", "Th17"
    "tem": "T cell",
    "tcm": "T cell",
    "temra": "T cell",
    "trm": "T cell",
    "cd19": "B cell",
    "cd20": "B cell",
}
