"""Where users find the DoSSR nodes: their menu category and the words node search knows.

The category sits under the host's own ``image/upscaling``, next to *Upscale Image (using
Model)* and the other upscalers. Search aliases are shown to newer hosts only
(``host_compat.schema`` drops them where the schema does not know them).
"""

CATEGORY = "image/upscaling/DoSSR"

ALIASES = ("upscale", "upscaler", "super resolution", "super-resolution", "DoSSR", "SR")


def search_aliases(*words: str) -> list[str]:
    """The pack's aliases followed by a node's own *words*."""
    return [*ALIASES, *words]
