"""Runs a notebook top to bottom in the current directory (tests/test_notebooks.py starts it,
in a scratch directory, so the committed figures are left alone): python run_notebook.py NB."""

import sys

import nbclient
import nbformat

if __name__ == "__main__":
    notebook = nbformat.read(sys.argv[1], as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}
    ).execute()
