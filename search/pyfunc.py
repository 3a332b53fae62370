"""Where exported models of collatz-hpo 0.1 find their pickled class: ``search.pyfunc.CollatzPyfunc``.

The pyfunc wrapper lives in ``search.models.pyfunc``; this name stays so that models exported
before the move still unpickle (``tests/fixtures``).
"""

from search.models.pyfunc import CollatzPyfunc

__all__ = ["CollatzPyfunc"]
