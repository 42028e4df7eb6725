"""WebShop as a Gymnasium text environment (``gym.make("rlem_gym/WebShop-v0")``).

Exports :class:`WebShopEnv` and :func:`page_type` (the page kind of an observation string). The
catalog, goals, search index and spaCy tagger load when the first env is built, once per process.
"""

from rlem_gym.envs.webshop.pages import page_type


def __getattr__(name: str):
    if name == "WebShopEnv":  # lazy: importing page_type must not load numpy/bm25s/rapidfuzz
        from rlem_gym.envs.webshop.env import WebShopEnv

        return WebShopEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["WebShopEnv", "page_type"]
