"""Shared pieces of the scripts that write the chapter notebooks (tools/make_notebook_*.py).

Notebooks are generated from these scripts so that their source is reviewable as plain text; every one
starts with the same papermill ``parameters`` cell and is written without outputs.
"""
import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

#: the first code cell of every chapter notebook: `fa-lib reproduce` injects its values after it
PARAMETERS = code("""# parameters (papermill injects the values of `fa-lib reproduce` after this cell)
profile = "quick"
device = "auto"
data_root = None
seed = 0""", metadata={"tags": ["parameters"]})


def write_notebook(cells, path):
    """Write ``cells`` as a clean notebook (no outputs) with the python3 kernel."""
    nb = nbf.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, path)
