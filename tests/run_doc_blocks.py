"""Runs code blocks of a documentation page, in order, in one namespace (tests/test_docs.py
starts it, in a process of its own): python run_doc_blocks.py PAGE INDEX...

Exit code 75: a framework the blocks import is not installed (the test skips).
"""

import pathlib
import sys

import pytest
import test_docs

if __name__ == "__main__":
    page = pathlib.Path(sys.argv[1])
    blocks = test_docs.page_blocks(page)
    try:
        test_docs.run_blocks(page, [blocks[int(i)] for i in sys.argv[2:]])
    except pytest.skip.Exception as skip:
        print(skip, flush=True)
        sys.exit(test_docs.SKIPPED)
