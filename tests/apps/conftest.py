"""tests/apps holds third-party-style apps the tests import; they are not tests themselves.

Collecting them for doctests would import them and probe their module globals (``inspect.unwrap``
asks an ``init_chat_model`` configurable model for ``__wrapped__``, which makes LangChain build
the app's unrouted default model), so nothing here is collected.
"""

collect_ignore_glob = ["*.py"]
