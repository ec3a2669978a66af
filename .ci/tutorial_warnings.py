"""Fail when an executed tutorial shows a warning raised below the user's own code.

sc_genept's warnings point at the user's line (a notebook cell, ``/tmp/ipykernel_*/…``);
a warning that points into a library (or into sc_genept itself) is noise a biologist
cannot act on. Reads the notebooks myst-nb executed for the docs build.
"""

import json
import re
import sys
from pathlib import Path

WARNING = re.compile(r"^(?P<where>\S+):\d+: (?P<kind>\w*Warning): (?P<what>.*)$", re.M)

found = []
for notebook in sorted(Path("docs/_build/jupyter_execute").rglob("*.ipynb")):
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            for warning in WARNING.finditer(text):
                if "ipykernel_" not in warning["where"]:
                    found.append(
                        f"{notebook.name}: {warning['kind']} from {warning['where']}: {warning['what']}"
                    )
print("\n".join(found) or "no library warnings in the tutorials")
sys.exit(1 if found else 0)
